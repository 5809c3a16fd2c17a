"""Test helper: a run's test split written out as PNG files, with that run's predictions.csv
probabilities for them (what `medsight predict` on those files must reproduce)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image as PILImage

from medsight.deploy.bundle_facts import open_run


def write_test_pngs(run: Path, folder: Path) -> tuple[list[Path], np.ndarray]:
    """The run's test images as 8-bit PNGs and their probabilities from predictions.csv."""
    test = open_run(run).dataset.split("test")
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(len(test)):
        px = test.image(i).pixels
        assert np.array_equal(px, np.round(px)) and px.min() >= 0 and px.max() <= 255
        path = folder / f"test_{i:03d}.png"
        arr = px[0] if px.shape[0] == 1 else px.transpose(1, 2, 0)
        PILImage.fromarray(arr.astype(np.uint8)).save(path)
        paths.append(path)
    frame = pd.read_csv(run / "predictions.csv")
    frame = frame[frame["split"] == "test"].set_index("ref").loc[[r.ref for r in test.records]]
    return paths, frame[[c for c in frame.columns if c.startswith("proba_")]].to_numpy()
