"""The CNN example configs run end to end through `medsight train` (epochs cut with --set)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from torch import nn
from typer.testing import CliRunner

from medsight.cli import app
from medsight.config import load_config
from medsight.errors import InvalidConfig
from medsight.models.base import load_estimator
from medsight.models.networks.alexnet import LocalResponseNorm
from medsight.models.torch_classifier import TorchClassifier

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
# AlexNet as specified for 3 input channels and 10 classes: conv 64/192/384/256/256 + FC
# 9216-4096-4096-10 (registry: 56,996,546 for 1 channel and 2 classes).
ALEXNET_CIFAR_PARAMS = 56_996_546 + 2 * 64 * 11 * 11 + 8 * (4096 + 1)


def _tiny_cifar(folder: Path, per_batch: int = 8, n_test: int = 20) -> Path:
    """A CIFAR-10 python folder: 5 x `per_batch` train and `n_test` test images, every class."""
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name, n, offset in [*((f"data_batch_{i}", per_batch, i) for i in range(1, 6)),
                            ("test_batch", n_test, 0)]:
        labels = [(offset + j) % 10 for j in range(n)]
        # class-dependent brightness on noise, so the classes differ
        data = np.clip(rng.normal(60 + 15 * np.array(labels)[:, None], 40, (n, 3072)), 0, 255)
        with open(folder / name, "wb") as fh:
            pickle.dump({b"labels": labels, b"data": data.astype(np.uint8)}, fh)
    with open(folder / "batches.meta", "wb") as fh:
        pickle.dump({b"label_names": [n.encode() for n in NAMES]}, fh)
    return folder


def _train(*args: str) -> None:
    done = CliRunner().invoke(app, ["train", *args])
    assert done.exit_code == 0, (done.output, done.exception)


def test_alexnet_cifar10_example_trains_the_specified_alexnet(tmp_path: Path) -> None:
    cifar = _tiny_cifar(tmp_path / "cifar-10-batches-py")
    out = tmp_path / "run"
    _train(str(EXAMPLES / "alexnet_cifar10.yaml"), "--data", str(cifar), "--out", str(out),
           "--set", "model.params.epochs=1", "--set", "data.options.val_from_train=10",
           "--set", "evaluation.n_boot=100")

    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 20 and metrics["val"]["n"] == 10
    assert 0 <= metrics["test"]["auc"] <= 1 and 0 <= metrics["test"]["acc"] <= 1
    splits = pd.read_csv(out / "splits.csv")["split"].value_counts().to_dict()
    assert splits == {"train": 30, "val": 10, "test": 20}

    est = load_estimator(out / "model")
    assert isinstance(est, TorchClassifier) and est.network == "alexnet"
    assert len(est.history_) == 1  # the --set override reached the classifier
    params = est.get_params()
    assert (params["optimizer"], params["lr"], params["momentum"], params["batch_size"]) == (
        "sgd", 0.001, 0.9, 32)
    assert params["normalize_input"] is False
    assert est.input_shape_ == [3, 64, 64]
    net = est.model_.network
    conv1 = net.features[0]
    assert (conv1.in_channels, conv1.out_channels, conv1.kernel_size, conv1.stride) == (
        3, 64, (11, 11), (4, 4))
    assert sum(isinstance(m, LocalResponseNorm) for m in net.features) == 2
    linears = [m for m in net.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (9216, 4096), (4096, 4096), (4096, 10)]
    assert [m.p for m in net.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert sum(p.numel() for p in net.parameters()) == ALEXNET_CIFAR_PARAMS
    # the network sees the preprocessed pixels in [-1, 1] unchanged (no learned standardisation)
    assert est.model_.input_mean.abs().max() == 0 and (est.model_.input_std == 1).all()
    from medsight.data.open import open_source

    pixels = est.preprocess_(open_source(cifar).image(0)).pixels
    assert pixels.shape == (3, 64, 64)
    assert pixels.min() == pytest.approx(-1) and pixels.max() == pytest.approx(1)


def test_alexnet_example_defaults_to_the_phantom_set(tmp_path: Path) -> None:
    cfg = load_config(EXAMPLES / "alexnet_cifar10.yaml")
    assert cfg.data.source.startswith("phantom") and cfg.data.options == {}
    p = cfg.model.params
    assert (p["epochs"], p["batch_size"], p["lr"], p["momentum"]) == (20, 32, 0.001, 0.9)

    out = tmp_path / "phantom_run"
    _train(str(EXAMPLES / "alexnet_cifar10.yaml"), "--out", str(out),
           "--set", "model.params.epochs=1", "--set", "data.limit=10",
           "--set", "evaluation.n_boot=100")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["test"]["n"] == 10 and 0 <= metrics["test"]["auc"] <= 1
    assert load_estimator(out / "model").input_shape_ == [1, 64, 64]


def test_set_needs_key_equals_value(tmp_path: Path) -> None:
    done = CliRunner().invoke(app, ["train", str(EXAMPLES / "alexnet_cifar10.yaml"),
                                    "--set", "model.params.epochs"])
    assert done.exit_code == 2 and "KEY=VALUE" in done.output


def test_breastmnist_cnn_example_runs(tmp_path: Path) -> None:
    from conftest import shared_path

    data = shared_path("medmnist", "breastmnist.npz")
    config = EXAMPLES / "breastmnist_cnn.yaml"
    spec = load_config(config).model  # the recipe is the example's to change; check it is used
    out = tmp_path / "breast"
    _train(str(config), "--data", str(data), "--out", str(out),
           "--set", "model.params.epochs=1", "--set", "data.limit=24",
           "--set", "evaluation.n_boot=100")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == spec.label
    assert metrics["test"]["n"] == 24 and metrics["val"]["n"] == 24
    assert 0 <= metrics["test"]["auc"] <= 1 and 0 <= metrics["test"]["acc"] <= 1
    assert metrics["test"]["positive_class"] == 0  # malignant
    est = load_estimator(out / "model")
    assert isinstance(est, TorchClassifier) and est.network == spec.params["network"]
    assert est.input_shape_ == [1, 28, 28] and len(est.history_) == 1
    assert est.threshold_ == 0.5  # evaluation.threshold: fixed, as MedMNIST scores ACC


def test_adrenalmnist3d_example_runs_shape_models_and_the_3d_cnn(tmp_path: Path) -> None:
    from conftest import shared_path

    data = shared_path("medmnist", "adrenalmnist3d.npz")
    config = EXAMPLES / "adrenalmnist3d.yaml"
    names = [c.label for c in load_config(config).candidates]
    out = tmp_path / "adrenal"
    _train(str(config), "--data", str(data), "--out", str(out),
           "--set", "candidates.3.params.epochs=1", "--set", "data.limit=40",
           "--set", "evaluation.n_boot=100")
    metrics = json.loads((out / "metrics.json").read_text())
    board = metrics["candidates"]
    assert sorted(r["model"] for r in board) == sorted(names) and len(names) == 4
    assert board[0]["model"] == metrics["model"]  # chosen on validation AUC
    assert metrics["test"]["n"] == 40 and metrics["test"]["positive_class"] == 1  # hyperplasia
    assert 0 <= metrics["test"]["auc"] <= 1
    cnn = load_config(config, overrides={"candidates.3.params.epochs": 1}).candidates[3]
    assert cnn.params["network"] == "cnn3d_small" and cnn.params["epochs"] == 1


def test_set_indexes_lists_and_names_a_bad_index(tmp_path: Path) -> None:
    with pytest.raises(InvalidConfig, match=r"candidates is a list of 4; give an index 0\.\.3"):
        load_config(EXAMPLES / "adrenalmnist3d.yaml", overrides={"candidates.9.params.lr": 1})
    with pytest.raises(InvalidConfig, match="is a value"):
        load_config(EXAMPLES / "adrenalmnist3d.yaml", overrides={"name.x": 1})
