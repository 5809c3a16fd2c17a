"""Prediction records as the PACS watcher stores them, made in a running service's database: copies
of a real upload's record (same stored image, so heatmaps and reports work) with a PACS `source`."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from pydicom.uid import generate_uid
from serve.live import LiveServer

from medsight.serve.db.store import Store

SR = "1.2.840.10008.5.1.4.1.1.88.33"  # Comprehensive SR Storage
SC = "1.2.840.10008.5.1.4.1.1.7"  # Secondary Capture Image Storage
HOSTILE_URL = "javascript:alert(1)"


def pacs_source(study_url: str | None = None, *, written: bool = True) -> dict[str, Any]:
    """A watcher's `source`: fresh UIDs, the study link (default: its DICOMweb URL) and, when
    `written`, the SR and SC it wrote back."""
    study = generate_uid()
    root = "http://127.0.0.1:8042/dicom-web"
    return {"kind": "pacs", "pacs": root, "study_uid": study, "series_uid": generate_uid(),
            "sop_uid": generate_uid(),
            "study_url": f"{root}/studies/{study}" if study_url is None else study_url,
            "results": [{"sop_class": SR, "sop_instance": generate_uid()},
                        {"sop_class": SC, "sop_instance": generate_uid()}] if written else []}


def upload(server: LiveServer) -> dict[str, Any]:
    """A clinician's real upload of the server's CT DICOM: its API record."""
    with server.client("clinician") as api:
        made = api.post("/v1/predictions",
                        files={"file": ("ct.dcm", server.dicom_path.read_bytes(), "application/dicom")})
    assert made.status_code == 201, made.text
    return made.json()


def add_pacs_copies(server: LiveServer, pid: str, sources: list[dict[str, Any]]) -> list[str]:
    """Store one copy of prediction `pid` per source (as the watcher would, one transaction);
    their ids, in order."""
    with Store.open(server.data_dir) as store:
        rec = store.get_prediction(pid)
        assert rec is not None, pid
        base = {k: v for k, v in rec.items() if k not in ("user", "reviews", "source")}
        base["image"] = {k: v for k, v in rec["image"].items() if k != "created"}
        copies = [{**base, "id": uuid.uuid4().hex, "created": datetime.now(UTC), "source": src}
                  for src in sources]
        store.add_predictions(copies, [{"ts": c["created"], "user": rec["user"], "action": "pacs.predict",
                                        "status": 201, "target": c["id"],
                                        "model_version": f"{rec['model_name']} {rec['model_version']}",
                                        "detail": None} for c in copies])
    return [c["id"] for c in copies]
