"""`medsight pacs pull / push / find` through Typer's CliRunner against the real Orthanc: the summary,
the exit codes (a series the PACS cannot list fails the pull, the rerun fetches only it), no
patient names in `find` by default, connection flags from YAML."""

from __future__ import annotations

import csv
import shutil

import pytest
import yaml
from pacs.test_dicomweb import ct_series, encoded, upload_ct
from typer.testing import CliRunner

from medsight.cli import app


@pytest.fixture
def uploaded(orthanc, ct_files):
    """4 distinct CT studies (one instance each) plus a 2-slice series in the first study."""
    return upload_ct(orthanc, ct_files[:4], 2)


def _flags(orthanc):
    return ["--url", orthanc.dicomweb_url, "--user", "medsight",
            "--password-file", str(orthanc.password_file)]


def test_pull_by_query_and_resume(orthanc, uploaded, tmp_path):
    out = tmp_path / "pulled"
    args = ["pacs", "pull", *_flags(orthanc), "--query", "Modality=CT&StudyDate=1980-1990",
            "--out", str(out), "--deidentify"]
    expected = {str(d.SOPInstanceUID) for d in uploaded if "19800101" <= d.StudyDate <= "19901231"}
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "instances fetched" in first.output and f"│ {len(expected)}" in first.output
    with (out / "manifest.csv").open() as fh:
        assert {r["sop_uid"] for r in csv.DictReader(fh)} == expected
    assert len(list((out / "deid").rglob("*.dcm"))) == len(expected)
    assert orthanc.password not in first.output

    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    present = next(line for line in again.output.splitlines() if "already present" in line)
    assert str(len(expected)) in present


def _summary(output: str) -> dict[str, str]:
    """The rows of the pull's summary table, name to value."""
    return {line.split("│")[1].strip(): line.split("│")[2].strip()
            for line in output.splitlines() if line.count("│") == 3}


def test_a_series_the_pacs_cannot_list_fails_the_pull_and_the_rerun_fetches_only_it(
        orthanc, uploaded, tmp_path):
    """A file lost behind Orthanc's index: its QIDO-RS listing of that series answers 500. The
    study's other series is still pulled, the broken one named; once the PACS is mended, the
    same command fetches only what it lacked."""
    study = str(uploaded[0].StudyInstanceUID)
    in_study = [d for d in uploaded if str(d.StudyInstanceUID) == study]
    broken = str(uploaded[-1].SeriesInstanceUID)  # the 2-slice series added to the first study
    assert len({str(d.SeriesInstanceUID) for d in in_study}) == 2
    stored = orthanc.stored_file(str(uploaded[-1].SOPInstanceUID))
    kept = tmp_path / "kept.dcm"
    shutil.move(stored, kept)
    out = tmp_path / "pulled"
    args = ["pacs", "pull", *_flags(orthanc), "--study", study, "--out", str(out)]
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 1, first.output
    assert f"not listed {broken}" in first.output and "HTTP 500" in first.output, first.output
    assert "1 series or studies not listed" in first.output
    assert "run the same command again" in first.output
    assert _summary(first.output)["instances fetched"] == "1"
    with (out / "manifest.csv").open() as fh:
        assert [r["series_uid"] for r in csv.DictReader(fh)] == [str(in_study[0].SeriesInstanceUID)]

    shutil.move(kept, stored)  # the PACS has its file again
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    summary = _summary(again.output)
    assert (summary["instances fetched"], summary["already present"], summary["failed"],
            summary["series or studies not listed"]) == ("2", "1", "0", "0")
    with (out / "manifest.csv").open() as fh:
        assert {r["sop_uid"] for r in csv.DictReader(fh)} == {str(d.SOPInstanceUID)
                                                             for d in in_study}


def test_pull_needs_query_or_study_and_a_bad_keyword_names_it(orthanc, tmp_path):
    result = CliRunner().invoke(app, ["pacs", "pull", *_flags(orthanc), "--out", str(tmp_path)])
    assert result.exit_code == 2 and "--query or --study" in result.output
    result = CliRunner().invoke(app, ["pacs", "pull", *_flags(orthanc), "--out", str(tmp_path),
                                      "--query", "Modalty=CT"])
    assert result.exit_code == 1 and "did you mean Modality" in str(result.exception or result.output)


def test_push_then_find_from_a_yaml_config(orthanc, uploaded, tmp_path):
    config = tmp_path / "pacs.yaml"
    config.write_text(yaml.safe_dump({"pacs": {"url": orthanc.dicomweb_url, "username": "medsight",
                                               "password_file": str(orthanc.password_file)}}))
    (new,) = ct_series(uploaded[1], 1)
    path = tmp_path / "result.dcm"
    path.write_bytes(encoded(new))
    pushed = CliRunner().invoke(app, ["pacs", "push", str(path), "--config", str(config)])
    assert pushed.exit_code == 0, pushed.output
    assert new.SOPInstanceUID in pushed.output and "CT Image Storage" in pushed.output

    found = CliRunner().invoke(app, ["pacs", "find", "--config", str(config), "--level", "series",
                                     "--query", f"StudyInstanceUID={new.StudyInstanceUID}"])
    assert found.exit_code == 0, found.output
    assert "2 series match(es)" in found.output and str(uploaded[1].PatientID) not in found.output
    shown = CliRunner().invoke(app, ["pacs", "find", "--config", str(config), "--show-patient",
                                     "--query", "StudyDate=1980-1990"])
    assert shown.exit_code == 0 and str(uploaded[0].PatientID) in shown.output

    notes = tmp_path / "notes.txt"
    notes.write_text("hello")
    refused = CliRunner().invoke(app, ["pacs", "push", str(notes), "--config", str(config)])
    assert refused.exit_code == 1 and "not a DICOM file" in str(refused.exception or refused.output)
