"""`medsight bundle create | verify | inspect` and the manifest / model card they show."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from deploy.tamper import members, tampered_copy

from medsight.deploy import open_bundle


def medsight(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
             *args: str) -> tuple[int, str, str]:
    """Run the real entry point (`medsight.cli:main`) in-process: (exit code, stdout, stderr)."""
    from medsight.cli import main

    monkeypatch.setattr(sys, "argv", ["medsight", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.xdist_group("deploy_runs")
def test_create_verify_inspect_from_the_command_line(classical_run: Path, tmp_path: Path,
                                                    monkeypatch, capsys) -> None:
    out = tmp_path / "model.msb"
    code, stdout, stderr = medsight(monkeypatch, capsys, "bundle", "create", str(classical_run),
                                    "-o", str(out), "--name", "breast-hog", "--version", "2.1.0",
                                    "--modality", "US", "--limitation", "Tested on 40 images only.")
    assert code == 0, stdout + stderr
    assert "parity with predict_proba" in stdout
    code, _, stderr = medsight(monkeypatch, capsys, "bundle", "create", str(classical_run), "-o",
                               str(out))
    assert code == 1 and "already exists" in stderr

    code, stdout, stderr = medsight(monkeypatch, capsys, "bundle", "verify", str(out))
    assert code == 0, stderr
    assert "breast-hog 2.1.0" in stdout and "test auc" in stdout

    card = tmp_path / "card.html"
    code, stdout, stderr = medsight(monkeypatch, capsys, "bundle", "inspect", str(out), "--html",
                                    str(card))
    assert code == 0, stderr
    for text in ("Intended use", "malignant", "95% CI", "Tested on 40 images only.", "US"):
        assert text in stdout, text
    assert card.read_text() == open_bundle(out).model_card_html

    size = len(members(out)["model.onnx"])
    bad = tampered_copy(out, "model.onnx", tmp_path / "bad.msb", at=size // 3, mask=0xFF)
    done = subprocess.run([sys.executable, "-m", "medsight.cli", "bundle", "verify", str(bad)],
                          capture_output=True, text=True, timeout=300)  # the installed command
    assert done.returncode == 1 and "model.onnx" in done.stderr


@pytest.mark.xdist_group("deploy_runs")
def test_manifest_states_what_a_deployment_needs(classical_run: Path, cnn2d_run: Path,
                                                 bundle_of) -> None:
    m = open_bundle(bundle_of(classical_run)).manifest
    assert m["format"] == "medsight.bundle" and m["format_version"] == 1
    assert m["model"]["uuid"] and m["model"]["name"] and m["created"].endswith("Z")
    assert m["task"] == "binary" and m["classes"][m["positive_class"]] == "malignant"
    assert m["threshold"]["method"] == "youden" and "validation" in m["threshold"]["how_chosen"]
    assert 0 < m["threshold"]["value"] < 1
    assert m["calibration"]["method"] == "none"
    inp = m["input"]
    assert inp["shape"] == [1, 20, 20] and inp["channels"] == 1 and inp["raw"]["shape_max"] == [28, 28]
    raw, pre = inp["intensity"]["raw"], inp["intensity"]["preprocessed"]
    assert raw["p01"] < raw["mean"] < raw["p99"] <= 255 and raw["std"] > 0
    assert 0 <= pre["p01"] < pre["p99"] <= 1
    test = m["evaluation"]["test"]
    assert test["n"] == 40
    assert test["ci"]["auc"]["ci_low"] <= test["auc"] <= test["ci"]["auc"]["ci_high"]
    card = m["data_card"]
    assert card["counts"]["train"]["total"] == 40 and set(card["counts"]) == {"train", "val", "test"}
    assert "no patient ids" in card["patient_grouping"]["statement"]
    assert m["intended_use"] and m["limitations"]
    assert m["libraries"]["onnxruntime"] and m["libraries"]["scikit-learn"]
    assert set(m["files"]) == {"preprocess.json", "model.onnx", "model_card.html"}
    assert all(len(f["sha256"]) == 64 for f in m["files"].values())
    assert json.loads(open_bundle(bundle_of(classical_run)).preprocess.to_json())["steps"]
    cnn = open_bundle(bundle_of(cnn2d_run)).manifest
    assert cnn["calibration"]["method"] == "none" and cnn["runtime"]["probability_link"] == "softmax"
    assert (cnn["heatmap"]["method"], cnn["heatmap"]["cam_weights"]) == ("cam", "cam_weights.npy")


@pytest.mark.xdist_group("deploy_runs")
def test_model_card_page_holds_use_validation_data_and_limits(classical_run: Path,
                                                              bundle_of) -> None:
    bundle = open_bundle(bundle_of(classical_run))
    html = bundle.model_card_html
    test = bundle.manifest["evaluation"]["test"]
    for text in ("Decision support, not a diagnosis", "How it was validated", "Limitations",
                 "patient grouping", f"{test['auc']:.3f}", f"{test['ci']['auc']['ci_low']:.3f}",
                 bundle.manifest["model"]["uuid"], "malignant"):
        assert text in html, text
    assert "<script" not in html and "http" not in html.split("<body>")[1]  # self-contained
