"""Every classical model medsight offers bundles (skl2onnx, or skops where it cannot be exact) and
its bundle reproduces `predict_proba` on the run's test split, features recomputed by the runtime."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import shared_path
from deploy.tamper import tampered_copy

from medsight.config import parse_config
from medsight.deploy import create_bundle, open_bundle
from medsight.errors import BundleIntegrityError
from medsight.experiment import run_experiment
from medsight.models.classical import MODELS

BREAST_PRE = [{"resize": {"size": [16, 16]}}, {"minmax": {}}]
# (model, features, extra params): every model, every hand-crafted extractor at least once
CASES: list[tuple[str, list[str], dict[str, Any]]] = [
    ("decision_tree", ["stats"], {}),
    ("random_forest", ["lbp"], {"model_params": {"n_estimators": 20}}),
    ("svm_rbf", ["hog"], {}),
    ("svm_linear", ["glcm"], {}),
    ("logistic_regression", [], {}),  # flattened pixels
    ("gradient_boosting", ["stats"], {"model_params": {"max_iter": 20}}),
    ("knn", ["stats", "hog"], {}),
    ("svm_rbf", ["stats"], {"calibrate": "isotonic"}),
]


def _classical_run(out: Path, source: Path, preprocess: list[dict[str, Any]], model: str,
                   features: list[str], extra: dict[str, Any], limit: int) -> Path:
    cfg = parse_config({"name": out.name, "data": {"source": str(source), "limit": limit},
                        "preprocess": preprocess,
                        "model": {"kind": "classical",
                                  "params": {"model": model, "features": features, **extra}},
                        "evaluation": {"n_boot": 100}, "output": str(out)})
    run_experiment(cfg)
    return out


def test_every_classical_model_is_covered() -> None:
    assert {c[0] for c in CASES} == set(MODELS)


@pytest.mark.xdist_group("deploy_runs")
@pytest.mark.parametrize(("model", "features", "extra"), CASES,
                         ids=[f"{m}-{'+'.join(f) or 'pixels'}{'-iso' if e.get('calibrate') else ''}"
                              for m, f, e in CASES])
def test_classical_bundle_round_trip(model: str, features: list[str], extra: dict[str, Any],
                                     split_parity, tmp_path: Path) -> None:
    run = _classical_run(tmp_path / "run", shared_path("medmnist", "breastmnist.npz"), BREAST_PRE,
                         model, features, extra, limit=24)
    path = create_bundle(run, tmp_path / "model.msb")
    diff, same, bundle = split_parity(run, path)
    assert diff < 1e-5 and same, f"{model}: max |diff| {diff:.3g}, decisions identical {same}"
    runtime = bundle.manifest["runtime"]
    assert runtime["kind"] == "classical" and runtime["features"]["names"] == features
    names = set(bundle.manifest["files"])
    if runtime["format"] == "skops":  # said so in the manifest, with the reason
        assert "model.skops" in names and any("skops" in n for n in bundle.manifest["notes"])
        assert runtime["onnx_attempts"]
        with pytest.raises(BundleIntegrityError, match=r"model\.skops"):
            open_bundle(tampered_copy(path, "model.skops", tmp_path / "tampered.msb"))
    else:
        assert "model.onnx" in names and runtime["converter"] == "skl2onnx"
    if model == "logistic_regression":
        assert runtime["format"] == "onnx" and runtime["input_dtype"] == "float64"


@pytest.mark.xdist_group("deploy_runs")
def test_3d_shape_features_bundle(split_parity, tmp_path: Path) -> None:
    run = _classical_run(tmp_path / "run", shared_path("medmnist", "adrenalmnist3d.npz"),
                         [{"resize": {"size": [16, 16, 16]}}, {"minmax": {}}],
                         "logistic_regression", ["shape"], {}, limit=20)
    diff, same, bundle = split_parity(run, create_bundle(run, tmp_path / "shape.msb"))
    assert diff < 1e-5 and same
    assert bundle.runtime.input_shape == (1, 16, 16, 16)
    assert bundle.manifest["input"]["layout"] == "NCDHW"


def test_skops_fallback_refuses_untrusted_types(tmp_path: Path) -> None:
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    from medsight.deploy.runtime import _load_skops

    data = sio.dumps(FunctionTransformer(os.system))  # a callable that could run commands
    with pytest.raises(BundleIntegrityError, match="trusted"):
        _load_skops(data, "model.skops")



@pytest.mark.xdist_group("deploy_runs")
def test_a_bundle_with_an_align_step_needs_no_file_outside_it(split_parity, tmp_path: Path) -> None:
    from PIL import Image as PILImage

    source = shared_path("medmnist", "breastmnist.npz")
    reference = tmp_path / "reference.png"
    PILImage.fromarray(np.load(source)["train_images"][0]).save(reference)
    pre = [{"resize": {"size": [16, 16]}},
           {"align": {"reference": str(reference), "transform": "translation", "iterations": 20}},
           {"minmax": {}}]
    run = _classical_run(tmp_path / "run", source, pre, "logistic_regression", ["stats"], {}, limit=12)
    path = create_bundle(run, tmp_path / "aligned.msb")
    reference.unlink()  # the reference pixels travel inside preprocess.json
    diff, same, bundle = split_parity(run, path)
    assert "align" in bundle.manifest["preprocess"]["steps"]
    assert diff < 1e-5 and same
