"""Image bytes → uint8 HWC crops: RandomResizedCrop + flip for training, Resize + CenterCrop for eval.

Why not torchvision transforms: they decode the whole image at full size, copy the crop out and
then resize it. Here the crop box is chosen from the size in the JPEG header, libjpeg-turbo
decodes at 1/2, 1/4 or 1/8 scale in the DCT domain whenever the box still spans the output size at
that scale, and only the box is resampled (`Image.resize(box=)`, bilinear with antialiasing, like
torchvision's PIL path). JPEGs are decoded by, in order of preference:
- `_jpeg` (our C extension, built by `make setup` where libjpeg-turbo's headers exist): only
  the box plus the resampling filter's reach, rows and columns, is decoded; a training crop keeps
  about half an image, so this is where most of the loader's time goes down; it also writes the
  resampled crop into its batch slot as RGB in one pass;
- `simplejpeg`: the whole image, with less per-image overhead than PIL's incremental decoder;
- PIL (`draft` for the DCT scale), which also takes every other format (PNG, CMYK JPEG …).
All three give the same pixels inside the box. The crop parameters follow torchvision's
algorithms exactly, so the augmentation matches the reference recipe.
"""
from __future__ import annotations

import io
import math
from typing import Protocol

import numpy as np
from PIL import Image

try:
    import simplejpeg
except ImportError:  # optional: PIL's decoder gives the same pixels, a little slower
    simplejpeg = None
try:
    from hrnet_fast import _jpeg
except ImportError:  # not built (no libjpeg headers at set-up): whole-image decodes instead
    _jpeg = None  # type: ignore[assignment]  # callers check for None

Box = tuple[float, float, float, float]  # left, top, right, bottom in source pixels


def jpeg_decoder() -> str:
    """Which decoder JPEG crops go through here, for benchmark reports and logs."""
    if _jpeg is not None and simplejpeg is not None:  # EncodedImage keeps JPEG bytes only with simplejpeg
        return "region (libjpeg-turbo, crop rows and columns only)"
    return "whole image (simplejpeg)" if simplejpeg is not None else "whole image (PIL)"


class RandomSource(Protocol):
    """What the crop draws from: an np.random.Generator, or the stream's pre-drawn uniforms."""

    def random(self) -> float: ...

    def uniform(self, low: float, high: float) -> float: ...

    def integers(self, low: int, high: int) -> int: ...


TRAIN_SCALE = (0.08, 1.0)
TRAIN_RATIO = (3.0 / 4.0, 4.0 / 3.0)
_DCT_SCALES = (8, 4, 2)
_TURBO_COLORSPACES = ("YCbCr", "Gray")  # what simplejpeg turns into correct RGB
_RESIZE_THEN_CONVERT = ("RGB", "RGBX", "L")  # resampled as they are; other modes become RGB first


def random_resized_crop_box(width: int, height: int, rng: RandomSource,
                            scale: tuple[float, float] = TRAIN_SCALE,
                            ratio: tuple[float, float] = TRAIN_RATIO) -> tuple[int, int, int, int]:
    """(left, top, crop_width, crop_height) by torchvision's RandomResizedCrop.get_params.

    Ten tries at a random area fraction and log-uniform aspect ratio; after that, the largest
    central crop within the ratio bounds. Drawn from `rng`, never from global random state, so a
    sample's crop depends only on the seed it was given.
    """
    area = width * height
    log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(log_lo, log_hi))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, w, h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    return (width - w) // 2, (height - h) // 2, w, h


def center_crop_box(width: int, height: int, image_size: int, crop_ratio: float) -> Box:
    """The source box that Resize(round(S / crop_ratio)) + CenterCrop(S) keeps, in source pixels.

    Follows torchvision: the short side becomes `resize`, the long side `int(resize * long / short)`
    (truncated), and the crop offset is `round((resized - S) / 2)`.
    """
    resize = int(round(image_size / crop_ratio))
    if resize < image_size:
        raise ValueError(f"crop_ratio {crop_ratio} must be at most 1")
    if width <= height:
        new_w, new_h = resize, int(resize * height / width)
    else:
        new_w, new_h = int(resize * width / height), resize
    left = int(round((new_w - image_size) / 2.0))
    top = int(round((new_h - image_size) / 2.0))
    sx, sy = width / new_w, height / new_h
    return left * sx, top * sy, (left + image_size) * sx, (top + image_size) * sy


def dct_scale(box: Box, out_size: int) -> int:
    """The largest JPEG DCT scale (8, 4, 2 or 1) at which `box` still spans `out_size` each way."""
    span = min(box[2] - box[0], box[3] - box[1])
    return next((s for s in _DCT_SCALES if span >= s * out_size), 1)


def filter_reach(box: Box, out_size: int) -> tuple[int, int, int, int]:
    """The integer pixel rectangle (left, top, right, bottom) that resampling `box` to out_size²
    reads, plus a margin: bilinear reaches max(1, box span / out_size) pixels past each output
    pixel's centre; 2 more cover a region decode's outermost column, whose chroma lacks its neighbour."""
    reach_x = math.ceil(max(1.0, (box[2] - box[0]) / out_size)) + 2
    reach_y = math.ceil(max(1.0, (box[3] - box[1]) / out_size)) + 2
    return (math.floor(box[0]) - reach_x, math.floor(box[1]) - reach_y,
            math.ceil(box[2]) + reach_x, math.ceil(box[3]) + reach_y)


def _as_rgb_array(img: Image.Image, flip: bool, out: np.ndarray | None) -> np.ndarray:
    """`img` (RGBX, RGB or L) as uint8 RGB HWC, mirrored if `flip`, written into `out` if given.

    With the C extension, an RGBX image goes into `out` in one pass (read through PIL's zero-copy
    Arrow export). Else one PIL pass packs RGB bytes and one copy puts them in place: PIL's
    transpose is ten times cheaper than copying a negative-stride view."""
    if out is not None and _jpeg is not None and img.mode == "RGBX" and hasattr(img, "__arrow_c_array__"):
        try:
            _schema, array = img.__arrow_c_array__()
        except ValueError:  # an image in several memory blocks (over 16 MB): no zero-copy export
            pass
        else:
            _jpeg.pack_rgb(array, out, img.width, img.height, flip)
            return out
    if img.mode not in ("RGBX", "RGB"):
        img = img.convert("RGB")
    if flip:
        img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
    pixels = np.frombuffer(img.tobytes("raw", "RGB"), np.uint8).reshape(img.height, img.width, 3)
    if out is None:
        return pixels.copy()  # writable, as callers (torch.from_numpy) expect
    out[...] = pixels
    return out


class EncodedImage:
    """Image bytes with the size read from the header and the pixels not decoded yet."""

    def __init__(self, data: bytes | Image.Image) -> None:
        # bytes: a YCbCr/grey JPEG for _jpeg or simplejpeg; an Image: PIL's (decoded lazily) for all else
        self._source: bytes | Image.Image
        if isinstance(data, Image.Image):
            self._source = data
            self.width, self.height = data.size
            return
        if simplejpeg is not None and data[:2] == b"\xff\xd8":
            try:
                height, width, colorspace, _ = simplejpeg.decode_jpeg_header(data)
            except ValueError:
                colorspace = None
            if colorspace in _TURBO_COLORSPACES:
                self._source, self.width, self.height = data, width, height
                return
        self._source = Image.open(io.BytesIO(data))
        self.width, self.height = self._source.size

    def crop_resized(self, box: Box, out_size: int, flip: bool = False,
                     out: np.ndarray | None = None) -> np.ndarray:
        """`box` resampled to out_size², bilinear with antialiasing, as uint8 RGB HWC (into `out`
        when given: a batch's slot, so no array is made per image)."""
        scale = dct_scale(box, out_size)
        shrink: float  # source pixels per pixel of `img`
        origin: tuple[float, float] = (0.0, 0.0)  # where `img` starts, in pixels of the scaled image
        if isinstance(self._source, bytes) and _jpeg is not None:
            scaled = (box[0] / scale, box[1] / scale, box[2] / scale, box[3] / scale)
            left, top, right, bottom = filter_reach(scaled, out_size)
            rgbx, x0, y0, width, height = _jpeg.decode_region(self._source, scale, left, top, right - left,
                                                             bottom - top)
            img = Image.frombuffer("RGBX", (width, height), rgbx, "raw", "RGBX", 0, 1)
            shrink, origin = scale, (x0, y0)
        elif isinstance(self._source, bytes):
            # RGBX: PIL's own pixel layout, so the decoded buffer is wrapped, not copied.
            pixels = simplejpeg.decode_jpeg(self._source, colorspace="RGBX",
                                            min_width=-(-self.width // scale),
                                            min_height=-(-self.height // scale))
            img = Image.frombuffer("RGBX", (pixels.shape[1], pixels.shape[0]), pixels, "raw", "RGBX", 0, 1)
            shrink = scale
        else:
            img = self._source
            if scale > 1 and img.format == "JPEG":
                drafted = img.draft("RGB", (img.width // scale, img.height // scale))
                shrink = self.width / drafted[1][2] if drafted else 1
            else:
                shrink = 1
            if img.mode not in _RESIZE_THEN_CONVERT:
                img = img.convert("RGB")
        source_box = (box[0] / shrink - origin[0], box[1] / shrink - origin[1],
                      box[2] / shrink - origin[0], box[3] / shrink - origin[1])
        resized = img.resize((out_size, out_size), Image.Resampling.BILINEAR, box=source_box)
        return _as_rgb_array(resized, flip, out)


def decode_train_image(data: bytes, image_size: int, rng: RandomSource,
                       scale: tuple[float, float] = TRAIN_SCALE,
                       ratio: tuple[float, float] = TRAIN_RATIO, hflip: bool = True,
                       out: np.ndarray | None = None) -> np.ndarray:
    """RandomResizedCrop(image_size, scale, ratio) + RandomHorizontalFlip(0.5) → uint8 HWC
    (written into `out` when given).

    The flip is drawn even when `hflip` is off, so the crops stay the same either way."""
    img = EncodedImage(data)
    left, top, w, h = random_resized_crop_box(img.width, img.height, rng, scale, ratio)
    flip = bool(rng.random() < 0.5) and hflip
    return img.crop_resized((left, top, left + w, top + h), image_size, flip, out)


def decode_val_image(data: bytes | Image.Image, image_size: int,
                     crop_ratio: float = 0.875, out: np.ndarray | None = None) -> np.ndarray:
    """Resize(round(image_size / crop_ratio)) + CenterCrop(image_size), bilinear → uint8 HWC.

    The eval transform, shared by the val loader and `hrnet-fast predict`. Only the kept box is
    resampled, which matches resize-then-crop; JPEGs at least twice the resize target are decoded
    at a DCT scale first, which moves pixels by about one grey level on average.
    """
    img = EncodedImage(data)
    return img.crop_resized(center_crop_box(img.width, img.height, image_size, crop_ratio), image_size, out=out)
