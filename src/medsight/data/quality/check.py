"""`check_dataset`: read every image once and report counts, unreadable files, duplicates,
leakage between splits, conflicting labels and image sizes/spacing; for detection datasets also
box statistics and what importing the annotations found.

Only hashes and small summaries are kept per record, never pixels, so memory stays bounded on
large datasets. A corrupt file is counted and named with its reason, never silently dropped.
"""

from __future__ import annotations

import logging
import os
from collections import Counter, defaultdict
from collections.abc import Callable

import numpy as np

from medsight.data.box_import import import_report
from medsight.data.dataset import Dataset, Record, Task
from medsight.data.quality.box_stats import box_statistics
from medsight.data.quality.duplicates import DEFAULT_PIXEL_TOLERANCE, exact_groups, near_groups
from medsight.data.quality.hashing import file_hash, phash, pixel_hash, thumbnail
from medsight.data.quality.leakage import duplicate_leakage, patient_leakage
from medsight.data.quality.report import (
    DuplicateGroup,
    ImageSummary,
    QualityReport,
    RecordInfo,
    UnreadableEntry,
)
from medsight.data.refs import resolve, split_ref
from medsight.errors import UnreadableImage
from medsight.io.image import Image

log = logging.getLogger(__name__)

DEFAULT_NEAR_DUPLICATE_THRESHOLD = 8  # of 64 pHash bits; see docs of check_dataset
_SPLIT_ORDER = ("train", "val", "test")

Progress = Callable[[int, int], None]

__all__ = ["DEFAULT_NEAR_DUPLICATE_THRESHOLD", "check_dataset", "record_info"]


def record_info(ds: Dataset, i: int) -> RecordInfo:
    """The identity of record i as it appears in findings (label with its class name)."""
    r = ds.records[i]
    name = None
    if r.label is not None:
        if ds.task is Task.MULTILABEL:
            name = "+".join(c for c, v in zip(ds.classes, r.label, strict=True) if v) or "none"
        else:
            name = ds.classes[int(r.label)]
    return RecordInfo(i, r.ref, r.split, r.label, name, r.patient_id)


def _split_key(split: str | None) -> str:
    return split if split is not None else "unassigned"


def _ordered(keys: set[str]) -> list[str]:
    known = [s for s in _SPLIT_ORDER if s in keys]
    rest = sorted(k for k in keys if k not in _SPLIT_ORDER and k != "unassigned")
    return known + rest + (["unassigned"] if "unassigned" in keys else [])


def _counts(ds: Dataset) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    per_split: Counter[str] = Counter()
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    for r in ds.records:
        s = _split_key(r.split)
        per_split[s] += 1
        if ds.task is Task.DETECTION:  # boxes per class; "unlabelled": images not annotated
            if r.boxes is None:
                per_class[s]["unlabelled"] += 1
            else:
                for c, v in zip(ds.classes, r.boxes.counts(len(ds.classes)), strict=True):
                    per_class[s][c] += int(v)
        elif r.label is None:
            per_class[s]["unlabelled"] += 1
        elif ds.task is Task.MULTILABEL:
            for c, v in zip(ds.classes, r.label, strict=True):
                per_class[s][c] += int(v)
        else:
            per_class[s][ds.classes[int(r.label)]] += 1
    order = _ordered(set(per_split))
    class_cols = [*ds.classes, "unlabelled"]
    return (
        {s: per_split[s] for s in order},
        {s: {c: per_class[s][c] for c in class_cols} for s in order},
    )


def _file_of(record: Record) -> str | None:
    scheme, rest = split_ref(record.ref)
    if scheme is None and os.path.isfile(rest):
        return rest
    return None


def _summarise(
    images: list[tuple[tuple[int, ...], int, str | None, tuple[float, ...]]],
) -> ImageSummary:
    shapes: Counter[str] = Counter()
    channels: Counter[str] = Counter()
    dims: Counter[str] = Counter()
    modalities: Counter[str] = Counter()
    spacing: dict[str, list[tuple[float, ...]]] = defaultdict(list)
    for shape, ch, modality, sp in images:
        d = f"{len(shape)}D"
        shapes["x".join(map(str, shape))] += 1
        channels[str(ch)] += 1
        dims[d] += 1
        modalities[modality or "unknown"] += 1
        spacing[d].append(sp)
    stats = {}
    for d, values in spacing.items():
        arr = np.asarray(values, dtype=float)
        stats[d] = {
            "min": [round(float(v), 6) for v in arr.min(axis=0)],
            "median": [round(float(v), 6) for v in np.median(arr, axis=0)],
            "max": [round(float(v), 6) for v in arr.max(axis=0)],
        }
    return ImageSummary(dict(shapes), dict(channels), dict(dims), dict(modalities), stats)


def _read(ds: Dataset, i: int) -> tuple[Image | None, str | None]:
    rec = ds.records[i]
    try:
        return resolve(rec.ref, rec.meta), None
    except UnreadableImage as exc:
        return None, exc.reason
    except (ImportError, NameError):  # a broken installation, not a broken file: stop
        raise
    except Exception as exc:  # one odd file must not abort the whole check; it is reported
        return None, f"{type(exc).__name__}: {exc}"


def check_dataset(
    ds: Dataset,
    near_duplicate_threshold: int | None = DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    progress: Progress | None = None,
    hash_files: bool = True,
    pixel_tolerance: float = DEFAULT_PIXEL_TOLERANCE,
) -> QualityReport:
    """Check `ds` and return a `QualityReport`; every image is decoded exactly once.

    Exact duplicates share decoded pixels (and, for files, maybe bytes). Near duplicates show the
    same picture: candidates have DCT-pHashes within `near_duplicate_threshold` bits of 64 (None:
    skip), confirmed when their normalised 16x16 thumbnails differ by at most `pixel_tolerance`
    (see `near_groups`). `progress(done, total)` is called after each record.
    """
    n = len(ds)
    pixel_keys: list[str | None] = [None] * n
    byte_keys: list[str | None] = [None] * n
    phashes: list[int | None] = [None] * n
    thumbs: list[np.ndarray | None] = [None] * n
    unreadable: list[UnreadableEntry] = []
    images: list[tuple[tuple[int, ...], int, str | None, tuple[float, ...]]] = []
    for i, rec in enumerate(ds.records):
        img, reason = _read(ds, i)
        if img is None:
            unreadable.append(UnreadableEntry(record_info(ds, i), reason or "unknown reason"))
            log.debug("unreadable image %s: %s", rec.ref, reason)
        else:
            pixel_keys[i] = pixel_hash(img.pixels)
            if near_duplicate_threshold is not None:
                phashes[i] = phash(img.pixels)
                thumbs[i] = thumbnail(img.pixels)
            images.append((img.spatial_shape, img.channels, img.modality, img.spacing))
            path = _file_of(rec) if hash_files else None
            if path is not None:
                try:
                    byte_keys[i] = file_hash(path)
                except OSError as exc:
                    log.warning("cannot hash bytes of %s: %s", path, exc)
        if progress is not None:
            progress(i + 1, n)

    exact: list[DuplicateGroup] = []
    for idx in exact_groups(pixel_keys):
        same_bytes = all(byte_keys[i] is not None for i in idx) and len({byte_keys[i] for i in idx}) == 1
        members = [record_info(ds, i) for i in idx]
        exact.append(DuplicateGroup("exact", str(pixel_keys[idx[0]]), members, same_bytes, 0))
    near: list[DuplicateGroup] = []
    if near_duplicate_threshold is not None:
        for g in near_groups(pixel_keys, phashes, thumbs, int(near_duplicate_threshold), pixel_tolerance):
            members = [record_info(ds, i) for i in g.indices]
            key = f"{phashes[g.indices[0]]:016x}"
            near.append(DuplicateGroup("near", key, members, False, g.max_distance, g.max_difference))

    if unreadable:
        log.warning("%s: %d of %d images are unreadable", ds.name, len(unreadable), n)
    infos = [record_info(ds, i) for i in range(n)]
    leakage = patient_leakage(infos) + duplicate_leakage(exact) + duplicate_leakage(near)
    split_counts, class_counts = _counts(ds)
    detection = ds.task is Task.DETECTION
    return QualityReport(
        dataset=ds.name,
        n_records=n,
        task=ds.task.value,
        classes=list(ds.classes),
        split_counts=split_counts,
        class_counts=class_counts,
        unreadable=unreadable,
        exact_duplicates=exact,
        near_duplicates=near,
        leakage=leakage,
        images=_summarise(images),
        near_duplicate_threshold=near_duplicate_threshold,
        pixel_tolerance=pixel_tolerance if near_duplicate_threshold is not None else None,
        boxes=box_statistics(ds) if detection else None,
        box_import=import_report(ds) if detection else None,
    )
