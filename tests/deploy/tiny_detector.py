"""A tiny real detector for deployment and service tests: `run_experiment` (what `medsight train`
runs) on 6 BCCD smear images per official split, 96x128 input, one epoch (seconds). Its boxes need
not be good, only real: the tests check that every deployed path gives the estimator's boxes."""

from __future__ import annotations

from pathlib import Path

from conftest import shared_path

from medsight.config import parse_config
from medsight.experiment import run_experiment

INPUT = [96, 128]  # rows, cols: BCCD's 480x640 smears scaled by 1/5


def bccd() -> Path:
    return shared_path("bccd")


def smear_jpegs(n: int = 2, split: str = "test") -> list[Path]:
    """The first `n` JPEGs of an official BCCD split (real 640x480 RGB smears)."""
    root = bccd()
    names = (root / "ImageSets" / "Main" / f"{split}.txt").read_text().split()
    return [root / "JPEGImages" / f"{name}.jpg" for name in names[:n]]


def detector_run(out: Path) -> Path:
    """A run folder of a CenterNet detector trained for one epoch on 6 images per split."""
    cfg = parse_config({
        "name": out.name,
        "data": {"source": str(bccd()), "limit": 6},
        "preprocess": [{"resize": {"size": INPUT}}],
        "model": {"kind": "detector", "params": {"epochs": 1, "batch_size": 4, "threads": 2,
                                                 "seed": 0, "max_detections": 20}},
        "evaluation": {"n_boot": 100},
        "output": str(out),
    })
    run_experiment(cfg)
    return out
