"""Manifest CSVs as `medsight predict` inputs: the ``path`` column of a dataset manifest (or of
the ``manifest.csv`` that ``medsight pacs pull`` writes), relative paths resolved against the
manifest's folder as the dataset reader resolves them, and what a row adds to its results row
(``source``: its row number and DICOM UIDs). Read with the csv module: no pandas."""

from __future__ import annotations

import csv
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.errors import InvalidConfig

MANIFEST_SUFFIX = ".csv"
PATH_COLUMN = "path"
#: results ``source`` field <- the manifest columns it is read from (first non-empty wins);
#: ``study_id`` counts only when it is a UID (a dataset manifest's study id may be anything)
UID_COLUMNS = {"study_uid": ("study_uid", "study_id"), "series_uid": ("series_uid",),
               "sop_uid": ("sop_uid",)}
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_LISTED = 5


@dataclass(frozen=True)
class ManifestRow:
    """One manifest row: the file (or folder) it names, its 1-based row number, its DICOM UIDs."""

    path: str
    row: int
    uids: dict[str, str] = field(default_factory=dict)

    def fields(self) -> dict[str, Any]:
        """What this row adds to its results row: ``source``, its row number and UIDs."""
        return {"source": {"manifest_row": self.row, **self.uids}}


def is_manifest(path: str | os.PathLike[str]) -> bool:
    """True for a path named ``*.csv`` that is not a folder: a manifest when given explicitly."""
    p = Path(path)
    return p.suffix.lower() == MANIFEST_SUFFIX and not p.is_dir()


def read_manifest(path: str | os.PathLike[str]) -> list[ManifestRow]:
    """Every row of the manifest at `path`, in order; a clear `InvalidConfig` when the file is
    missing or unreadable, lacks a ``path`` column (naming the columns it has) or has rows with
    an empty path. A named file that is missing is not an error here: its results row says so."""
    mpath = Path(path).expanduser()
    base = mpath.resolve().parent
    try:
        with mpath.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            columns = [c.strip() for c in reader.fieldnames or []]
            if PATH_COLUMN not in columns:
                raise InvalidConfig(f"manifest {mpath} has no {PATH_COLUMN!r} column (it has "
                                    f"{columns}); a manifest lists one input per row in a "
                                    f"{PATH_COLUMN!r} column")
            reader.fieldnames = columns
            raw = [dict(r) for r in reader]
    except FileNotFoundError:
        raise InvalidConfig(f"manifest {mpath} does not exist") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidConfig(f"cannot read manifest {mpath}: {exc}") from exc
    rows, empty = [], []
    for number, values in enumerate(raw, start=1):
        text = (values.get(PATH_COLUMN) or "").strip()
        if not text:
            empty.append(number)
            continue
        file = Path(text).expanduser()
        rows.append(ManifestRow(str(file if file.is_absolute() else base / file), number,
                                _uids(values)))
    if empty:
        listed = ", ".join(map(str, empty[:_LISTED])) + (" ..." if len(empty) > _LISTED else "")
        raise InvalidConfig(f"manifest {mpath}: {len(empty)} row(s) with an empty "
                            f"{PATH_COLUMN!r} (rows {listed})")
    return rows


def _uids(values: dict[str, Any]) -> dict[str, str]:
    out = {}
    for name, columns in UID_COLUMNS.items():
        for column in columns:
            text = str(values.get(column) or "").strip()
            if _UID.match(text):
                out[name] = text
                break
    return out


def common_fields(rows: list[ManifestRow]) -> dict[str, Any]:
    """The results fields of an input made of several rows (a DICOM series): the first row's
    number and the UIDs all the rows share."""
    shared = {k: v for k, v in rows[0].uids.items() if all(r.uids.get(k) == v for r in rows)}
    return {"source": {"manifest_row": rows[0].row, **shared}}


def with_fields(row: dict[str, Any], fields: dict[str, Any] | None) -> dict[str, Any]:
    """Results `row` with a manifest row's `fields` added."""
    return {**row, **fields} if fields else row


__all__ = ["MANIFEST_SUFFIX", "ManifestRow", "common_fields", "is_manifest", "read_manifest",
           "with_fields"]
