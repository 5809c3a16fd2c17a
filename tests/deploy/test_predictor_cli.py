"""`medsight predict`: the CLI reproduces the run's predictions.csv through PNG files (parity CLI =
Predictor = predict_proba), writes JSON / CSV and HTML reports, and reports unreadable inputs --
including one that kills its decoder -- while predicting the rest (exit 1)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from deploy.run_pngs import write_test_pngs
from hostile import aborting_j2k
from typer.testing import CliRunner

from medsight.cli import app
from medsight.deploy.predictor import Predictor
from medsight.deploy.report import NOTICE

pytestmark = pytest.mark.xdist_group("deploy_runs")


def _aborting_j2k(folder: Path) -> Path:
    path = folder / "aborts.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(aborting_j2k())
    return path


def test_cli_reproduces_the_runs_test_probabilities(cnn2d_run, bundle_of, tmp_path) -> None:
    paths, expected = write_test_pngs(cnn2d_run, tmp_path / "pngs")
    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, ["predict", "--bundle", str(bundle_of(cnn2d_run)),
                                      str(tmp_path / "pngs"), "--out", str(out), "--allow-unsigned"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    assert [r["path"] for r in rows] == [str(p) for p in paths]  # folder walked in sorted order
    predictor = Predictor(bundle_of(cnn2d_run))
    cli = np.array([[r["probabilities"][c] for c in predictor.classes] for r in rows])
    assert np.max(np.abs(cli - expected)) < 1e-5
    direct = predictor.predict([str(p) for p in paths])
    assert [r["label"] for r in rows] == [p.label for p in direct]
    assert {"path", "label", "probabilities", "confidence", "warnings"} <= set(rows[0])


def test_unreadable_inputs_are_reported_the_rest_predicted_exit_1(classical_run, bundle_of,
                                                                  tmp_path) -> None:
    paths, expected = write_test_pngs(classical_run, tmp_path / "in")
    (tmp_path / "in" / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    aborts = _aborting_j2k(tmp_path / "in")
    (tmp_path / "in" / "labels.csv").write_text("path,label\n")  # a document: skipped, not failed
    out = tmp_path / "results.csv"
    reports = tmp_path / "reports"
    result = CliRunner().invoke(app, ["predict", "-b", str(bundle_of(classical_run)),
                                      str(tmp_path / "in"), "-o", str(out),
                                      "--report-dir", str(reports), "--timeout", "20",
                                      "--allow-unsigned"])
    assert result.exit_code == 1, result.output
    assert "corrupt.png" in result.output and "decoder crashed (signal 6" in result.output
    assert "2 failed" in result.output and "1 documents (.csv, .txt ...) skipped" in result.output
    with out.open() as fh:
        rows = list(csv.DictReader(fh))
    by_path = {r["path"]: r for r in rows}
    assert len(rows) == len(paths) + 2
    assert by_path[str(aborts)]["error"].startswith("cannot read image")
    assert "decoder crashed" in by_path[str(aborts)]["error"]
    positive = next(k for k in rows[0] if k.startswith("p_"))
    got = np.array([float(by_path[str(p)][positive]) for p in paths])
    column = list(Predictor(bundle_of(classical_run)).classes).index(positive[2:])
    assert np.max(np.abs(got - expected[:, column])) < 1e-5
    index = (reports / "index.html").read_text()
    assert "2 could not be predicted" in index and NOTICE in index
    pages = sorted(p for p in reports.glob("*.html") if p.name != "index.html")
    assert len(pages) == len(paths)
    page = pages[0].read_text()
    assert NOTICE in page and "data:image/png;base64," in page and "Probabilities" in page


@pytest.mark.slow
def test_demo_ends_by_bundling_and_predicting_a_few_images(tmp_path) -> None:
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "4. deploy" in result.output and "6 predicted, 0 failed" in result.output
    rows = json.loads((tmp_path / "demo" / "predict" / "results.json").read_text())
    assert len(rows) == 6 and all(r["label"] in ("normal", "lesion") for r in rows)
    assert (tmp_path / "demo" / "model.msb").is_file()
    assert (tmp_path / "demo" / "predict" / "reports" / "index.html").is_file()
