"""A directory tree of DICOM files as a dataset: one record per image file or per series.

Only headers are read (pixel data is skipped). Files that are not DICOM images - other files,
DICOMDIR indexes, DICOM objects without pixels, unreadable headers - are not dropped: each
becomes a record with ref ``unreadable:<path>`` and ``meta["reason"]``, whose resolver raises
`UnreadableImage` with that reason, so the quality check names and counts them and they can
never be used as images by accident. Labels can be joined from a CSV by file path or by a
DICOM identifier.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import register_scheme
from medsight.data.sources.folder import visible_files
from medsight.data.sources.labels import (
    check_task_classes,
    clean_cell,
    encode_single,
    infer_task,
    parse_task,
    resolve_positive,
)
from medsight.data.sources.manifest import read_table
from medsight.errors import InvalidDataset, UnreadableImage
from medsight.io.image import Image

log = logging.getLogger(__name__)

JOIN_KEYS = ("path", "SOPInstanceUID", "StudyInstanceUID", "PatientID", "SeriesInstanceUID")
MEDIA_DIRECTORY_SOP = "1.2.840.10008.1.3.10"
_HEADER_TAGS = (
    "PatientID",
    "StudyInstanceUID",
    "SeriesInstanceUID",
    "SOPInstanceUID",
    "SOPClassUID",
    "Modality",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "InstanceNumber",
    "SeriesDescription",
)
_MAX_LISTED = 5


def read_header(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(header facts, None) for a DICOM image file, or (None, reason) when it is not one."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True, force=False)
    except InvalidDicomError:
        return None, "not a DICOM file (no DICM preamble / File Meta)"
    except Exception as exc:  # truncated or malformed headers
        return None, f"unreadable DICOM header: {type(exc).__name__}: {exc}"
    sop_class = str(
        getattr(ds, "SOPClassUID", "") or ds.file_meta.get("MediaStorageSOPClassUID", "")
    )
    if sop_class == MEDIA_DIRECTORY_SOP or "DirectoryRecordSequence" in ds:
        return None, "DICOMDIR (a media index, not an image)"
    facts: dict[str, Any] = {}
    for tag in _HEADER_TAGS:
        try:
            value = ds.get(tag)
        except Exception:  # a malformed element; treat as absent
            value = None
        facts[tag] = None if value is None or value == "" else value
    if facts["Rows"] is None or facts["Columns"] is None:
        return None, (
            f"DICOM object without an image (modality {facts['Modality'] or '?'}, "
            f"SOP class {getattr(facts['SOPClassUID'], 'name', facts['SOPClassUID'])})"
        )
    return facts, None


def from_dicom_dir(
    root: str | os.PathLike[str],
    labels_csv: str | os.PathLike[str] | None = None,
    join_on: str = "path",
    label_column: str = "label",
    path_column: str = "path",
    as_series: bool = False,
    task: Task | str | None = None,
    classes: Sequence[str] | None = None,
    positive: str | int | None = None,
    name: str | None = None,
) -> Dataset:
    """Scan `root` recursively and build one record per DICOM image file (or per series).

    Records get ``patient_id`` = PatientID, ``study_id`` = StudyInstanceUID and meta (modality,
    series_uid, sop_uid, rows, cols, relpath). With ``as_series=True`` the files of a
    SeriesInstanceUID form one record ``series:<root>#<uid>`` with ``meta["files"]`` (sorted).
    ``labels_csv`` joins labels from ``label_column`` by ``join_on``: ``"path"`` matches the CSV
    column ``path_column`` against the path relative to `root` or the bare file name; a DICOM
    keyword (SOPInstanceUID, StudyInstanceUID, PatientID, SeriesInstanceUID) matches the CSV
    column of that name. Files without a CSV row are unlabelled.
    """
    base = Path(root).expanduser().resolve()
    if not base.is_dir():
        raise InvalidDataset(f"DICOM folder {base} does not exist or is not a directory")
    if join_on not in JOIN_KEYS:
        raise InvalidDataset(f"join_on must be one of {JOIN_KEYS}, not {join_on!r}")
    files = visible_files(base)
    if not files:
        raise InvalidDataset(f"no files found under {base}")

    images: list[tuple[Path, dict[str, Any]]] = []
    others: list[tuple[Path, str]] = []
    for f in files:
        facts, reason = read_header(f)
        if facts is not None:
            images.append((f, facts))
        else:
            others.append((f, reason or "not a DICOM image"))
    if others:
        shown = ", ".join(f"{p.relative_to(base)} ({r})" for p, r in others[:_MAX_LISTED])
        log.warning(
            "%d of %d files under %s are not DICOM images; kept as unreadable records: %s",
            len(others),
            len(files),
            base,
            shown,
        )
    if not images:
        raise InvalidDataset(
            f"no DICOM images under {base}: {len(others)} file(s) checked, e.g. "
            f"{others[0][0].relative_to(base)}: {others[0][1]}"
        )

    lookup = _LabelLookup(labels_csv, join_on, label_column, path_column, base)
    records = (
        _series_records(base, images, lookup)
        if as_series
        else [_image_record(base, f, facts, lookup.label_for(f, facts)) for f, facts in images]
    )
    records += [
        Record(
            ref=f"unreadable:{f}",
            label=lookup.label_for(f, None),
            meta={"relpath": f.relative_to(base).as_posix(), "reason": reason},
        )
        for f, reason in others
    ]
    lookup.warn_unmatched()

    raw = [r.label for r in records]
    where = [r.ref for r in records]
    names_from = classes if classes is not None else lookup.classes()
    labels, names = encode_single(raw, names_from, where) if names_from is not None else (raw, [])
    kind = parse_task(task) or infer_task(len(names))
    if kind is Task.MULTILABEL:
        raise InvalidDataset("from_dicom_dir supports one label per record, not multilabel")
    if labels_csv is not None or classes is not None:
        check_task_classes(kind, names, str(base))
    final = [replace(r, label=lab) for r, lab in zip(records, labels, strict=True)]
    return Dataset(
        final,
        kind,
        names,
        name=name or base.name,
        positive_class=resolve_positive(names, positive, str(base))
        if kind is Task.BINARY
        else None,
    )


def _text(value: Any) -> str | None:
    return None if value is None else str(value).strip() or None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _image_record(base: Path, f: Path, facts: dict[str, Any], label: Any) -> Record:
    return Record(
        ref=str(f),
        label=label,
        patient_id=_text(facts["PatientID"]),
        study_id=_text(facts["StudyInstanceUID"]),
        meta={
            "relpath": f.relative_to(base).as_posix(),
            "modality": _text(facts["Modality"]),
            "series_uid": _text(facts["SeriesInstanceUID"]),
            "sop_uid": _text(facts["SOPInstanceUID"]),
            "rows": _int(facts["Rows"]),
            "cols": _int(facts["Columns"]),
            "frames": _int(facts["NumberOfFrames"]) or 1,
            "instance": _int(facts["InstanceNumber"]),
        },
    )


def _series_records(
    base: Path, images: list[tuple[Path, dict[str, Any]]], lookup: _LabelLookup
) -> list[Record]:
    groups: dict[str, list[tuple[Path, dict[str, Any]]]] = {}
    for f, facts in images:
        uid = _text(facts["SeriesInstanceUID"]) or f"no-series-uid:{f.relative_to(base)}"
        groups.setdefault(uid, []).append((f, facts))
    records = []
    for uid, members in groups.items():
        members.sort(key=lambda m: str(m[0]))
        first = members[0][1]
        labels = {lab for f, facts in members if (lab := lookup.label_for(f, facts)) is not None}
        if len(labels) > 1:
            raise InvalidDataset(
                f"series {uid} under {base} has files with different labels {sorted(labels)}; "
                "label series consistently or build one record per file (as_series=False)"
            )
        records.append(
            Record(
                ref=f"series:{base}#{uid}",
                label=labels.pop() if labels else None,
                patient_id=_text(first["PatientID"]),
                study_id=_text(first["StudyInstanceUID"]),
                meta={
                    "files": [str(f) for f, _ in members],
                    "n_files": len(members),
                    "modality": _text(first["Modality"]),
                    "series_uid": uid,
                    "description": _text(first["SeriesDescription"]),
                    "rows": _int(first["Rows"]),
                    "cols": _int(first["Columns"]),
                },
            )
        )
    return records


class _LabelLookup:
    """Raw label text per file, looked up in the labels CSV by path or DICOM identifier."""

    def __init__(
        self,
        csv: str | os.PathLike[str] | None,
        join_on: str,
        label_column: str,
        path_column: str,
        base: Path,
    ):
        self.join_on = join_on
        self.base = base
        self.table: dict[str, str | None] = {}
        self.used: set[str] = set()
        self.source = None if csv is None else Path(csv).expanduser()
        if self.source is None:
            return
        frame = read_table(self.source)
        key_column = path_column if join_on == "path" else join_on
        missing = [c for c in (key_column, label_column) if c not in frame.columns]
        if missing:
            raise InvalidDataset(
                f"labels file {self.source} lacks column(s) {missing}; it has {list(frame.columns)}"
            )
        for i, (key, value) in enumerate(zip(frame[key_column], frame[label_column], strict=True)):
            k, v = clean_cell(key), clean_cell(value)
            if k is None:
                continue
            k = self._normalise(k)
            if k in self.table and self.table[k] != v:
                raise InvalidDataset(
                    f"{self.source} row {i + 1}: {key_column} {k!r} appears again with label "
                    f"{v!r} (earlier {self.table[k]!r})"
                )
            self.table[k] = v

    def _normalise(self, key: str) -> str:
        if self.join_on != "path":
            return key
        p = Path(key.replace("\\", "/"))
        if p.is_absolute():
            try:
                p = p.resolve().relative_to(self.base)
            except ValueError:
                pass
        return p.as_posix()

    def label_for(self, f: Path, facts: dict[str, Any] | None) -> str | None:
        if not self.table:
            return None
        if self.join_on == "path":
            candidates = [f.relative_to(self.base).as_posix(), f.name]
        elif facts is not None:
            candidates = [_text(facts.get(self.join_on)) or ""]
        else:
            return None
        for key in candidates:
            if key in self.table:
                self.used.add(key)
                return self.table[key]
        return None

    def classes(self) -> list[str] | None:
        """Class names from every label value in the CSV (also rows matching no file)."""
        if self.source is None:
            return None
        values = sorted({v for v in self.table.values() if v is not None})
        return encode_single(values, None, [str(self.source)] * len(values))[1]

    def warn_unmatched(self) -> None:
        unmatched = [k for k in self.table if k not in self.used]
        if unmatched:
            log.warning(
                "%d row(s) of %s match no DICOM file under %s (by %s), e.g. %s",
                len(unmatched),
                self.source,
                self.base,
                self.join_on,
                unmatched[:_MAX_LISTED],
            )


def _resolve_series(rest: str, meta: dict[str, Any]) -> Image:
    from medsight.io import group_series, read_dicom_series

    root, _, uid = rest.rpartition("#")
    files = meta.get("files")
    if not files:
        # meta lost (e.g. a table saved without it): regroup the folder, skipping non-series files
        groups = group_series(visible_files(Path(root)), on_error=lambda path, exc: None)
        files = groups.get(uid)
        if not files:
            raise UnreadableImage(f"series:{rest}", f"no files of series {uid} under {root}")
    return read_dicom_series(files)


def _resolve_unreadable(rest: str, meta: dict[str, Any]) -> Image:
    raise UnreadableImage(rest, meta.get("reason") or "not a DICOM image")


register_scheme("series", _resolve_series)
register_scheme("unreadable", _resolve_unreadable)
