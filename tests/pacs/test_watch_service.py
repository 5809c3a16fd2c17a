"""`medsight serve --watch-pacs`: the watcher runs in the service's lifespan and its predictions
are service records with their PACS source, readable through the API; replicas on PostgreSQL
elect one watcher and hand the watch over when it stops."""

from __future__ import annotations

import time
from contextlib import ExitStack

from fastapi.testclient import TestClient
from pacs.watch_data import copied_series, watch_yaml
from serve import postgres
from sqlalchemy import select

from medsight.serve.app import create_app
from medsight.serve.db import Store
from medsight.serve.db.pacs_state import PacsState
from medsight.serve.db.tables import PredictionRow
from medsight.serve.settings import ServeSettings

postgres_server = postgres.postgres_server


def test_the_service_watches_the_pacs_and_serves_the_predictions_with_their_source(
        ct_bundle, orthanc, ct_files, tmp_path):
    series, files = copied_series(ct_files, 2)
    orthanc.upload(files)
    cfg = watch_yaml(tmp_path / "watch.yaml", orthanc, "ct-contrast", write=[],
                     viewer_url="http://viewer/study/{study_uid}")
    settings = ServeSettings(bundles=[ct_bundle], data_dir=tmp_path / "data", decode_workers=1,
                             max_wait_ms=0.0, watch_pacs=cfg)
    app = create_app(settings)
    svc = app.state.service
    state = PacsState(svc.store)
    with TestClient(app) as client:
        _wait_done(state, series)
        svc.store.add_user("admin1", "admin", "a-long-password")
        key = svc.store.create_key("admin1")[1]
        job = state.jobs("done")[0]
        recorded = state.predicted(job.id)
        assert len(recorded) == 2
        for sop, (pid, result) in recorded.items():
            r = client.get(f"/v1/predictions/{pid}", headers={"Authorization": f"Bearer {key}"})
            assert r.status_code == 200, r.text
            body = r.json()
            assert body["label"] == result["label"] and body["user"] == "pacs-watcher"
            source = body["source"]
            assert source["kind"] == "pacs" and source["sop_uid"] == sop
            assert source["series_uid"] == series and source["results"] == []
            assert source["study_url"] == f"http://viewer/study/{job.study_uid}"
    assert svc.store.get_user("pacs-watcher").role == "clinician"


def _stored_from(store, series: str) -> int:
    """Prediction records stored from `series` (their PACS source names it)."""
    with store._engine.connect() as c:
        sources = c.execute(select(PredictionRow.source)).scalars().all()
    return sum(1 for s in sources if s and s.get("series_uid") == series)


def _wait_done(state: PacsState, series: str) -> None:
    deadline = time.monotonic() + 30
    while not [j for j in state.jobs("done") if j.series_uid == series]:
        assert time.monotonic() < deadline, f"not done in 30 s: {state.jobs()}"
        time.sleep(0.1)


def test_replicas_on_postgresql_watch_the_pacs_once_and_one_takes_over(
        ct_bundle, orthanc, ct_files, tmp_path, postgres_server):
    """Two services on one PostgreSQL database and data folder, both with --watch-pacs: one
    polls, the other stands by; each series is predicted once; when the one watching stops,
    the other takes over at its next poll."""
    url = postgres_server.create_database()
    cfg = watch_yaml(tmp_path / "watch.yaml", orthanc, "ct-contrast", write=[])
    settings = ServeSettings(bundles=[ct_bundle], data_dir=tmp_path / "data", decode_workers=1,
                             max_wait_ms=0.0, watch_pacs=cfg, database_url=url)
    apps = [create_app(settings), create_app(settings)]
    watchers = [app.state.pacs_watch for app in apps]
    series, files = copied_series(ct_files, 2)
    running: list[TestClient] = []
    with ExitStack() as cleanup, Store.open(tmp_path / "probe", url) as probe:
        cleanup.callback(lambda: [c.__exit__(None, None, None) for c in running])
        for app in apps:
            running.append(TestClient(app).__enter__())
        state = PacsState(probe)
        orthanc.upload(files)
        _wait_done(state, series)
        time.sleep(1.0)  # five more polls on each replica: nothing is done twice
        assert sorted(w.leading for w in watchers) == [False, True]
        assert _stored_from(probe, series) == 2

        leader = 0 if watchers[0].leading else 1
        running.pop(leader).__exit__(None, None, None)  # the watching replica stops
        later, later_files = copied_series(ct_files, 2)
        orthanc.upload(later_files)
        _wait_done(state, later)
        assert watchers[1 - leader].leading
        assert (_stored_from(probe, series), _stored_from(probe, later)) == (2, 2)
