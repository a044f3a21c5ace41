"""The region JPEG decoder (hrnet_fast/_jpeg.c) and the crop path built on it.

What must hold: decoding only the crop's rows and columns (plus the resampler's reach) gives the
crop the whole-image decode gives, at every DCT scale, subsampling and image edge; damage is a
ValueError the loader counts; and the set-up builds the extension where libjpeg's headers exist,
so a broken build cannot silently cost the loader its speed.
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from conftest import ROOT
from imagegen import encode, photo_like
from PIL import Image

from hrnet_fast.data import decode

region = decode._jpeg
needs_region = pytest.mark.skipif(region is None, reason="the C extension is not built (no libjpeg headers)")


def jpegs(rng: np.random.Generator) -> list[bytes]:
    """4:2:0, 4:4:4 and 4:2:2 colour JPEGs with odd sizes, and a greyscale one."""
    return [encode(photo_like(203, 150, rng, texture=12), quality=90),
            encode(photo_like(150, 211, rng, texture=12), quality=95, subsampling=0),
            encode(photo_like(181, 133, rng, texture=12), quality=85, subsampling=1),
            encode(photo_like(170, 130, rng).convert("L"), quality=90)]


def test_libjpeg_headers_mean_the_extension_is_built():
    spec = importlib.util.spec_from_file_location("setup_venv", ROOT / "tools" / "setup_venv.py")
    setup_venv = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(setup_venv)
    if setup_venv.libjpeg_headers():  # what the set-up decides by
        assert region is not None, "libjpeg headers exist but _jpeg did not build: run `make setup`"


@needs_region
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
def test_region_pixels_equal_the_whole_decode(scale):
    rng = np.random.default_rng(scale)
    for data in jpegs(rng):
        whole, wx, wy, width, height = region.decode_region(data, scale, 0, 0, 10**6, 10**6)
        assert (wx, wy) == (0, 0)
        full = np.frombuffer(whole, np.uint8).reshape(height, width, 4)
        for _ in range(12):
            x, y = int(rng.integers(-5, width)), int(rng.integers(-5, height))
            w, h = int(rng.integers(1, width + 5)), int(rng.integers(1, height + 5))
            pixels, x0, y0, cw, ch = region.decode_region(data, scale, x, y, w, h)
            part = np.frombuffer(pixels, np.uint8).reshape(ch, cw, 4)
            assert x0 <= max(x, 0) and y0 == min(max(y, 0), height - 1)  # left edge aligned down only
            assert x0 + cw >= min(x + w, width) and y0 + ch == min(max(y + h, y0 + 1), height)
            # the outermost column of an interior region may differ (chroma upsampling lacks its
            # neighbour): callers ask for a margin, so compare inside it
            lo, hi = (1 if x0 > 0 else 0), (cw - 1 if x0 + cw < width else cw)
            np.testing.assert_array_equal(part[:, lo:hi, :3], full[y0:y0 + ch, x0 + lo:x0 + hi, :3])


def restart_coded(rng: np.random.Generator, every: int) -> list[bytes]:
    """`jpegs`' kinds with a restart marker every `every` MCUs (pack writes every 1); with 3, the
    MCU rows of some hold no whole number of intervals, which the decoder must decode the plain way."""
    return [encode(photo_like(203, 150, rng, texture=12), quality=90, restart_marker_blocks=every),
            encode(photo_like(150, 211, rng, texture=12), quality=95, subsampling=0, restart_marker_blocks=every),
            encode(photo_like(181, 133, rng, texture=12), quality=85, subsampling=1, restart_marker_blocks=every),
            encode(photo_like(170, 130, rng).convert("L"), quality=90, restart_marker_blocks=every)]


@needs_region
@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("every", [1, 2, 3])
def test_restart_coded_regions_equal_the_whole_decode(scale, every):
    rng = np.random.default_rng(10 * scale + every)
    for data in restart_coded(rng, every):
        assert b"\xff\xdd" in data  # the encoder wrote restart markers
        whole, _, _, width, height = region.decode_region(data, scale, 0, 0, 10**6, 10**6)
        full = np.frombuffer(whole, np.uint8).reshape(height, width, 4)
        for _ in range(12):
            x, y = int(rng.integers(-5, width)), int(rng.integers(-5, height))
            w, h = int(rng.integers(max(1, 1 - x), width + 5)), int(rng.integers(1, height + 5))  # overlaps
            pixels, x0, y0, cw, ch = region.decode_region(data, scale, x, y, w, h)
            part = np.frombuffer(pixels, np.uint8).reshape(ch, cw, 4)
            left, right = max(x, 0), min(x + w, width)  # the columns asked for
            assert x0 <= left and y0 == min(max(y, 0), height - 1) and x0 + cw >= right
            assert y0 + ch == min(max(y + h, y0 + 1), height)
            # every row asked for, and every column but an interior region's outermost (as above)
            lo, hi = left + (left > 0), right - (right < width)
            np.testing.assert_array_equal(part[:, lo - x0:hi - x0, :3], full[y0:y0 + ch, lo:hi, :3])


@needs_region
def test_restart_coded_regions_decode_only_the_intervals_they_cover():
    """Observable proof that only the covering intervals are read: an interval whose data is gone
    (top right) breaks a region that covers it, and not one that does not (bottom left), which
    the plain decoder would reach only through that interval's row."""
    data = encode(photo_like(160, 128, np.random.default_rng(3), texture=12), quality=90, restart_marker_blocks=1)
    first_marker = data.index(b"\xff\xd0")
    markers = [i for i in range(first_marker, len(data) - 1) if data[i] == 0xFF and 0xD0 <= data[i + 1] <= 0xD7]
    assert len(markers) == 10 * 8 - 1  # 160 x 128 at 4:2:0: 10 x 8 MCUs, one interval each
    damaged = data[:markers[8] + 2] + data[markers[9]:]  # interval 9 (row 0, last column) emptied
    want = np.frombuffer(region.decode_region(data, 1, 0, 0, 160, 128)[0], np.uint8).reshape(128, 160, 4)
    pixels, x0, y0, cw, ch = region.decode_region(damaged, 1, 0, 64, 60, 64)
    np.testing.assert_array_equal(np.frombuffer(pixels, np.uint8).reshape(ch, cw, 4)[:, :60 - x0 - 1],
                                  want[64:128, x0:59])
    with pytest.raises(ValueError, match="JPEG decode failed"):
        region.decode_region(damaged, 1, 120, 0, 40, 20)


@needs_region
def test_crops_through_the_region_decoder_equal_the_whole_image_path(monkeypatch):
    rng = np.random.default_rng(7)
    for data in jpegs(rng):
        for size in (32, 48):
            for seed in range(6):
                got = decode.decode_train_image(data, size, np.random.default_rng(seed))
                with monkeypatch.context() as m:
                    m.setattr(decode, "_jpeg", None)  # simplejpeg's whole-image decode
                    want = decode.decode_train_image(data, size, np.random.default_rng(seed))
                # two builds of libjpeg-turbo (system, simplejpeg's) may round an IDCT differently
                assert np.abs(got.astype(int) - want).max() <= 1
                assert (got == want).mean() > 0.99
        assert decode.decode_val_image(data, 40).shape == (40, 40, 3)


@needs_region
def test_region_decode_of_damaged_bytes_is_a_value_error():
    data = encode(photo_like(120, 90, np.random.default_rng(1)), quality=90)
    for bad in (data[:len(data) // 2], b"\xff\xd8" + bytes(100), b"not a jpeg"):
        with pytest.raises(ValueError, match="JPEG decode failed"):
            region.decode_region(bad, 1, 0, 0, 120, 90)
    with pytest.raises(ValueError, match="scale"):
        region.decode_region(data, 3, 0, 0, 10, 10)
    cmyk = encode(Image.new("CMYK", (40, 30), (10, 20, 30, 40)), quality=90)
    with pytest.raises(ValueError, match="YCbCr or greyscale"):
        region.decode_region(cmyk, 1, 0, 0, 40, 30)
    # the crop path sends CMYK to PIL instead, which converts it
    assert decode.decode_val_image(cmyk, 16).shape == (16, 16, 3)


def test_crop_written_into_a_batch_slot_matches_the_returned_array():
    data = encode(photo_like(90, 70, np.random.default_rng(2)), quality=90)
    batch = np.zeros((2, 32, 32, 3), np.uint8)
    returned = decode.decode_train_image(data, 32, np.random.default_rng(5))
    written = decode.decode_train_image(data, 32, np.random.default_rng(5), out=batch[1])
    assert written is batch[1] or np.shares_memory(written, batch)
    np.testing.assert_array_equal(batch[1], returned)
    assert not batch[0].any() and returned.flags.writeable


@needs_region
@pytest.mark.parametrize("flip", [False, True])
def test_pack_rgb_writes_the_image_mirrored_or_not_into_its_slot(flip):
    rgb = np.random.default_rng(4).integers(0, 256, (13, 17, 3), dtype=np.uint8)
    img = Image.fromarray(rgb).convert("RGBX")
    batch = np.full((3, 13, 17, 3), 7, np.uint8)
    region.pack_rgb(img.__arrow_c_array__()[1], batch[1], 17, 13, flip)
    np.testing.assert_array_equal(batch[1], rgb[:, ::-1] if flip else rgb)
    assert (batch[0] == 7).all() and (batch[2] == 7).all()  # nothing written past the slot
    with pytest.raises(ValueError, match="RGBX image"):
        region.pack_rgb(img.__arrow_c_array__()[1], batch[1], 16, 13, flip)
