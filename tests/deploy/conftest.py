"""Shared fixtures for deployment tests: tiny real runs (seconds each), trained once per session.

Each fixture runs `run_experiment` on a few dozen real images (BreastMNIST, RetinaMNIST,
AdrenalMNIST3D from shared/data) with 1-2 epochs and returns the run folder; `bundle_of` bundles
a run once and caches the path. Tests using them are marked ``xdist_group("deploy_runs")`` so
they share one worker.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import shared_path, tiny_nets
from tiny_runs import tiny_run as _run
from tiny_runs import torch_model as _torch


@pytest.fixture(scope="session")
def runs_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("deploy_runs")


@pytest.fixture(scope="session")
def classical_run(runs_root: Path) -> Path:
    """stats + HOG + logistic regression on 20 px BreastMNIST (positive class: malignant)."""
    return _run(runs_root / "classical", shared_path("medmnist", "breastmnist.npz"),
                [{"resize": {"size": [20, 20]}}, {"minmax": {}}],
                {"kind": "classical", "params": {"model": "logistic_regression",
                                                 "features": ["stats", "hog"]}},
                limit=40, positive="malignant")


@pytest.fixture(scope="session")
def cnn2d_run(runs_root: Path) -> Path:
    """A tiny 2D CNN (global pooling, CAM-able) with L-R flip test-time augmentation."""
    tiny_nets()
    return _run(runs_root / "cnn2d", shared_path("medmnist", "breastmnist.npz"),
                [{"resize": {"size": [20, 20]}}, {"minmax": {}}],
                _torch("tiny_cnn_test", epochs=2, augment="ultrasound", tta=True),
                positive="malignant")


@pytest.fixture(scope="session")
def cnn3d_run(runs_root: Path) -> Path:
    """cnn3d_small on 16^3 AdrenalMNIST3D volumes."""
    return _run(runs_root / "cnn3d", shared_path("medmnist", "adrenalmnist3d.npz"),
                [{"resize": {"size": [16, 16, 16]}}, {"minmax": {}}], _torch("cnn3d_small"),
                limit=16)


@pytest.fixture(scope="session")
def ordinal_run(runs_root: Path) -> Path:
    """A CORAL (cumulative link) tiny CNN on RetinaMNIST grades 0-4."""
    tiny_nets()
    return _run(runs_root / "ordinal", shared_path("medmnist", "retinamnist.npz"),
                [{"resize": {"size": [16, 16]}}, {"minmax": {}}], _torch("tiny_cnn_test"),
                limit=30)


@pytest.fixture(scope="session")
def ensemble_run(runs_root: Path) -> Path:
    """A 2-member TorchEnsemble of tiny CNNs."""
    tiny_nets()
    member = _torch("tiny_cnn_test")["params"]
    return _run(runs_root / "ensemble", shared_path("medmnist", "breastmnist.npz"),
                [{"resize": {"size": [16, 16]}}, {"minmax": {}}],
                {"kind": "torch_ensemble", "params": {"params": member, "n_folds": 2}},
                positive="malignant")


@pytest.fixture(scope="session")
def detector_run(runs_root: Path) -> Path:
    """A CenterNet detector trained one epoch on 6 BCCD smears per split (96x128 input)."""
    from deploy.tiny_detector import detector_run as run

    return run(runs_root / "detector")


@pytest.fixture(scope="session")
def bundle_of(runs_root: Path) -> Callable[[Path], Path]:
    """run folder -> its bundle (created once per run)."""
    from medsight.deploy import create_bundle

    made: dict[Path, Path] = {}

    def make(run: Path) -> Path:
        if run not in made:
            made[run] = create_bundle(run, runs_root / f"{run.name}.msb")
        return made[run]

    return make


@pytest.fixture(scope="session")
def split_parity() -> Callable[[Path, Path], tuple[float, bool, Any]]:
    """(run, bundle) -> (max |runtime - predict_proba| on the run's test split, decisions
    identical, the opened bundle); the runtime gets the bundle's own preprocessing of each image."""
    import numpy as np

    from medsight.deploy import open_bundle
    from medsight.deploy.bundle_facts import open_run

    def parity(run: Path, bundle_path: Path) -> tuple[float, bool, Any]:
        folder = open_run(run)
        test = folder.dataset.split("test")
        expected = folder.estimator.predict_proba(test)
        bundle = open_bundle(bundle_path)
        x = np.stack([bundle.preprocess(test.image(i)).pixels for i in range(len(test))])
        got = bundle.runtime.forward(x, batch_size=7).probabilities
        assert got.shape == expected.shape and got.dtype == np.float64
        same = np.array_equal(folder.estimator.decide(got), folder.estimator.decide(expected))
        return float(np.max(np.abs(got - expected))), bool(same), bundle

    return parity
