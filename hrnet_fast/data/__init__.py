"""Streaming shard loader: tar shards → uint8 NHWC batches → (on device) normalized channels_last.

Public API (the trainer, eval, predict and bench are written against these names):

    open_source(shards: str, split: str = "train", num_samples: int | None = None) -> ShardSource
        A packed directory (reads manifest.json) or a WebDataset URL / brace pattern / pipe: URL
        (needs num_samples unless every shard is a local .tar: those get a sample index on first
        open). ShardSource: .urls, .shard_sizes, .num_samples, .exact, .split, .indexed,
        .classes (list[str] | None for URLs), .class_names (dict synset -> name), .names.

    TrainLoader(source, batch_size, image_size, rank=0, world_size=1, num_workers=2, seed=0,
                shuffle_buffer=4096, pin_memory=False, prefetch_factor=4, max_bad_fraction=0.01,
                with_keys=False, crop_scale=(0.08, 1.0), hflip=True, block=BLOCK, epochs=None)
        .batches_per_epoch   batches per rank per epoch; the same on every rank and every epoch
        .dropped_per_epoch   samples left out per epoch (over all ranks) to keep batches full
        .stats               Faults of the running epoch: corrupt, lost, repeated, bad_shards
        .plan_name           "sample-ranges" (indexed shards) or "whole-shards" (the fallback)
        .describe_plan()     one line for the logs: the plan and how it shuffles
        .plan(epoch)         SamplePlan (block order of the epoch's sample sequence) or TrainPlan
                             (shard indices per global worker), see plan.py
        .epoch_iter(epoch, skip_batches=0, image_size=None) -> iterator of (images uint8 [B,S,S,3],
                             labels int64 [B]) (+ keys list[str] with with_keys=True); skip_batches
                             resumes mid-epoch; consecutive calls at one size run in the same workers
                             (series.py), which stop after `epochs` or at .close()

    ValLoader(source, batch_size, image_size, rank=0, world_size=1, num_workers=2, crop_ratio=0.875,
              pin_memory=False, prefetch_factor=2, max_bad_fraction=0.01)
        .batches (= len()), the same on every rank; .num_samples (this rank's); .stats
    pin_memory: True pins for CUDA, "npu" for an Ascend NPU (Device.pin_memory gives the right one)
        iter -> (images uint8 [B,S,S,3], labels int64 [B], mask bool [B], keys list[str])

    DevicePrefetcher(iterable, device: Device, dtype=torch.float32, mean=IMAGENET_MEAN_255,
                     std=IMAGENET_STD_255)
        iter -> (x [B,3,S,S] dtype channels_last normalized, *rest on the device; keys unchanged)

    Normalize(device: Device, dtype=torch.float32, mean=IMAGENET_MEAN_255, std=IMAGENET_STD_255)
        (images uint8 [B,S,S,3]) -> x as DevicePrefetcher makes it (NCHW on NPU): also for predict

    decode_val_image(data: bytes | PIL.Image.Image, image_size: int, crop_ratio=0.875)
        -> np.ndarray uint8 [S,S,3]; the eval transform, for `hrnet-fast predict`

Guarantees: the stream is a function of (seed, epoch) only and every rank runs the same number
of full batches every epoch (see plan.py). With indexed shards (sample-ranges plan) blocks of
consecutive samples are permuted per epoch identically on every rank, each rank reads its
batches' sample ranges, any number of shards feeds any number of ranks × workers, and fewer
than batch_size × world_size samples are dropped; each slot's crop is seeded by its position in
the epoch's sample sequence. Without an index (whole-shard plan) shards are dealt to ranks ×
workers, shuffled compressed in a buffer seeded by (seed, epoch, worker), each crop seeded by
its position in the worker's stream. Damaged samples and shards are skipped with a warning and
counted; their slots get other good samples (counted as `repeated`), and past
`max_bad_fraction` of an epoch the loader raises UserError. Resuming with skip_batches is exact
for the same world size, workers and seed (under the whole-shard plan: unless corrupt samples
lie before the resume point).

simplejpeg is used for JPEGs when installed (less per-image overhead than PIL's decoder), PIL
otherwise; decoding the full image with torchvision.io and cropping tensors is slower on the CPU.
Per-core figures: docs/performance.md.
"""
from hrnet_fast.data.decode import decode_val_image
from hrnet_fast.data.loader import TrainLoader, ValLoader
from hrnet_fast.data.prefetch import IMAGENET_MEAN_255, IMAGENET_STD_255, DevicePrefetcher, Normalize
from hrnet_fast.data.reader import Faults
from hrnet_fast.data.source import ShardSource, open_source

__all__ = ["open_source", "ShardSource", "TrainLoader", "ValLoader", "DevicePrefetcher", "Faults",
           "decode_val_image", "IMAGENET_MEAN_255", "IMAGENET_STD_255", "Normalize"]
