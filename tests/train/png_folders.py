"""Test helper: small class folders of random 8-bit PNGs (what a user's image folder looks like)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image as PILImage

CHAIN = [{"resize": {"size": [12, 12]}}]  # the preprocessing the cache tests train with


def write_pngs(root: Path, n: int, size: int = 16, seed: int = 0) -> Path:
    """`n` random 8-bit PNGs in two class folders (alternating), under `root`."""
    rng = np.random.default_rng(seed)
    for i in range(n):
        folder = root / ("normal", "lesion")[i % 2]
        folder.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (size, size), dtype=np.uint8)
        PILImage.fromarray(pixels).save(folder / f"{i:04d}.png")
    return root
