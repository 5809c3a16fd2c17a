"""A few images of a run's split written out as ordinary image files, so a bundle can be tried on
files the way a user would (the demo's last step): PNG, 8-bit or 16-bit as the values allow."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from medsight.errors import InvalidConfig


def write_split_pngs(run_dir: str | os.PathLike[str], folder: str | os.PathLike[str],
                     split: str = "test", n: int = 6) -> list[Path]:
    """The first `n` images of `split` of the run at `run_dir`, as PNG files in `folder`."""
    from PIL import Image as PILImage

    from medsight.deploy.bundle_facts import open_run

    data = open_run(run_dir).dataset
    if split in data.split_counts():
        data = data.split(split)
    out_dir = Path(folder)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for i in range(min(n, len(data))):
        px = data.image(i).pixels
        if px.ndim != 3 or px.shape[0] not in (1, 3):
            raise InvalidConfig(f"{data.records[i].ref}: only 2D grey or RGB images can be written "
                                "as PNG")
        if not np.array_equal(px, np.round(px)) or px.min() < 0 or px.max() > 65535 or (
                px.shape[0] == 3 and px.max() > 255):
            raise InvalidConfig(f"{data.records[i].ref}: pixel values do not fit an 8/16-bit PNG")
        if px.shape[0] == 3:
            picture = PILImage.fromarray(px.transpose(1, 2, 0).astype(np.uint8), mode="RGB")
        elif px.max() <= 255:
            picture = PILImage.fromarray(px[0].astype(np.uint8))
        else:
            picture = PILImage.fromarray(px[0].astype(np.uint16))
        path = out_dir / f"{split}_{i:03d}.png"
        picture.save(path)
        written.append(path)
    return written
