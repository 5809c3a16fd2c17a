"""Series for the watcher tests, made from the real CT slices, and the watcher YAML."""

from __future__ import annotations

import io
from pathlib import Path

import pydicom
import yaml
from pydicom.uid import generate_uid

# real slices: 000, 001 are ORIGINAL chest series of one instance; 002 is DERIVED / LUNG
ORIGINALS = (0, 1, 3, 4, 5, 7)


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def copied_series(files: list[Path], n: int, corrupt: int | None = None) -> tuple[str, list[bytes]]:
    """`n` copies of real ORIGINAL chest slices as ONE new series of a new study (fresh SOP UIDs, instance
    numbers 1..n); instance `corrupt` gets truncated pixel data. Returns (series UID, files)."""
    study, series = generate_uid(), generate_uid()
    out = []
    for k in range(n):
        ds = pydicom.dcmread(files[ORIGINALS[k % len(ORIGINALS)]])
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.InstanceNumber = study, series, k + 1
        ds.PatientID = f"watch-{study[-8:]}"  # one patient: Orthanc keys studies by patient too
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        if k == corrupt:
            ds.PixelData = ds.PixelData[:100]
        out.append(_bytes(ds))
    return series, out


def watch_yaml(path: Path, server, model: str, **watch) -> Path:
    """A watcher configuration for the test Orthanc: every date, chest CT, ORIGINAL/PRIMARY."""
    doc = {"pacs": {"url": server.dicomweb_url, "username": "medsight",
                    "password_file": str(server.password_file)},
           "watch": {"lookback_days": None, "poll_s": 0.2, **watch},
           "models": [{"model": model, "rules": {"modality": ["CT"], "body_part": ["CHEST"],
                                                 "image_type": ["ORIGINAL", "PRIMARY"]}}]}
    path.write_text(yaml.safe_dump(doc))
    return path
