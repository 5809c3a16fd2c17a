"""The PACS watcher against a real Orthanc: each matching series run once, state across polls
and restarts, skipped and failing series, results written back and read back."""

from __future__ import annotations

import io
from datetime import date, timedelta

import pydicom
import pytest
import yaml
from pacs.watch_data import copied_series, watch_yaml
from serve.conftest import serve_root, volume_bundle  # noqa: F401, F811  (the 3D model fixtures)
from sqlalchemy import func, select

from medsight.pacs.watch import dicom_bytes
from medsight.pacs.watch_config import WatchConfig
from medsight.serve.db.tables import PacsInstanceRow, PacsSeriesRow, PredictionRow
from medsight.serve.pacs_watch import service_watcher
from medsight.serve.service import Service
from medsight.serve.settings import ServeSettings

MODEL = "ct-contrast"


@pytest.fixture
def service(ct_bundle, tmp_path):
    svc = Service(ServeSettings(bundles=[ct_bundle], data_dir=tmp_path / "data", decode_workers=1,
                                max_wait_ms=0.0))
    yield svc
    svc.close()


def _watcher(service, orthanc, tmp_path, **watch):
    cfg = WatchConfig.from_yaml(watch_yaml(tmp_path / "watch.yaml", orthanc, MODEL, **watch))
    return service_watcher(service, cfg)


def _count(service, table, *where) -> int:
    with service.store._read() as s:
        return s.execute(select(func.count()).select_from(table).where(*where)).scalar_one()


def _series_uid(path) -> str:
    return str(pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID)


def _status(report) -> dict[str, str]:
    return {o.series_uid: o.status for o in report.outcomes}


def test_each_series_runs_once_skips_say_why_and_a_second_poll_does_nothing(
        service, orthanc, ct_files, tmp_path):
    series, files = copied_series(ct_files, 4)
    orthanc.upload([*files, ct_files[0], ct_files[2]])  # + a real chest slice, a real DERIVED one
    single, derived = (_series_uid(ct_files[k]) for k in (0, 2))
    watcher = _watcher(service, orthanc, tmp_path, write=[])
    first = watcher.poll_once()
    assert _status(first) == {series: "done", single: "done", derived: "skipped"}
    assert (first.new, first.done, first.skipped, first.failed) == (3, 2, 1, 0)
    skipped = next(o for o in first.outcomes if o.status == "skipped")
    assert skipped.reason == "body part LUNG not in [CHEST]"
    assert _count(service, PredictionRow) == 5 and _count(service, PacsInstanceRow) == 5
    jobs = {j.series_uid: j for j in watcher.state.jobs()}
    assert jobs[series].status == "done" and jobs[series].attempts == 1 and jobs[series].instances == 4
    assert jobs[derived].last_error == skipped.reason
    before = len(orthanc.instances())
    second = watcher.poll_once()
    assert second.outcomes == [] and second.series_seen == 3
    assert _count(service, PredictionRow) == 5 and len(orthanc.instances()) == before
    assert {j.series_uid: (j.status, j.attempts) for j in watcher.state.jobs()} == {
        k: (j.status, j.attempts) for k, j in jobs.items()}


def test_a_corrupt_instance_fails_its_series_retries_then_stays_failed(
        service, orthanc, ct_files, tmp_path):
    good, good_files = copied_series(ct_files, 2)
    bad, bad_files = copied_series(ct_files, 3, corrupt=1)
    orthanc.upload([*good_files, *bad_files])
    watcher = _watcher(service, orthanc, tmp_path, write=[], max_attempts=2)
    first = watcher.poll_once()
    assert _status(first) == {good: "done", bad: "failed"}
    reason = next(o.reason for o in first.outcomes if o.series_uid == bad)
    assert "truncated pixel data" in reason and "100 vs 524288 bytes" in reason
    second = watcher.poll_once()
    assert _status(second) == {bad: "failed"} and second.retried == 1
    third = watcher.poll_once()
    gave_up = third.outcomes[0]
    assert (gave_up.status, gave_up.attempts) == ("failed", 2)
    assert gave_up.reason.startswith("gave up after 2 attempts: ")
    job = watcher.state.get(watcher.name, bad, MODEL)
    assert (job.status, job.attempts) == ("failed", 2) and job.last_error
    # the instance before the corrupt one was predicted once, across both attempts
    assert _count(service, PacsInstanceRow, PacsInstanceRow.series_id == job.id) == 1
    assert _count(service, PacsSeriesRow, PacsSeriesRow.status == "done") == 1


def _cli(*args):
    import os
    import subprocess
    import sys

    cmd = [sys.executable, "-c", "from medsight.cli import main; main()", "pacs", *args]
    return subprocess.Popen(cmd, env=dict(os.environ), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def _sqlite_count(db, sql) -> int:
    """A count from the watcher's SQLite database (read-write: after a SIGKILL, reading may first
    have to roll back the killed transaction's journal); 0 while its tables do not exist yet."""
    import sqlite3

    if not db.exists():
        return 0
    conn = sqlite3.connect(db, timeout=10)
    try:
        return conn.execute(sql).fetchone()[0]
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return 0
        raise
    finally:
        conn.close()


def test_a_watcher_killed_mid_series_finishes_it_after_a_restart_without_duplicates(
        ct_bundle, orthanc, ct_files, tmp_path):
    import time

    series, files = copied_series(ct_files, 5)
    orthanc.upload(files)
    cfg = watch_yaml(tmp_path / "watch.yaml", orthanc, MODEL, write=["sr"], pause_s=1)
    data = tmp_path / "data"
    db = data / "medsight.db"
    args = ("watch", str(cfg), "--bundle", str(ct_bundle), "--data-dir", str(data), "--once")
    proc = _cli(*args)  # pause_s: 1 s after each instance, time to kill it mid-series
    deadline = time.monotonic() + 60
    while _sqlite_count(db, "SELECT COUNT(*) FROM pacs_instances") < 2:
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "the watcher recorded no instance in 60 s"
        time.sleep(0.1)
    proc.kill()  # SIGKILL: no clean-up of any kind
    proc.wait()
    assert 2 <= _sqlite_count(db, "SELECT COUNT(*) FROM pacs_instances") < 5
    assert _sqlite_count(db, "SELECT COUNT(*) FROM pacs_series WHERE status = 'running'") == 1
    again = _cli(*args)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert _sqlite_count(db, "SELECT COUNT(*) FROM predictions") == 5
    assert _sqlite_count(db, "SELECT COUNT(DISTINCT sop_uid) FROM pacs_instances") == 5
    assert _sqlite_count(db, "SELECT COUNT(*) FROM pacs_instances") == 5
    assert _sqlite_count(db, "SELECT attempts FROM pacs_series WHERE status = 'done'") == 2
    assert len(orthanc.instances()) == 5 + 1  # exactly one SR
    jobs = _cli("jobs", "--data-dir", str(data))
    listed, _ = jobs.communicate(timeout=60)
    assert jobs.returncode == 0 and "done" in listed and "1 job(s)" in listed


def test_a_series_still_arriving_waits_until_its_count_settles(service, orthanc, ct_files, tmp_path):
    series, files = copied_series(ct_files, 3)
    orthanc.upload(files[:2])
    watcher = _watcher(service, orthanc, tmp_path, write=[], settle_s=30)
    now = [1000.0]
    watcher._clock = lambda: now[0]
    assert _status(watcher.poll_once()) == {series: "waiting"}
    orthanc.upload(files[2:])
    now[0] += 60  # long enough, but the count changed (2 -> 3): the wait starts again
    assert _status(watcher.poll_once()) == {series: "waiting"}
    assert watcher.state.get(watcher.name, series, MODEL) is None
    now[0] += 31
    report = watcher.poll_once()
    assert _status(report) == {series: "done"} and _count(service, PacsInstanceRow) == 3


def _numbers(items) -> list[float]:
    """Every numeric value in an SR content tree."""
    found = []
    for item in items or []:
        for mv in item.get("MeasuredValueSequence", []):
            found.append(float(mv.NumericValue))
        found.extend(_numbers(item.get("ContentSequence")))
    return found


def test_results_are_written_back_read_back_and_never_twice(service, orthanc, ct_files, tmp_path):
    pytest.importorskip("medsight.pacs.sr")
    pytest.importorskip("medsight.pacs.sc")
    import highdicom as hd

    series, files = copied_series(ct_files, 4)
    orthanc.upload([*files, ct_files[0]])
    single = _series_uid(ct_files[0])
    watcher = _watcher(service, orthanc, tmp_path, write=["sr", "sc"], sc_max=2)
    report = watcher.poll_once()
    assert _status(report) == {series: "done", single: "done"}
    assert {o.series_uid: o.written for o in report.outcomes} == {series: 3, single: 2}
    after_first = len(orthanc.instances())
    assert after_first == 5 + 3 + 2
    sources = {pydicom.dcmread(io.BytesIO(f), stop_before_pixels=True).SOPInstanceUID for f in files}
    job = watcher.state.get(watcher.name, series, MODEL)
    recorded = watcher.state.predicted(job.id)
    by_class: dict[str, list[str]] = {}
    for r in job.results:
        by_class.setdefault(r["sop_class"], []).append(r["sop_instance"])
    sr_uid, = [u for c, us in by_class.items() if c.startswith("1.2.840.10008.5.1.4.1.1.88") for u in us]
    sc_uids = [u for c, us in by_class.items() if c.startswith("1.2.840.10008.5.1.4.1.1.7") for u in us]
    assert len(sc_uids) == 2
    study = job.study_uid
    found = watcher.pacs.search("instance", study=study, fields=("SeriesInstanceUID",))
    where = {a["SOPInstanceUID"]: a["SeriesInstanceUID"] for a in found}
    sr = next(watcher.pacs.retrieve(study, where[sr_uid], sr_uid))
    parsed = hd.sr.srread(io.BytesIO(dicom_bytes(sr)))
    assert parsed.VerificationFlag == "UNVERIFIED"
    assert "not for diagnostic use" in sr.SeriesDescription.lower()
    referenced = {ref.ReferencedSOPInstanceUID
                  for ev in sr.CurrentRequestedProcedureEvidenceSequence
                  for s in ev.ReferencedSeriesSequence for ref in s.ReferencedSOPSequence}
    assert referenced == sources
    numbers = _numbers(sr.ContentSequence)
    for _pid, result in recorded.values():  # each instance's probability is in the report
        p = result["probabilities"]["True"]
        assert any(abs(n - p) < 1e-4 for n in numbers), (p, numbers)
    captured = set()
    for uid in sc_uids:
        sc = next(watcher.pacs.retrieve(study, where[uid], uid))
        assert sc.StudyInstanceUID == study and sc.SeriesInstanceUID != series
        captured |= {s.ReferencedSOPInstanceUID for s in sc.SourceImageSequence}
    top = sorted(recorded, key=lambda sop: -recorded[sop][1]["probabilities"]["True"])[:2]
    assert captured == set(top)  # the two most suspicious instances got the captures
    again = watcher.poll_once()  # sees the result series once: skipped, never run on
    assert sorted(o.reason for o in again.outcomes) == [
        "a structured report, not images", "a structured report, not images",
        "medsight's own result", "medsight's own result"]
    assert len(orthanc.instances()) == after_first and watcher.poll_once().outcomes == []
    # killed after storing, before recording: the rerun writes the same objects again
    watcher.state.claim(watcher.name, MODEL, None, study, series, 4)
    assert _status(watcher.poll_once()) == {series: "done"}
    assert len(orthanc.instances()) == after_first
    assert watcher.state.get(watcher.name, series, MODEL).results == job.results
    assert watcher.state.get(watcher.name, series, MODEL).results == job.results
    sources_recorded = [service.store.get_prediction(pid)["source"]["results"]
                        for pid, _ in recorded.values()]
    assert all(r == job.results for r in sources_recorded)


def test_the_poll_window_is_study_date_from_today_minus_lookback_days(
        service, orthanc, ct_files, tmp_path):
    study_date = pydicom.dcmread(ct_files[0], stop_before_pixels=True).StudyDate
    orthanc.upload([ct_files[0]])
    day = date(int(study_date[:4]), int(study_date[4:6]), int(study_date[6:])) + timedelta(days=2)
    seen = {}
    for days in (1, 2):
        watcher = _watcher(service, orthanc, tmp_path, write=[], lookback_days=days,
                           query={"Modality": "CT"})
        watcher._today = lambda: day
        query = watcher.series_query()
        assert query == {"Modality": "CT",
                         "StudyDate": f"{day - timedelta(days=days):%Y%m%d}-{day:%Y%m%d}"}
        seen[days] = watcher.poll_once().series_seen
    assert seen == {1: 0, 2: 1}


def test_series_pushed_to_the_storage_scp_are_watched_too(service, orthanc, ct_files, tmp_path):
    from pacs.orthanc import free_port

    from medsight.pacs.config import PacsConfig
    from medsight.pacs.dimse import DimsePacs

    series, files = copied_series(ct_files, 3)
    port = free_port()
    path = watch_yaml(tmp_path / "watch.yaml", orthanc, MODEL, write=[])
    doc = {**yaml.safe_load(path.read_text()), "receive": {"port": port}}
    watcher = service_watcher(service, WatchConfig.of(doc))
    try:
        sender = DimsePacs(PacsConfig(ae_title="MEDSIGHT", host="127.0.0.1", port=port))
        sender.store([pydicom.dcmread(io.BytesIO(f)) for f in files])
        sender.close()
        report = watcher.poll_once()
        assert _status(report) == {series: "done"} and orthanc.instances() == []
        assert _count(service, PacsInstanceRow) == 3
        assert watcher.poll_once().outcomes == []
    finally:
        watcher.pacs.close()


def test_a_volume_model_takes_the_whole_series_as_one_input(volume_bundle, orthanc, ct_files,  # noqa: F811
                                                           tmp_path):
    series, files = copied_series(ct_files, 4)
    orthanc.upload(files)
    svc = Service(ServeSettings(bundles=[volume_bundle], data_dir=tmp_path / "data",
                                decode_workers=1, max_wait_ms=0.0))
    try:
        cfg = WatchConfig.from_yaml(watch_yaml(tmp_path / "watch.yaml", orthanc, "cnn3d", write=[]))
        watcher = service_watcher(svc, cfg)
        assert _status(watcher.poll_once()) == {series: "done"}
        job = watcher.state.get(watcher.name, series, "cnn3d")
        [(pid, result)] = watcher.state.predicted(job.id).values()
        assert result["input"]["shape"] == [1, 4, 512, 512]  # the 4 slices, one volume
        rec = svc.store.get_prediction(pid)
        assert rec["source"]["series_uid"] == series and rec["source"]["sop_uid"] is None
        assert _count(svc, PredictionRow) == 1
    finally:
        svc.close()
