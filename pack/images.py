"""Turn one input file into the bytes a shard stores: the original, a re-encode, or nothing.

Every shard image is a baseline RGB JPEG, so any loader (PIL, torchvision, nvJPEG, DALI) reads
it. Baseline YCbCr JPEGs keep their pixels after a structural check (see `pack.jpeg`): restart-
coded losslessly (`restart_coded`, below) or, with restart 0, copied byte for byte;
CMYK / grayscale / progressive JPEGs, PNGs behind a .JPEG name and other formats are decoded
and re-encoded ("repaired"); undecodable files are rejected with the reason.

`--resize SHORT` pre-resizes images whose shorter side exceeds SHORT (FFCV-style): JPEG draft
decoding straight to >= 2x the target (DCT scaling, much cheaper than a full decode when it
applies), then one LANCZOS resize, then re-encode at `--quality`, restart-coded as well (the
loader then decodes only what a crop covers, see `RESTART_EVERY_MCUS`). Measured against full decode
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

try:
    from hrnet_fast import _jpeg
except ImportError:  # not built (no libjpeg headers at set-up): originals are stored byte for byte
    _jpeg = None  # type: ignore[assignment]  # callers check for None

PASSED, RESIZED, REPAIRED, REJECTED = "passed", "resized", "repaired", "rejected"
JPEG_EXTENSIONS = frozenset({".jpg", ".jpeg"})
MODE_WORDS = {"L": "grayscale", "LA": "grayscale+alpha", "P": "palette", "PA": "palette+alpha",
              "RGBA": "rgba", "CMYK": "cmyk", "1": "bilevel", "I;16": "16-bit", "I": "32-bit"}
WHITE = (255, 255, 255)

RESTART_EVERY_MCUS = 1
"""What `pack` stores by default: a restart marker after every MCU (16 x 16 px at 4:2:0). Each
restart interval is then coded on its own, so the loader's region decoder (hrnet_fast/_jpeg.c)
entropy-decodes only the intervals under a crop instead of every row down to its bottom edge. On
the loader benchmark's photos (docs/performance.md) a training crop took 387 instead of 470 us at
short side 256 and 675 instead of 870 us on the originals. The costs: whole-image decoders (PIL,
DALI, simplejpeg) take about 4 % longer, whatever the interval (2 or 4 MCUs save the loader less);
re-encoded files are 2.7 % larger, restart-coded originals 2.6 % smaller (their Huffman tables
are optimised on the way)."""


@dataclass(frozen=True)
class Outcome:
    status: str               # PASSED, RESIZED, REPAIRED or REJECTED
    jpeg: bytes | None = None  # what goes into the shard (None when rejected)
    reason: str = ""          # why it was repaired or rejected


def prepare(data: bytes, ext: str, resize: int, quality: int, restart: int = RESTART_EVERY_MCUS) -> Outcome:
    """Decide what the shard stores for a file with these bytes and (original-case) extension;
    `restart`: MCUs per restart interval of what it stores (0: none, originals byte for byte)."""
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
            return Outcome(PASSED, restart_coded(data, restart))
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
    jpeg = encode_jpeg(image, quality, restart)
    return Outcome(REPAIRED, jpeg, reason) if reason else Outcome(RESIZED, jpeg)


def restart_transcoder(restart: int = RESTART_EVERY_MCUS) -> str | None:
    """What restart-codes originals here ("libjpeg-turbo 2.1.5") at `restart` MCUs per interval;
    None where nothing does: restart 0, or no C extension (originals are stored byte for byte)."""
    if not restart or _jpeg is None:
        return None
    version = _jpeg.libjpeg_turbo_version
    return f"libjpeg-turbo {version // 1000000}.{version // 1000 % 1000}.{version % 1000}"


def restart_coded(data: bytes, restart: int) -> bytes:
    """A baseline JPEG with a restart marker every `restart` MCUs: its DCT coefficients untouched
    (the same pixels), APPn and COM segments (EXIF, ICC) kept. `data` itself with restart 0,
    without the C extension, or where libjpeg finds damage the structure walk cannot see (the
    loader then meets it as it would have)."""
    if not restart or _jpeg is None:
        return data
    try:
        return _jpeg.add_restart_markers(data, restart)
    except ValueError:
        return data


def encode_jpeg(image: Image.Image, quality: int, restart: int = RESTART_EVERY_MCUS) -> bytes:
    """Baseline (not progressive) RGB JPEG with a restart marker every `restart` MCUs (0: none),
    no metadata: readable by every decoder."""
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality, optimize=False, progressive=False, restart_marker_blocks=restart)
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
