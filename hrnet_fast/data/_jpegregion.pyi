def decode(data: bytes, scale: int, x: int, y: int, width: int, height: int, /) -> tuple[bytes, int, int, int, int]:
    """Decode only a region of a JPEG at 1/scale to RGBX: (pixels, x0, y0, width, height)."""
