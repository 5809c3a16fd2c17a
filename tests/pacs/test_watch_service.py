"""`medsight serve --watch-pacs`: the watcher runs in the service's lifespan and its predictions
are service records with their PACS source, readable through the API."""

from __future__ import annotations

import time

from fastapi.testclient import TestClient
from pacs.watch_data import copied_series, watch_yaml

from medsight.serve.app import create_app
from medsight.serve.db.pacs_state import PacsState
from medsight.serve.settings import ServeSettings


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
        deadline = time.monotonic() + 30
        while not [j for j in state.jobs("done") if j.series_uid == series]:
            assert time.monotonic() < deadline, f"not done in 30 s: {state.jobs()}"
            time.sleep(0.1)
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
