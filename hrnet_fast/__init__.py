"""hrnet-fast: WebDataset shards → streaming uint8 loader → HRNet on NPU / CUDA / CPU."""
__version__ = "0.1.0"
