"""`pull`: copy the studies a query (or one StudyInstanceUID) names from a PACS into a local DICOM
folder with a manifest that medsight's dataset loaders read, optionally with de-identified copies;
resumable, because every file is written atomically and what is already on disk is checked, not
fetched again."""

from __future__ import annotations

import csv
import io
import logging
import os
import re
import secrets as secrets_mod
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom import Dataset
from pydicom.uid import UID

from medsight.atomic import write_atomic
from medsight.data.deid import Pseudonymizer, deidentify_dataset
from medsight.errors import InvalidConfig, PacsError
from medsight.pacs.client import Pacs
from medsight.pacs.query import split_query

__all__ = ["MANIFEST_COLUMNS", "SECRET_FILE", "PullReport", "pull"]

log = logging.getLogger(__name__)

MANIFEST_COLUMNS = ("path", "label", "patient_id", "study_id", "series_uid", "sop_uid", "modality",
                    "study_date", "body_part", "series_description", "instance_number", "rows",
                    "columns")
SECRET_FILE = ".deid-secret"
_UID = re.compile(r"^[0-9]+(\.[0-9]+)*$")

Progress = Callable[[int, int], None]


@dataclass
class PullReport:
    """What a pull did: counts per level, instances fetched / already present / failed (with the
    reason), the studies or series whose contents the PACS would not list (``unlisted``: UID and
    reason; none of their instances is known, so none was pulled), bytes written, and where the
    manifests are."""

    out: str
    studies: int = 0
    series: int = 0
    fetched: int = 0
    present: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    unlisted: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0
    deidentified: int = 0
    manifest: str | None = None
    deid_manifest: str | None = None

    @property
    def instances(self) -> int:
        """Instances the PACS listed."""
        return self.fetched + self.present + len(self.failed)

    @property
    def ok(self) -> bool:
        """True when no instance failed and every study and series could be listed."""
        return not self.failed and not self.unlisted

    def to_dict(self) -> dict[str, Any]:
        return {"out": self.out, "studies": self.studies, "series": self.series,
                "instances": self.instances, "fetched": self.fetched, "present": self.present,
                "failed": [{"sop_uid": u, "reason": r} for u, r in self.failed],
                "unlisted": [{"uid": u, "reason": r} for u, r in self.unlisted],
                "bytes": self.bytes, "deidentified": self.deidentified,
                "manifest": self.manifest, "deid_manifest": self.deid_manifest}


@dataclass(frozen=True)
class _Item:
    study: str
    series: str
    sop: str


def _uid(value: Any, what: str) -> str:
    """A UID from the PACS, refused unless digits and dots (it becomes a file name)."""
    text = str(value or "").strip()
    if not _UID.match(text) or len(text) > 64:
        raise PacsError(f"the PACS answered an invalid {what} {text[:80]!r}")
    return text


def _plan(pacs: Pacs, query: dict[str, str] | None, study: str | None, limit: int | None,
          unlisted: list[tuple[str, str]]) -> tuple[list[_Item], int, int]:
    """Every instance to pull (QIDO study -> series -> instance), with the study and series counts;
    a study or series the PACS fails to list goes to `unlisted` and the others are still planned
    (one broken series does not stop an archive's pull)."""
    levels = split_query(query or {})
    if study is not None:
        studies = [_uid(study, "StudyInstanceUID")]
    else:
        answers = pacs.search("study", levels["study"], fields=("StudyInstanceUID",), limit=limit)
        studies = [_uid(a.get("StudyInstanceUID"), "StudyInstanceUID") for a in answers]
    items: list[_Item] = []
    n_series = 0
    for st in dict.fromkeys(studies):
        try:
            series = pacs.search("series", levels["series"], study=st)
        except PacsError as exc:
            if study is not None:
                raise  # the one study asked for: nothing to pull
            log.warning("study %s not listed: %s", st, exc)
            unlisted.append((st, str(exc)))
            continue
        for se_answer in series:
            se = _uid(se_answer.get("SeriesInstanceUID"), "SeriesInstanceUID")
            n_series += 1
            try:
                answers = pacs.search("instance", levels["instance"], study=st, series=se)
            except PacsError as exc:
                log.warning("series %s not listed: %s", se, exc)
                unlisted.append((se, str(exc)))
                continue
            items.extend(_Item(st, se, _uid(a.get("SOPInstanceUID"), "SOPInstanceUID"))
                         for a in answers)
    if study is not None and n_series == 0:
        raise PacsError(f"{pacs.config.display}: study {study} not found (no series"
                        f"{' matching ' + str(levels['series']) if levels['series'] else ''})")
    return list(dict.fromkeys(items)), len(set(studies)), n_series


def _whole(ds: Dataset) -> bool:
    """True when `ds` decodes completely and an image has all its (uncompressed) pixel bytes."""
    for _ in ds.iterall():  # a malformed element raises here
        pass
    is_image = "Rows" in ds or UID(str(ds.get("SOPClassUID", ""))).name.endswith("Image Storage")
    if not is_image:
        return True
    if "PixelData" not in ds or "Rows" not in ds:
        return False
    if ds.file_meta.TransferSyntaxUID.is_compressed:
        return True
    expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
                * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated) + 7) // 8
    return len(ds.PixelData) >= expected


def _check_file(path: Path, sop: str) -> Dataset | None:
    """The dataset in `path` when it is a whole DICOM file of instance `sop`, else None."""
    if not path.is_file():
        return None
    try:
        ds = pydicom.dcmread(path)
        return ds if str(ds.SOPInstanceUID) == sop and _whole(ds) else None
    except Exception:  # truncated or foreign content: fetched again
        return None


def _write(path: Path, ds: Dataset) -> int:
    write_atomic(path, lambda fh: pydicom.dcmwrite(fh, ds, enforce_file_format=True))
    return path.stat().st_size


def _row(ds: Dataset, path: Path, out: Path) -> dict[str, str]:
    values = {"path": path.relative_to(out).as_posix(), "label": "",
              "patient_id": ds.get("PatientID"), "study_id": ds.get("StudyInstanceUID"),
              "series_uid": ds.get("SeriesInstanceUID"), "sop_uid": ds.get("SOPInstanceUID"),
              "modality": ds.get("Modality"), "study_date": ds.get("StudyDate"),
              "body_part": ds.get("BodyPartExamined"),
              "series_description": ds.get("SeriesDescription"),
              "instance_number": ds.get("InstanceNumber"), "rows": ds.get("Rows"),
              "columns": ds.get("Columns")}
    return {k: "" if v is None else str(v) for k, v in values.items()}


def _write_manifest(path: Path, rows: dict[str, dict[str, str]]) -> None:
    """The manifest: this run's rows over those of an earlier manifest whose files still exist."""
    merged: dict[str, dict[str, str]] = {}
    if path.is_file():
        with path.open(newline="", encoding="utf-8") as fh:
            for old in csv.DictReader(fh):
                if (path.parent / old.get("path", "")).is_file():
                    merged[old["path"]] = {c: old.get(c, "") for c in MANIFEST_COLUMNS}
    merged.update(rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=MANIFEST_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(merged[k] for k in sorted(merged))
    write_atomic(path, buf.getvalue().encode("utf-8"))


def _secret(out: Path, secret: str | None) -> str:
    """The given secret, else the one kept in ``out/.deid-secret`` (created 0600 on first use)."""
    if secret:
        return secret
    path = out / SECRET_FILE
    if path.is_file():
        return path.read_text(encoding="utf-8").strip()
    value = secrets_mod.token_hex(32)
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(value + "\n")
    return value


def _remove_stale_tmp(folder: Path) -> None:
    """Temporary files left by a pull that was killed mid-write (never renamed into place)."""
    if folder.is_dir():
        for tmp in folder.rglob(".*.tmp"):
            tmp.unlink(missing_ok=True)


class _Puller:
    """One pull's state: where files go, what was done, the manifests' rows."""

    def __init__(self, pacs: Pacs, out: Path, report: PullReport, pz: Pseudonymizer | None,
                 keep_originals: bool, series_sizes: dict[tuple[str, str], int]) -> None:
        self.pacs, self.out, self.report, self.pz = pacs, out, report, pz
        self.keep_originals = keep_originals
        self.series_sizes = series_sizes
        self.rows: dict[str, dict[str, str]] = {}
        self.deid_rows: dict[str, dict[str, str]] = {}

    def original_path(self, item: _Item) -> Path:
        return self.out / "dicom" / item.study / item.series / f"{item.sop}.dcm"

    def deid_path(self, item: _Item) -> Path:
        assert self.pz is not None
        uid = self.pz.uid
        return (self.out / "deid" / uid(item.study, "StudyInstanceUID")
                / uid(item.series, "SeriesInstanceUID") / f"{uid(item.sop, 'SOPInstanceUID')}.dcm")

    def done(self, item: _Item) -> bool:
        """True when what this pull keeps of `item` is already on disk and whole (rows recorded)."""
        if self.keep_originals:
            ds = _check_file(self.original_path(item), item.sop)
            if ds is None:
                return False
            self.rows[self.original_path(item).relative_to(self.out).as_posix()] = _row(
                ds, self.original_path(item), self.out)
            if self.pz is not None:
                self.deidentify(item, ds)
            return True
        path = self.deid_path(item)
        ds = _check_file(path, self.pz.uid(item.sop, "SOPInstanceUID")) if self.pz else None
        if ds is None:
            return False
        self.deid_rows[path.relative_to(self.out).as_posix()] = _row(ds, path, self.out)
        return True

    def deidentify(self, item: _Item, ds: Dataset) -> None:
        assert self.pz is not None
        path = self.deid_path(item)
        copy = _check_file(path, self.pz.uid(item.sop, "SOPInstanceUID"))
        if copy is None:
            copy = pydicom.dcmread(io.BytesIO(_encoded(ds)))
            deidentify_dataset(copy, self.pz)
            self.report.bytes += _write(path, copy)
            self.report.deidentified += 1
        self.deid_rows[path.relative_to(self.out).as_posix()] = _row(copy, path, self.out)

    def save(self, item: _Item, ds: Dataset) -> None:
        """Write one retrieved instance (and its de-identified copy)."""
        if self.keep_originals:
            path = self.original_path(item)
            self.report.bytes += _write(path, ds)
            self.rows[path.relative_to(self.out).as_posix()] = _row(ds, path, self.out)
        if self.pz is not None:
            self.deidentify(item, ds)
        self.report.fetched += 1

    def fetch_series(self, missing: list[_Item], tick: Callable[[], None]) -> None:
        """Fetch the missing instances of one series: the whole series in one WADO-RS request when
        none is on disk yet, else one request per instance (and for what the first left out)."""
        wanted = {item.sop: item for item in missing}
        first = missing[0]
        if len(missing) > 1 and len(missing) == self.series_sizes[(first.study, first.series)]:
            try:
                for ds in self.pacs.retrieve(first.study, first.series):
                    item = wanted.pop(str(ds.get("SOPInstanceUID", "")), None)
                    if item is not None:
                        self.save(item, ds)
                        tick()
            except PacsError as exc:
                log.warning("series retrieve failed, fetching instances one by one: %s", exc)
        for item in list(wanted.values()):
            try:
                got = list(self.pacs.retrieve(item.study, item.series, item.sop))
                ds = next((d for d in got if str(d.get("SOPInstanceUID", "")) == item.sop), None)
                if ds is None:
                    raise PacsError(f"{self.pacs.config.display}: instance {item.sop} was not "
                                    "returned")
                self.save(item, ds)
            except (PacsError, OSError, ValueError) as exc:
                self.report.failed.append((item.sop, str(exc)))
            tick()


def _encoded(ds: Dataset) -> bytes:
    buf = io.BytesIO()
    pydicom.dcmwrite(buf, ds, enforce_file_format=True)
    return buf.getvalue()


def _by_series(items: Iterable[_Item]) -> dict[tuple[str, str], list[_Item]]:
    groups: dict[tuple[str, str], list[_Item]] = {}
    for item in items:
        groups.setdefault((item.study, item.series), []).append(item)
    return groups


def pull(pacs: Pacs, out: str | os.PathLike[str], *, query: dict[str, str] | None = None,
         study: str | None = None, limit: int | None = None, deidentify: bool = False,
         deidentify_only: bool = False, secret: str | None = None,
         progress: Progress | None = None) -> PullReport:
    """Pull the studies matching `query` (at most `limit` studies) or the study `study` into
    ``out/dicom/<Study>/<Series>/<SOP>.dcm`` with ``out/manifest.csv``. With `deidentify`, also
    PS3.15 de-identified copies in ``out/deid/`` (``out/deid/manifest.csv``), pseudonyms keyed by
    `secret` (else one kept 0600 in ``out/.deid-secret``); `deidentify_only` keeps no originals.
    Instances already on disk (whole, with the right SOP UID) are not fetched again. `progress` is
    called as ``progress(done, total)`` after each instance; an exception it raises stops the pull."""
    if (query is None) == (study is None):
        raise InvalidConfig("pull needs a query or a study UID (one of them)")
    root = Path(out).expanduser()
    deidentify = deidentify or deidentify_only
    report = PullReport(out=str(root))
    items, report.studies, report.series = _plan(pacs, query, study, limit, report.unlisted)
    pz = Pseudonymizer(_secret(root, secret)) if deidentify else None
    groups = _by_series(items)
    puller = _Puller(pacs, root, report, pz, keep_originals=not deidentify_only,
                     series_sizes={k: len(v) for k, v in groups.items()})
    _remove_stale_tmp(root / "dicom")
    _remove_stale_tmp(root / "deid")
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, len(items))

    for group in groups.values():
        missing = []
        for item in group:
            if puller.done(item):
                report.present += 1
                tick()
            else:
                missing.append(item)
        if missing:
            puller.fetch_series(missing, tick)
    if puller.rows:
        report.manifest = str(root / "manifest.csv")
        _write_manifest(root / "manifest.csv", puller.rows)
    if puller.deid_rows:
        report.deid_manifest = str(root / "deid" / "manifest.csv")
        _write_manifest(root / "deid" / "manifest.csv",
                        {k.removeprefix("deid/"): {**v, "path": v["path"].removeprefix("deid/")}
                         for k, v in puller.deid_rows.items()})
    log.info("pulled %d instance(s) (%d already present, %d failed, %d series or studies not "
             "listed) from %s into %s", report.fetched, report.present, len(report.failed),
             len(report.unlisted), pacs.config.display, root)
    return report
