"""Predictor heatmaps on phantoms: a bundled HOG + logistic-regression phantom model (the demo's
kind) explained by occlusion puts the peak of most detected lesions inside a recorded lesion box."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from medsight.config import parse_config
from medsight.data.sources.phantom import phantom_image
from medsight.deploy import create_bundle
from medsight.deploy.predictor import Predictor
from medsight.experiment import run_experiment


@pytest.fixture(scope="module")
def phantom_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom_bundle")
    cfg = parse_config({
        "name": "phantoms", "output": str(root / "run"),
        "data": {"source": "phantom:n=200,size=64,seed=0"},
        "preprocess": [{"resize": {"size": [64, 64]}}, {"minmax": {}}],
        "model": {"kind": "classical", "params": {"model": "logistic_regression",
                                                  "features": ["hog"]}},
        "evaluation": {"n_boot": 100},
    })
    run_experiment(cfg)
    return create_bundle(root / "run", root / "phantoms.msb")


@pytest.mark.slow
def test_occlusion_heatmap_peaks_inside_the_lesion_box(phantom_bundle: Path) -> None:
    predictor = Predictor(phantom_bundle)
    assert predictor.heatmap_method == "occlusion"
    hits = found = 0
    for index in range(300, 380):  # images the model never saw (the dataset had 200)
        image, label, boxes = phantom_image(0, index, 64)
        if not label:
            continue
        pred = predictor.predict(image, heatmap=True)
        if pred.label != "lesion":
            continue
        found += 1
        assert pred.heatmap.shape == (64, 64) and pred.heatmap_info["grid"] == "original"
        y, x = np.unravel_index(np.argmax(pred.heatmap), pred.heatmap.shape)
        hits += any(b[0] - 1 <= x + 0.5 <= b[2] + 1 and b[1] - 1 <= y + 0.5 <= b[3] + 1
                    for b in boxes)
    assert found >= 10
    # lesion boxes cover a few % of the image: by chance almost no peak would fall inside one
    assert hits >= 0.4 * found, (hits, found)  # 15 of 26 when written
