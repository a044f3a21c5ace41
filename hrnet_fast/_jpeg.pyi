from typing import Any

libjpeg_turbo_version: int  # LIBJPEG_TURBO_VERSION_NUMBER it was built against, e.g. 2001005; 0 if unknown

def decode_region(data: bytes, scale: int, x: int, y: int, width: int, height: int, /) -> tuple[bytes, int, int, int, int]:
    """Decode only a region of a JPEG at 1/scale to RGBX: (pixels, x0, y0, width, height)."""

def pack_rgb(arrow_array: Any, out: Any, width: int, height: int, flip: bool, /) -> None:
    """An RGBX image's Arrow export written into `out` as RGB bytes, mirrored if `flip`."""

def add_restart_markers(data: bytes, interval: int, /) -> bytes:
    """The same JPEG (same DCT coefficients), restart-coded every `interval` MCUs, optimised Huffman tables."""
