"""`push`: store DICOM files (results such as an SR or a secondary capture) in a PACS, refusing what
is not DICOM before anything is sent, and reporting each file."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from medsight.errors import InvalidDataset
from medsight.pacs.client import Pacs

__all__ = ["PushReport", "push"]


@dataclass
class PushReport:
    """One row per stored file: path, SOP Class and SOP Instance UID, StudyInstanceUID."""

    stored: list[dict[str, str]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"stored": self.stored}


def _read(path: Path) -> pydicom.Dataset:
    try:
        ds = pydicom.dcmread(path)
    except FileNotFoundError:
        raise InvalidDataset(f"{path} does not exist") from None
    except IsADirectoryError:
        raise InvalidDataset(f"{path} is a folder; name the DICOM files to push") from None
    except InvalidDicomError:
        raise InvalidDataset(f"{path} is not a DICOM file (no DICM preamble / File Meta); only "
                             "DICOM objects can be pushed to a PACS") from None
    except Exception as exc:  # truncated or malformed content
        raise InvalidDataset(f"{path}: unreadable DICOM ({type(exc).__name__}: {exc})") from None
    if "SOPInstanceUID" not in ds or "SOPClassUID" not in ds:
        raise InvalidDataset(f"{path}: no SOP Class / Instance UID, not a complete DICOM object")
    return ds


def push(pacs: Pacs, paths: Sequence[str | os.PathLike[str]]) -> PushReport:
    """Read every file first (any non-DICOM file stops the push before anything is sent), then
    store them all in one request; raises `PacsError` unless the PACS accepted every one."""
    files = [Path(p).expanduser() for p in paths]
    if not files:
        raise InvalidDataset("nothing to push: name at least one DICOM file")
    datasets = [_read(f) for f in files]
    pacs.store(datasets)
    return PushReport([{"path": str(f), "sop_class": pydicom.uid.UID(str(ds.SOPClassUID)).name,
                        "sop_uid": str(ds.SOPInstanceUID), "study_uid": str(ds.get(
                            "StudyInstanceUID", ""))} for f, ds in zip(files, datasets, strict=True)])
