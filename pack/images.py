"""Turn one input file into the bytes a shard stores: the original, a re-encode, or nothing.

Every shard image is a baseline RGB JPEG, so any loader (PIL, torchvision, nvJPEG, DALI) reads
it. Baseline YCbCr JPEGs are copied byte for byte after a structural check (see `pack.jpeg`);
CMYK / grayscale / progressive JPEGs, PNGs behind a .JPEG name and other formats are decoded
and re-encoded ("repaired"); undecodable files are rejected with the reason.

`--resize SHORT` pre-resizes images whose shorter side exceeds SHORT (FFCV-style): JPEG draft
decoding straight to >= 2x the target (DCT scaling, much cheaper than a full decode when it
applies), then one LANCZOS resize, then re-encode at `--quality`, with a restart marker after
every MCU (`RESTART_EVERY_MCUS`: the loader then decodes only what a crop covers). Measured against full decode
+ LANCZOS on the benchmark tree (short side 256): this is 58 dB PSNR away (identical to the
eye) at equal or lower cost; drafting to 1x the target is ~30 % faster but 43 dB, BICUBIC
(with or without draft) 49 dB at about the same cost as LANCZOS. The target size follows
torchvision's `Resize(SHORT)` (short side = SHORT, long side truncated), so a later
`Resize(256)` on a 256-pre-resized image is the identity. Colour conversion matches torchvision's
ImageFolder (`Image.convert("RGB")`, EXIF orientation and ICC profiles ignored), so labels and
pixels agree with the reference pipeline.
"""
from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from pack.jpeg import BrokenJpeg, is_jpeg, sniff_jpeg

PASSED, RESIZED, REPAIRED, REJECTED = "passed", "resized", "repaired", "rejected"
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
MODE_WORDS = {"L": "grayscale", "LA": "grayscale+alpha", "P": "palette", "PA": "palette+alpha",
              "RGBA": "rgba", "CMYK": "cmyk", "1": "bilevel", "I;16": "16-bit", "I": "32-bit"}
WHITE = (255, 255, 255)


@dataclass(frozen=True)
class Outcome:
    status: str               # PASSED, RESIZED, REPAIRED or REJECTED
    jpeg: bytes | None = None  # what goes into the shard (None when rejected)
    reason: str = ""          # why it was repaired or rejected


def prepare(data: bytes, ext: str, resize: int, quality: int) -> Outcome:
    """Decide what the shard stores for a file with these bytes and (original-case) extension."""
    if not data:
        return Outcome(REJECTED, reason="empty file")
    reason = ""
    if is_jpeg(data):
        try:
            info = sniff_jpeg(data)
        except BrokenJpeg as exc:
            return Outcome(REJECTED, reason=str(exc))
        if not info.passes_through:
            reason = info.describe() + ("" if ext.lower() in JPEG_EXTENSIONS else f" behind {ext}")
        elif resized_size(info.width, info.height, resize) == (info.width, info.height):
            return Outcome(PASSED, data)
    try:
        image: Image.Image = Image.open(io.BytesIO(data))
        fmt, mode = image.format, image.mode
        target = resized_size(image.width, image.height, resize)
        if target != image.size:
            image.draft(None, (2 * target[0], 2 * target[1]))  # JPEG DCT scaling; no-op otherwise
        image.load()
        image = _to_rgb(image)
        if image.size != target:
            image = image.resize(target, Image.Resampling.LANCZOS)
    except Image.DecompressionBombError as exc:
        return Outcome(REJECTED, reason=f"too large ({exc})"[:200])
    except UnidentifiedImageError:
        return Outcome(REJECTED, reason="not an image")
    except Exception as exc:  # PIL raises many types on damaged input; each means "reject"
        return Outcome(REJECTED, reason=_decode_error(exc))
    if not is_jpeg(data):
        reason = _source_reason(fmt, mode, ext)
    jpeg = encode_jpeg(image, quality)
    return Outcome(REPAIRED, jpeg, reason) if reason else Outcome(RESIZED, jpeg)


RESTART_EVERY_MCUS = 1
"""A restart marker after every MCU (16 x 16 px at 4:2:0) of a re-encoded image. Each restart
interval is then coded on its own, so the loader's region decoder (hrnet_fast/data/_crop.c)
entropy-decodes only the intervals under a crop instead of every row down to its bottom edge:
on the loader benchmark's short-side-256 photos a training crop took 387 instead of 470 us
(docs/performance.md). The cost: files 2.7 % larger, and whole-image decoders (PIL, DALI,
simplejpeg) 4 % slower on them, the same with intervals of 2 or 4 MCUs (which save less)."""


def encode_jpeg(image: Image.Image, quality: int) -> bytes:
    """Baseline (not progressive) RGB JPEG with restart markers, no metadata: readable by every decoder."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=False, progressive=False,
               restart_marker_blocks=RESTART_EVERY_MCUS)
    return out.getvalue()


def resized_size(width: int, height: int, short: int) -> tuple[int, int]:
    """torchvision `Resize(short)` geometry; never upscales; `short` 0 keeps the size."""
    if short <= 0 or min(width, height) <= short:
        return width, height
    if width <= height:
        return short, int(short * height / width)
    return int(short * width / height), short


def _source_reason(fmt: str | None, mode: str, ext: str) -> str:
    """E.g. "png behind .JPEG, palette" for ImageNet's n02105855_2933."""
    name = (fmt or "unknown").lower()
    reason = f"{name} behind {ext}" if ext.lower() in JPEG_EXTENSIONS else f"{name} image"
    return reason if mode == "RGB" else f"{reason}, {MODE_WORDS.get(mode, mode.lower())}"


def _to_rgb(image: Image.Image) -> Image.Image:
    """RGB like torchvision's loader, except transparent pixels become white instead of black."""
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, WHITE)
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    if image.mode.startswith("I") or image.mode == "F":  # 16-bit PNG / TIFF: keep the top 8 bits
        scale = 1.0 if image.mode == "F" else 1 / 256
        pixels = np.clip(np.asarray(image, np.float32) * scale, 0, 255).astype(np.uint8)
        image = Image.fromarray(pixels)
    return image if image.mode == "RGB" else image.convert("RGB")


def _decode_error(exc: Exception) -> str:
    message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    if "truncated" in message:
        return "truncated image"
    return f"undecodable ({message[:160]})"
