"""Synthetic ImageNet-style trees for the pack tests and benchmarks/pack_vs_tar.py.

Photo-like images (smooth gradients + shapes + sensor noise) compress like real photos at
quality ~90, which matters for byte and speed measurements; random noise would not.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter


def photo_like(width: int, height: int, rng: np.random.Generator, texture: float = 0.0) -> Image.Image:
    """Smooth colour gradients, a few filled shapes, mild blur and noise; `texture` (~12) adds
    mid-frequency detail so 500x375 files reach real-photo sizes (~80 KB at quality 90)."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    pixels = np.empty((height, width, 3), np.float32)
    for c in range(3):
        fx, fy, phase = rng.uniform(0.5, 3.0), rng.uniform(0.5, 3.0), rng.uniform(0, np.pi)
        pixels[..., c] = 128 + 60 * np.sin(x / width * np.pi * fx + phase) \
            + 50 * np.cos(y / height * np.pi * fy)
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1, y1 = x0 + int(rng.integers(4, max(5, width // 2))), y0 + int(rng.integers(4, max(5, height // 2)))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x1, y1], fill=colour)
    image = image.filter(ImageFilter.GaussianBlur(1.2))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 5, (height, width, 3))
    if texture:
        coarse = rng.normal(128, texture, (height // 3 + 1, width // 3 + 1, 3))
        coarse = Image.fromarray(np.clip(coarse, 0, 255).astype(np.uint8))
        upsampled = coarse.resize((width, height), Image.Resampling.BICUBIC)
        noisy += 1.5 * (np.asarray(upsampled, np.float32) - 128)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def encode(image: Image.Image, fmt: str = "JPEG", **options) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def good_tree(root: Path, classes: list[str], per_class: dict[str, int], size: tuple[int, int],
              seed: int = 0, quality: int = 90) -> list[Path]:
    """`root/<split>/<synset>/<synset>_<i>.JPEG` baseline RGB JPEGs; returns every written path."""
    rng = np.random.default_rng(seed)
    paths = []
    for split, count in per_class.items():
        for synset in classes:
            for i in range(count):
                name = f"{synset}_{i}.JPEG" if split == "train" else f"ILSVRC2012_val_{synset}_{i}.JPEG"
                data = encode(photo_like(*size, rng), quality=quality)
                paths.append(write(root / split / synset / name, data))
    return paths


def bad_inputs(rng: np.random.Generator, size: tuple[int, int] = (40, 32)) -> dict[str, bytes]:
    """One file of every awkward kind ImageNet (or a careless copy of it) contains, by file name."""
    rgb = photo_like(*size, rng)
    good = encode(rgb, quality=90)
    return {
        "cmyk.JPEG": encode(rgb.convert("CMYK"), quality=90),
        "gray.JPEG": encode(rgb.convert("L"), quality=90),
        "progressive.JPEG": encode(rgb, quality=90, progressive=True),
        "palette_png.JPEG": encode(rgb.convert("P"), "PNG"),
        "rgba.png": encode(rgb.convert("RGBA"), "PNG"),
        "truncated.JPEG": good[: len(good) // 2],
        "empty.JPEG": b"",
        "random.JPEG": rng.bytes(2048),
        "notes.txt": b"not an image\n",
        ".DS_Store": b"\0\0\0\1Bud1",
    }
