"""Box annotations into a detection `Dataset`: the validation every box source (VOC, COCO, CSV)
shares, and the `BoxImportReport` that says what it found.

Nothing is fixed silently. A box reaching outside its image is clipped to it and counted
(``clipped``); a box with no width or height (after clipping) is dropped and counted
(``zero_area``); a label outside the ``classes`` given is an error, or dropped and counted with
``unknown="drop"``; an image annotated as holding nothing is counted (``empty_images``), an image
with no annotation at all becomes an unannotated record (``Record.boxes`` None); an annotation
naming a missing image file is skipped and named. The report is attached to the dataset the
source returns as ``dataset.import_report`` (read it with `import_report`; subsets and splits
derived from the dataset do not carry it) and logged.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medsight.boxes import Boxes
from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import split_ref
from medsight.data.sources.labels import clean_cell, natural_key
from medsight.data.sources.manifest import SPLIT_NAMES
from medsight.errors import InvalidDataset

log = logging.getLogger(__name__)

UNKNOWN_POLICIES = ("error", "drop")
ISSUE_KINDS = ("clipped", "zero_area", "unknown_label", "crowd")
RawBox = tuple[float, float, float, float, str]

__all__ = [
    "BoxImportReport",
    "BoxIssue",
    "RawImage",
    "build_detection_dataset",
    "image_size",
    "import_report",
    "resolve_image_path",
    "split_name",
]


@dataclass(frozen=True)
class BoxIssue:
    """One box the import changed or left out: ``kind`` is one of `ISSUE_KINDS`; ``box`` as
    annotated (x1, y1, x2, y2)."""

    kind: str
    image: str
    box: tuple[float, float, float, float]
    label: str

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "image": self.image, "box": list(self.box), "label": self.label}


@dataclass
class BoxImportReport:
    """What importing box annotations from `source` found (see the module docstring)."""

    source: str
    format: str
    classes: list[str] = field(default_factory=list)
    n_images: int = 0
    n_boxes: int = 0
    issues: list[BoxIssue] = field(default_factory=list)
    empty_images: list[str] = field(default_factory=list)
    unannotated: list[str] = field(default_factory=list)
    missing_images: list[str] = field(default_factory=list)
    unknown_size: list[str] = field(default_factory=list)
    unsplit: list[str] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        """Every count the report holds, by name (issue kinds included, 0 when absent)."""
        kinds = Counter(i.kind for i in self.issues)
        return {
            "images": self.n_images,
            "boxes": self.n_boxes,
            **{k: kinds.get(k, 0) for k in ISSUE_KINDS},
            "empty_images": len(self.empty_images),
            "unannotated": len(self.unannotated),
            "missing_images": len(self.missing_images),
            "unknown_size": len(self.unknown_size),
            "unsplit": len(self.unsplit),
        }

    def of(self, kind: str) -> list[BoxIssue]:
        return [i for i in self.issues if i.kind == kind]

    def describe(self) -> str:
        """One line: images and boxes kept, then every non-zero finding."""
        c = self.counts()
        found = [f"{v} {k.replace('_', ' ')}" for k, v in c.items() if k not in ("images", "boxes") and v]
        return (f"{self.format} {self.source}: {c['images']} images, {c['boxes']} boxes kept"
                + (f"; {', '.join(found)}" if found else "; no problems found"))

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "format": self.format,
            "classes": list(self.classes),
            "counts": self.counts(),
            "issues": [i.to_dict() for i in self.issues],
            "empty_images": list(self.empty_images),
            "unannotated": list(self.unannotated),
            "missing_images": list(self.missing_images),
            "unknown_size": list(self.unknown_size),
            "unsplit": list(self.unsplit),
        }


@dataclass
class RawImage:
    """One image as a source read it: ``boxes`` None when it has no annotation at all;
    ``size`` (width, height) when the annotation states it."""

    ref: str
    boxes: list[RawBox] | None
    size: tuple[int, int] | None = None
    split: str | None = None
    patient_id: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)


def import_report(ds: Dataset) -> BoxImportReport | None:
    """The `BoxImportReport` a box source attached to `ds`, or None."""
    report = getattr(ds, "import_report", None)
    return report if isinstance(report, BoxImportReport) else None


def image_size(path: str) -> tuple[int, int] | None:
    """(width, height) of a raster file from its header alone, or None when Pillow cannot tell."""
    from PIL import Image as PILImage

    try:
        with PILImage.open(path) as im:
            return int(im.size[0]), int(im.size[1])
    except Exception:  # not a raster Pillow knows (DICOM, NIfTI, ...): size unknown
        return None


def check_unknown_policy(unknown: str) -> str:
    if unknown not in UNKNOWN_POLICIES:
        raise InvalidDataset(f"unknown={unknown!r}: use one of {UNKNOWN_POLICIES}")
    return unknown


def split_name(value: Any, where: str) -> str | None:
    """A split cell as ``train``/``val``/``test`` (``valid``/``validation`` accepted), None if empty."""
    text = clean_cell(value)
    if text is None:
        return None
    split = SPLIT_NAMES.get(text.lower())
    if split is None:
        raise InvalidDataset(f"{where}: split {text!r} is not one of train/val/test")
    return split


def _exists(ref: str) -> bool:
    scheme, rest = split_ref(ref)
    return scheme is not None or os.path.isfile(rest)


def resolve_image_path(value: str, base: str | os.PathLike[str]) -> str:
    """An annotation's image name as a record ref: registered refs kept, relative paths joined to
    `base`, every path made absolute."""
    scheme, rest = split_ref(value)
    if scheme is not None:
        return value
    path = os.path.expanduser(rest)
    return os.path.abspath(path if os.path.isabs(path) else os.path.join(base, path))


def _clean(
    raw: RawImage, size: tuple[int, int] | None, lookup: dict[str, int], unknown: str,
    report: BoxImportReport,
) -> Boxes:
    xyxy: list[tuple[float, float, float, float]] = []
    labels: list[int] = []
    for x1, y1, x2, y2, name in raw.boxes or []:
        box = (x1, y1, x2, y2)
        if name not in lookup:
            if unknown == "error":
                raise InvalidDataset(
                    f"{report.source}: box label {name!r} of {raw.ref} is not one of the classes "
                    f"{report.classes}; pass classes=[...] naming it, or unknown='drop'"
                )
            report.issues.append(BoxIssue("unknown_label", raw.ref, box, name))
            continue
        w, h = size if size is not None else (float("inf"), float("inf"))
        clipped = (max(x1, 0.0), max(y1, 0.0), min(x2, float(w)), min(y2, float(h)))
        if clipped[2] - clipped[0] <= 0 or clipped[3] - clipped[1] <= 0:
            report.issues.append(BoxIssue("zero_area", raw.ref, box, name))
            continue
        if clipped != box:
            report.issues.append(BoxIssue("clipped", raw.ref, box, name))
        xyxy.append(clipped)
        labels.append(lookup[name])
    return Boxes(tuple(xyxy), tuple(labels))


def build_detection_dataset(
    images: Sequence[RawImage],
    report: BoxImportReport,
    classes: Sequence[str] | None = None,
    unknown: str = "error",
    name: str = "detection",
) -> Dataset:
    """Validate `images` into a detection `Dataset` (classes: `classes`, else the sorted names
    seen), filling `report`, which is attached as ``dataset.import_report`` and logged."""
    check_unknown_policy(unknown)
    if classes is None:
        seen = {b[4] for r in images for b in r.boxes or []}
        classes = sorted(seen, key=natural_key)
    report.classes = [str(c) for c in classes]
    if len(set(report.classes)) != len(report.classes):
        raise InvalidDataset(f"{report.source}: classes {report.classes} name a class twice")
    if not report.classes:
        raise InvalidDataset(f"{report.source}: no box labels found and no classes given")
    lookup = {c: i for i, c in enumerate(report.classes)}
    records: list[Record] = []
    for raw in images:
        if not _exists(raw.ref):
            report.missing_images.append(raw.ref)
            continue
        scheme, path = split_ref(raw.ref)
        size = raw.size or (image_size(path) if scheme is None else None)
        meta = dict(raw.meta)
        if size is not None:
            meta.update(width=size[0], height=size[1])
        elif raw.boxes:
            report.unknown_size.append(raw.ref)
        boxes = None
        if raw.boxes is None:
            report.unannotated.append(raw.ref)
        else:
            boxes = _clean(raw, size, lookup, unknown, report)
            if not raw.boxes:
                report.empty_images.append(raw.ref)
            report.n_boxes += len(boxes)
        records.append(Record(ref=raw.ref, patient_id=raw.patient_id, split=raw.split, meta=meta,
                              boxes=boxes))
    report.n_images = len(records)
    if not records:
        raise InvalidDataset(f"{report.source}: no image could be used; {report.describe()}")
    ds = Dataset(records, Task.DETECTION, report.classes, name=name)
    ds.import_report = report  # type: ignore[attr-defined]
    counts = report.counts()
    problems = any(counts[k] for k in (*ISSUE_KINDS, "missing_images", "unknown_size", "unsplit"))
    (log.warning if problems else log.info)("%s", report.describe())
    return ds
