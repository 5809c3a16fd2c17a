"""`deidentify`: de-identify a DICOM file or a whole folder tree into a separate output folder.

The input is only ever read. Non-DICOM files are reported and not copied; files that fail are
reported with the reason and leave no partial output. A mapping file (original -> pseudonym),
the key to re-identification, is written only when asked for, and never next to the output.
"""

from __future__ import annotations

import csv
import logging
import os
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydicom
from pydicom.errors import InvalidDicomError
from pydicom.uid import UID

from medsight.data.deid.apply import deidentify_dataset
from medsight.data.deid.pseudonym import DEFAULT_DATE_SHIFT_DAYS, Pseudonymizer
from medsight.errors import InvalidConfig, InvalidDataset

log = logging.getLogger(__name__)

__all__ = ["DeidSummary", "deidentify"]

_DICOMDIR_CLASS = "1.2.840.10008.1.3.10"


@dataclass
class DeidSummary:
    """What a `deidentify` run did: files written, skipped (not DICOM) and failed, with reasons.

    Holds no identifiers read from inside the files (paths are listed as given).
    """

    input: str
    output: str
    written: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    n_patients: int = 0
    n_uids: int = 0
    warnings: list[str] = field(default_factory=list)
    secret_generated: bool = False
    mapping_file: str | None = None

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_dict(self) -> dict[str, Any]:
        return {
            "input": self.input,
            "output": self.output,
            "written": [{"input": i, "output": o} for i, o in self.written],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "failed": [{"path": p, "reason": r} for p, r in self.failed],
            "n_written": len(self.written),
            "n_skipped": len(self.skipped),
            "n_failed": len(self.failed),
            "n_patients": self.n_patients,
            "n_uids": self.n_uids,
            "warnings": list(self.warnings),
            "secret_generated": self.secret_generated,
            "mapping_file": self.mapping_file,
        }


def _inside(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


def _plan(src: Path, dst: Path) -> tuple[list[tuple[Path, Path]], bool]:
    """(input file, output file) pairs and whether the input is a directory."""
    if src.is_file():
        out = dst / src.name if dst.is_dir() else dst
        return [(src, out)], False
    files = sorted(p for p in src.rglob("*") if p.is_file())
    return [(p, dst / p.relative_to(src)) for p in files], True


def _check_paths(src: Path, dst: Path, mapping: Path | None, overwrite: bool, is_dir: bool) -> None:
    if _inside(dst, src) or _inside(src, dst):
        raise InvalidConfig(
            f"output {dst} must be outside the input {src} (and not contain it): "
            "medsight never writes into the data it de-identifies"
        )
    if is_dir and dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise InvalidConfig(f"output folder {dst} is not empty; pass overwrite=True to replace")
    if not is_dir and dst.is_file() and not overwrite:
        raise InvalidConfig(f"output file {dst} exists; pass overwrite=True to replace it")
    if mapping is not None:
        if _inside(mapping, dst) or _inside(mapping, src):
            raise InvalidConfig(
                f"mapping file {mapping} re-identifies patients: keep it outside both the input "
                f"{src} and the de-identified output {dst}"
            )


def _write_mapping(path: Path, pz: Pseudonymizer) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # owner-only from the start
    with os.fdopen(fd, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["kind", "attribute", "original", "pseudonym"])
        for original, pseudo in sorted(pz.patients.items()):
            w.writerow(["patient", "PatientID", original, pseudo])
        for key, days in sorted(pz.offsets.items()):
            w.writerow(["date_offset_days", "", key, days])
        for original, (new, attribute) in sorted(pz.uids.items()):
            w.writerow(["uid", attribute, original, new])
    try:
        os.chmod(path, 0o600)
    except OSError:
        log.warning("could not restrict permissions of mapping file %s", path)


_PIXEL_KEYWORDS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def _check_complete(ds: pydicom.Dataset) -> None:
    """Refuse what did not parse as a whole DICOM instance (random bytes, truncated files):
    writing it out would copy content nobody checked."""
    for _ in ds.iterall():  # decodes every element; malformed ones raise here
        pass
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise InvalidDataset("no SOP Class/Instance UID: not a complete DICOM instance")
    is_image = "Rows" in ds or UID(str(ds.SOPClassUID)).name.endswith("Image Storage")
    if is_image and not any(k in ds for k in _PIXEL_KEYWORDS):
        raise InvalidDataset("an image without Pixel Data: the file looks truncated")


def _one(
    src: Path, out: Path, pz: Pseudonymizer, keep_private: bool
) -> tuple[str | None, list[str], list[str]]:
    """De-identify one file: (skip reason or None, warnings, original ids). Raises on failure."""
    try:
        ds = pydicom.dcmread(src)
    except InvalidDicomError:
        return "not a DICOM file (no DICM preamble / File Meta header)", [], []
    meta = getattr(ds, "file_meta", None)
    if meta is not None and str(meta.get("MediaStorageSOPClassUID", "")) == _DICOMDIR_CLASS:
        return "DICOMDIR media index (not de-identified; rebuild it from the output)", [], []
    _check_complete(ds)
    originals = [str(ds.get("PatientID", "") or ""), str(ds.get("PatientName", "") or "")]
    warnings = []
    if str(ds.get("BurnedInAnnotation", "")).upper() == "YES":
        warnings.append(f"{src.name}: BurnedInAnnotation is YES; text in the pixels is kept")
    deidentify_dataset(ds, pz, keep_private=keep_private)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    try:
        ds.save_as(tmp, enforce_file_format=False)
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()
    return None, warnings, [o for o in originals if len(o) >= 3]


def deidentify(
    in_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    secret: bytes | str | None = None,
    date_shift_days_range: tuple[int, int] = DEFAULT_DATE_SHIFT_DAYS,
    mapping_file: str | os.PathLike[str] | None = None,
    keep_private: bool = False,
    overwrite: bool = False,
) -> DeidSummary:
    """De-identify a DICOM file or folder tree (mirrored into `out_path`) per PS3.15 Annex E.

    Same `secret` -> same patient pseudonyms, UIDs and date offsets across files and runs;
    without one a random secret is used (consistent within this run only). `out_path` must not
    be inside `in_path` (nor contain it). Private attributes are removed unless `keep_private`.
    """
    src = Path(in_path).expanduser().resolve()
    dst = Path(out_path).expanduser().resolve()
    if not src.exists():
        raise InvalidDataset(f"nothing to de-identify: {src} does not exist")
    mapping = Path(mapping_file).expanduser().resolve() if mapping_file is not None else None
    plan, is_dir = _plan(src, dst)
    _check_paths(src, dst, mapping, overwrite, is_dir)
    if not is_dir:
        _check_paths(src, plan[0][1], mapping, overwrite, False)

    generated = secret is None
    if generated:
        secret = secrets.token_bytes(32)
        log.warning(
            "no de-identification secret given: pseudonyms are random and will differ on the "
            "next run; pass a secret to keep them stable"
        )
    pz = Pseudonymizer(secret, date_shift_days_range)  # type: ignore[arg-type]
    summary = DeidSummary(str(src), str(dst), secret_generated=generated)
    named_in_path: set[str] = set()
    for f_in, f_out in plan:
        rel = str(f_in.relative_to(src)) if is_dir else f_in.name
        try:
            reason, warns, originals = _one(f_in, f_out, pz, keep_private)
        except Exception as exc:  # reported per file; the run goes on with the others
            summary.failed.append((str(f_in), f"{type(exc).__name__}: {exc}"))
            log.warning("de-identification failed for %s: %s", f_in, exc)
            continue
        if reason is not None:
            summary.skipped.append((str(f_in), reason))
            continue
        summary.written.append((str(f_in), str(f_out)))
        summary.warnings.extend(warns)
        for original in originals:
            if original in rel and original not in named_in_path:
                named_in_path.add(original)
                summary.warnings.append(
                    f"{rel}: the file path contains the patient's original id or name "
                    "(copied as is); rename such files and folders before sharing"
                )
    if not is_dir and (summary.skipped or summary.failed):
        reason = (summary.skipped or summary.failed)[0][1]
        raise InvalidDataset(f"{src} cannot be de-identified: {reason}")
    summary.n_patients = len(pz.offsets)
    summary.n_uids = len(pz.uids)
    if mapping is not None:
        _write_mapping(mapping, pz)
        summary.mapping_file = str(mapping)
    log.info(
        "de-identified %d files (%d skipped, %d failed) into %s",
        len(summary.written),
        len(summary.skipped),
        len(summary.failed),
        dst,
    )
    return summary
