"""`medsight predict --pacs CONN.yaml --query ...` against the real Orthanc with the CT bundle: the
query's instances pulled beside the results and predicted, one row per pulled instance carrying its
study / series / SOP UIDs, with the probabilities of predicting the pulled folder directly; a rerun
fetches nothing new; a pull folder is not reused for another query; a 3D model predicts each pulled
series as one volume; the Ray engine's rows of a query are the local engine's."""

from __future__ import annotations

import io
import json

import pydicom
import pytest
import yaml
from pacs.test_dicomweb import upload_ct
from pacs.watch_data import copied_series
from serve.conftest import serve_root, volume_bundle  # noqa: F401  (the 3D model fixtures)
from typer.testing import CliRunner

from medsight.cli import app
from medsight.deploy.batch import predict_paths


@pytest.fixture
def uploaded(orthanc, ct_files):
    """4 distinct CT studies (one instance each) plus a 2-slice series in the first study."""
    return upload_ct(orthanc, ct_files[:4], 2)


@pytest.fixture
def connection(orthanc, tmp_path):
    path = tmp_path / "pacs.yaml"
    path.write_text(yaml.safe_dump({"pacs": {"url": orthanc.dicomweb_url, "username": "medsight",
                                             "password_file": str(orthanc.password_file)}}))
    return path


def test_predict_a_pacs_query_then_rerun_fetches_nothing(ct_bundle, orthanc, uploaded, connection,
                                                         tmp_path) -> None:
    out = tmp_path / "results.json"
    args = ["predict", "-b", str(ct_bundle), "--pacs", str(connection), "--query", "Modality=CT",
            "--query", "StudyDate=1980-1990", "--out", str(out), "--allow-unsigned"]
    wanted = {str(d.SOPInstanceUID): d for d in uploaded if "19800101" <= d.StudyDate <= "19901231"}
    assert 2 <= len(wanted) < len(uploaded)  # the query selects some of what is there

    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert f"{len(wanted)} instances fetched, 0 already in" in " ".join(first.output.split())
    rows = json.loads(out.read_text())
    assert sorted(r["source"]["sop_uid"] for r in rows) == sorted(wanted)  # one row per instance
    for row in rows:
        ds = wanted[row["source"]["sop_uid"]]
        assert row.get("error") is None and row["probabilities"]
        assert row["source"]["study_uid"] == ds.StudyInstanceUID
        assert row["source"]["series_uid"] == ds.SeriesInstanceUID
        assert row["path"].endswith(f"{ds.SOPInstanceUID}.dcm")
    pulled = tmp_path / "results.pacs"
    names = {str(d.PatientName) for d in uploaded if str(d.PatientName)}
    assert not any(name in first.output for name in names)  # no patient names on the terminal

    direct = predict_paths(ct_bundle, [pulled / "dicom"], out=tmp_path / "direct.json")
    by_path = {r["path"]: r for r in json.loads((tmp_path / "direct.json").read_text())}
    assert direct.n == len(rows)
    for row in rows:
        assert row["probabilities"] == pytest.approx(by_path[row["path"]]["probabilities"],
                                                     abs=1e-6)

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert f"0 instances fetched, {len(wanted)} already in" in " ".join(again.output.split())
    assert sorted(r["path"] for r in json.loads(out.read_text())) == sorted(r["path"] for r in rows)

    other = CliRunner().invoke(app, [*args[:7], "--query", "StudyDate=1991-", *args[9:]])
    assert other.exit_code == 2 and "another query" in other.output


def test_a_query_that_matches_nothing_says_so(ct_bundle, orthanc, uploaded, connection,
                                              tmp_path) -> None:
    result = CliRunner().invoke(app, ["predict", "-b", str(ct_bundle), "--pacs", str(connection),
                                      "--query", "StudyDate=2100", "--out",
                                      str(tmp_path / "r.parquet"), "--allow-unsigned"])
    said = " ".join(result.output.replace("│", " ").split())
    assert result.exit_code == 2 and "matches the query on StudyDate" in said, result.output
    assert not (tmp_path / "r.parquet").exists()


def test_a_volume_model_predicts_each_pulled_series_as_one_input(volume_bundle, orthanc,  # noqa: F811
                                                                 ct_files, connection, tmp_path):
    series, files = copied_series(ct_files, 4)
    orthanc.upload(files)
    out = tmp_path / "volumes.json"
    result = CliRunner().invoke(app, ["predict", "-b", str(volume_bundle), "--pacs",
                                      str(connection), "--query", f"SeriesInstanceUID={series}",
                                      "--out", str(out), "--allow-unsigned"])
    assert result.exit_code == 0, result.output
    [row] = json.loads(out.read_text())  # the 4 pulled slices: one volume, one row
    assert row["input"]["shape"] == [1, 4, 512, 512]
    study = pydicom.dcmread(io.BytesIO(files[0])).StudyInstanceUID
    assert row["source"] == {"manifest_row": 1, "study_uid": study, "series_uid": series}
    direct = predict_paths(volume_bundle, [tmp_path / "volumes.pacs" / "dicom"],
                           out=tmp_path / "direct.json")
    [folder_row] = json.loads((tmp_path / "direct.json").read_text())
    assert direct.n == 1 and row["path"] == folder_row["path"]
    assert row["probabilities"] == pytest.approx(folder_row["probabilities"], abs=1e-6)


def test_the_ray_engine_predicts_a_pacs_query_as_the_local_engine_does(ct_bundle, orthanc,
                                                                       uploaded, connection,
                                                                       tmp_path) -> None:
    """`--pacs ... --engine ray`: one Parquet row per pulled instance with its UIDs and the local
    engine's probabilities, exactly."""
    pq = pytest.importorskip("pyarrow.parquet")
    pytest.importorskip("ray", reason="Ray is a dev dependency (medsight[ray])")
    args = ["predict", "-b", str(ct_bundle), "--pacs", str(connection), "--query", "Modality=CT",
            "--allow-unsigned"]
    local = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "local.json")])
    assert local.exit_code == 0, local.output
    on_ray = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "ray.parquet"), "--engine",
                                      "ray", "--actors", "1"])
    assert on_ray.exit_code == 0, on_ray.output
    assert f"{len(uploaded)} instances fetched" in " ".join(on_ray.output.split())
    rows = pq.read_table(tmp_path / "ray.parquet").to_pylist()
    by_uid = {r["source"]["sop_uid"]: r for r in json.loads((tmp_path / "local.json").read_text())}
    assert sorted(r["source"]["sop_uid"] for r in rows) == sorted(by_uid) == sorted(
        str(d.SOPInstanceUID) for d in uploaded)
    for row in rows:
        theirs = by_uid[row["source"]["sop_uid"]]
        assert row["error"] is None and row["probabilities"] == theirs["probabilities"]
        assert {k: v for k, v in row["source"].items() if k != "manifest_row"} == {
            k: v for k, v in theirs["source"].items() if k != "manifest_row"}
