"""Write scikit-learn's handwritten digits as an ImageNet-layout folder of JPEG files.

1797 real scanned 8×8 digits ship inside scikit-learn, so the demo needs no download. Each digit
is upscaled (bicubic) to `--size` pixels, written as an RGB baseline JPEG under
`OUT/{train,val}/digitK/`, and every `--val-every`-th image of each class is held out for val.
A `synset_names.txt` beside them maps folder names to readable names for `predict`.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def write_digits(out: Path, size: int = 48, val_every: int = 5) -> dict[str, int]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    counts = {"train": 0, "val": 0}
    seen = np.zeros(10, dtype=int)
    for index, (pixels, label) in enumerate(zip(digits.images, digits.target)):
        split = "val" if seen[label] % val_every == val_every - 1 else "train"
        seen[label] += 1
        gray = (255 - pixels * (255 / 16)).clip(0, 255).astype(np.uint8)  # dark ink on white paper
        image = Image.fromarray(gray, "L").resize((size, size), Image.BICUBIC).convert("RGB")
        folder = out / split / f"digit{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"digit{label}_{index:04d}.JPEG", quality=95)
        counts[split] += 1
    (out / "synset_names.txt").write_text("".join(f"digit{k} {name}\n" for k, name in enumerate(NAMES)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--size", type=int, default=48)
    parser.add_argument("--val-every", type=int, default=5)
    args = parser.parse_args()
    counts = write_digits(args.out, args.size, args.val_every)
    print(f"digits: {counts['train']} train and {counts['val']} val images in {args.out}")


if __name__ == "__main__":
    main()
