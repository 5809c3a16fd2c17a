"""The original specification's workflow end to end, as the README walks through it: the AlexNet /
CIFAR-10 recipe trained (`medsight train`), tested (the run's metrics), saved and loaded (`medsight
bundle create`, opened by the Predictor) and used for inference (`medsight predict`) on new files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from cifar_folder import NAMES, write_cifar_folder
from deploy.run_pngs import write_test_pngs
from typer.testing import CliRunner

from medsight.cli import app

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def test_alexnet_cifar10_recipe_train_bundle_predict(tmp_path: Path) -> None:
    folder, _ = write_cifar_folder(tmp_path, per_batch=6)
    run, bundle = tmp_path / "run", tmp_path / "alexnet.msb"
    cli = CliRunner()
    trained = cli.invoke(app, ["train", str(ROOT / "examples" / "alexnet_cifar10.yaml"),
                               "--data", str(folder), "--out", str(run),
                               "--set", "model.params.epochs=1",
                               "--set", "data.options.val_from_train=6"])
    assert trained.exit_code == 0, trained.output
    metrics = json.loads((run / "metrics.json").read_text())
    assert 0.0 <= metrics["test"]["acc"] <= 1.0  # tested on CIFAR's own test batch

    made = cli.invoke(app, ["bundle", "create", str(run), "-o", str(bundle)])
    assert made.exit_code == 0, made.output
    assert cli.invoke(app, ["bundle", "verify", str(bundle)]).exit_code == 0

    paths, expected = write_test_pngs(run, tmp_path / "new_images")
    out = tmp_path / "results.json"
    predicted = cli.invoke(app, ["predict", "--bundle", str(bundle), str(tmp_path / "new_images"),
                                 "--out", str(out), "--allow-unsigned"])
    assert predicted.exit_code == 0, predicted.output
    rows = json.loads(out.read_text())
    assert [r["path"] for r in rows] == [str(p) for p in paths]
    got = np.array([[r["probabilities"][name] for name in NAMES] for r in rows])
    assert np.max(np.abs(got - expected)) < 1e-5
    assert [r["label"] for r in rows] == [NAMES[i] for i in expected.argmax(axis=1)]
