"""`medsight predict` on a manifest CSV: every row's image predicted in manifest order (paths relative
to the manifest's folder) with the probabilities of predicting the files themselves, a missing or
unreadable file an error row (never dropped), each row's ``source`` its manifest row number and DICOM
UIDs; a manifest without a path column refused naming its columns; the Ray engine gives the same
rows."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
from deploy.run_pngs import write_test_pngs
from typer.testing import CliRunner

from medsight.cli import app
from medsight.deploy.batch import predict_paths

pytestmark = pytest.mark.xdist_group("deploy_runs")

SOP = "1.2.826.0.1.3680043.8.498.1"


def _manifest(folder: Path, pngs: list[Path]) -> tuple[Path, list[str]]:
    """A manifest in `folder` naming the PNGs (relative, in reverse order), a missing file and a
    corrupt one, with label / patient_id / UID columns; the expected result paths, row by row."""
    corrupt = folder / "images" / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    (folder / "images" / "notes.csv").write_text("a document beside the images\n")
    named = [*reversed(pngs[:6]), folder / "images" / "gone.png", corrupt]
    path = folder / "manifest.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["patient_id", "path", "label", "sop_uid"])
        for i, p in enumerate(named):
            writer.writerow([f"PAT-SECRET-{i}", p.relative_to(folder).as_posix(), "benign",
                             f"{SOP}.{i}"])
    return path, [str(p) for p in named]


def test_a_manifest_is_predicted_row_by_row_with_errors_kept(classical_run, bundle_of, tmp_path,
                                                             monkeypatch) -> None:
    pngs, expected = write_test_pngs(classical_run, tmp_path / "images")
    manifest, named = _manifest(tmp_path, pngs)
    out = tmp_path / "results.json"
    monkeypatch.chdir(tmp_path.parent)  # the manifest's paths resolve against its folder, not the cwd
    result = CliRunner().invoke(app, ["predict", "-b", str(bundle_of(classical_run)),
                                      str(manifest), "--out", str(out), "--allow-unsigned"])
    assert result.exit_code == 1, result.output  # two rows could not be predicted
    assert "6 predicted, 2 failed" in result.output
    rows = json.loads(out.read_text())
    assert [r["path"] for r in rows] == named  # manifest order, one row each, none dropped
    assert [r["source"] for r in rows] == [{"manifest_row": i + 1, "sop_uid": f"{SOP}.{i}"}
                                           for i in range(8)]
    got = np.array([list(r["probabilities"].values()) for r in rows[:6]])
    assert np.max(np.abs(got - expected[:6][::-1])) < 1e-6
    assert "gone.png" in rows[6]["error"] and rows[6]["probabilities"] is None
    assert rows[7]["error"].startswith("cannot read image")
    assert "PAT-SECRET" not in out.read_text() + result.output  # patient ids are not passed on

    # the same files as paths: the same probabilities (the folder walk skips notes.csv)
    direct = predict_paths(bundle_of(classical_run), [tmp_path / "images"])
    assert direct.skipped == 1 and direct.n == len(pngs) + 1


def test_a_manifest_without_a_path_column_is_refused_naming_its_columns(classical_run, bundle_of,
                                                                        tmp_path) -> None:
    manifest = tmp_path / "list.csv"
    manifest.write_text("file,label\nimages/a.png,benign\n")
    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, ["predict", "-b", str(bundle_of(classical_run)),
                                      str(manifest), "--out", str(out), "--allow-unsigned"])
    assert result.exit_code == 1
    message = " ".join(str(result.exception or "").split())
    assert "has no 'path' column" in message and "['file', 'label']" in message, result.output
    assert not out.exists()  # refused before anything is written

    empty = tmp_path / "empty_path.csv"
    empty.write_text("path,label\na.png,x\n,y\n")
    result = CliRunner().invoke(app, ["predict", "-b", str(bundle_of(classical_run)),
                                      str(empty), "--allow-unsigned"])
    assert result.exit_code == 1 and "empty 'path' (rows 2)" in str(result.exception)


def test_the_ray_engine_predicts_a_manifest_as_the_local_engine(classical_run, bundle_of,
                                                                tmp_path) -> None:
    pytest.importorskip("ray", reason="Ray is a dev dependency (medsight[ray])")
    from medsight.deploy.batch_ray import predict_paths_ray

    pngs, _ = write_test_pngs(classical_run, tmp_path / "images")
    manifest, named = _manifest(tmp_path, pngs)
    bundle = bundle_of(classical_run)
    local = predict_paths(bundle, [manifest], out=tmp_path / "local.parquet", batch_size=3)
    on_ray = predict_paths_ray(bundle, [manifest], tmp_path / "ray.parquet", actors=2,
                               batch_size=3)
    assert local.n == on_ray.n == len(named) and len(on_ray.failures) == 2
    local_rows = pq.read_table(tmp_path / "local.parquet").to_pylist()
    ray_rows = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    assert [r["path"] for r in ray_rows] == [r["path"] for r in local_rows] == named
    for mine, theirs in zip(ray_rows, local_rows, strict=True):
        assert mine["probabilities"] == theirs["probabilities"]  # exactly equal
        assert mine["error"] == theirs["error"] and mine["input"] == theirs["input"]
    assert [r["source"] for r in ray_rows] == [
        {"manifest_row": i + 1, "study_uid": None, "series_uid": None, "sop_uid": f"{SOP}.{i}"}
        for i in range(8)]
