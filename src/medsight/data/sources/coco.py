"""COCO instances JSON in and out: `from_coco` (an annotation file plus its image folder) and
`to_coco` (any detection dataset, e.g. a VOC or CSV import, as one COCO file).

Categories become class indices in the order of their ids unless ``classes`` names the order; an
image listed without annotations is an image holding nothing (COCO's meaning). Beyond the COCO
fields, images may carry ``split``, ``patient_id`` and ``annotated: false`` (no annotation at
all), which `to_coco` writes and `from_coco` reads, so a dataset survives the round trip.
Crowd annotations (``iscrowd: 1``) are not objects to detect: they are dropped and counted.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.data.box_import import (
    BoxImportReport,
    BoxIssue,
    RawBox,
    RawImage,
    build_detection_dataset,
    check_unknown_policy,
    image_size,
    resolve_image_path,
    split_name,
)
from medsight.data.dataset import Dataset, Task
from medsight.data.refs import split_ref
from medsight.errors import InvalidDataset


def from_coco(
    path: str | os.PathLike[str],
    images_root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    unknown: str = "error",
    name: str | None = None,
) -> Dataset:
    """A detection dataset from a COCO instances file; image ``file_name``s resolve against
    `images_root` (default: the file's folder). COCO ``bbox`` is [x, y, width, height]."""
    check_unknown_policy(unknown)
    file = Path(path).expanduser().resolve()
    doc = _load(file)
    base = Path(images_root).expanduser() if images_root is not None else file.parent
    categories = _categories(doc, file)
    report = BoxImportReport(source=str(file), format="coco")
    by_id: dict[Any, RawImage] = {}
    for k, entry in enumerate(doc["images"]):
        where = f"{file} images[{k}]"
        if not isinstance(entry, dict) or "id" not in entry or not entry.get("file_name"):
            raise InvalidDataset(f"{where}: an image needs an 'id' and a 'file_name'")
        if entry["id"] in by_id:
            raise InvalidDataset(f"{where}: image id {entry['id']!r} is used twice")
        w, h = entry.get("width"), entry.get("height")
        annotated = entry.get("annotated", True) is not False
        by_id[entry["id"]] = RawImage(
            ref=resolve_image_path(str(entry["file_name"]), base),
            boxes=[] if annotated else None,
            size=(int(w), int(h)) if w and h else None,
            split=split_name(entry.get("split"), where),
            patient_id=None if entry.get("patient_id") is None else str(entry["patient_id"]),
            meta={"coco_id": entry["id"]},
        )
    for k, ann in enumerate(doc["annotations"]):
        raw, box = _annotation(ann, k, file, by_id, categories)
        if ann.get("iscrowd"):
            report.issues.append(BoxIssue("crowd", raw.ref, box[:4], box[4]))
        elif raw.boxes is None:
            raise InvalidDataset(f"{file} annotations[{k}]: image {ann['image_id']!r} is marked "
                                 "annotated: false but has an annotation")
        else:
            raw.boxes.append(box)
    order = list(classes) if classes is not None else list(categories.values())
    return build_detection_dataset(list(by_id.values()), report, order, unknown, name=name or file.stem)


def _load(file: Path) -> dict[str, Any]:
    try:
        doc = json.loads(file.read_text())
    except FileNotFoundError:
        raise InvalidDataset(f"COCO file {file} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidDataset(f"{file} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict) or not all(isinstance(doc.get(k), list)
                                            for k in ("images", "annotations", "categories")):
        raise InvalidDataset(f"{file} is not a COCO instances file: it needs lists 'images', "
                             "'annotations' and 'categories'")
    return doc


def _categories(doc: dict[str, Any], file: Path) -> dict[Any, str]:
    """Category id -> name, in the order of the ids."""
    out: dict[Any, str] = {}
    for k, cat in enumerate(doc["categories"]):
        if not isinstance(cat, dict) or not isinstance(cat.get("id"), int) or not str(
            cat.get("name", "")
        ).strip():
            raise InvalidDataset(f"{file} categories[{k}]: a category needs an integer 'id' and a 'name'")
        if cat["id"] in out:
            raise InvalidDataset(f"{file} categories[{k}]: category id {cat['id']!r} is used twice")
        out[cat["id"]] = str(cat["name"]).strip()
    if len(set(out.values())) != len(out):
        raise InvalidDataset(f"{file}: two categories share a name: {sorted(out.values())}")
    return dict(sorted(out.items()))


def _annotation(
    ann: Any, k: int, file: Path, images: dict[Any, RawImage], categories: dict[Any, str]
) -> tuple[RawImage, RawBox]:
    where = f"{file} annotations[{k}]"
    if not isinstance(ann, dict):
        raise InvalidDataset(f"{where}: an annotation must be an object")
    raw = images.get(ann.get("image_id"))
    if raw is None:
        raise InvalidDataset(f"{where}: image_id {ann.get('image_id')!r} is not among the images")
    label = categories.get(ann.get("category_id"))
    if label is None:
        raise InvalidDataset(f"{where}: category_id {ann.get('category_id')!r} is not a category")
    bbox = ann.get("bbox")
    try:
        x, y, w, h = (float(v) for v in bbox)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise InvalidDataset(f"{where}: bbox must be [x, y, width, height], got {bbox!r}") from None
    return raw, (x, y, x + w, y + h, label)


def to_coco(ds: Dataset, path: str | os.PathLike[str]) -> Path:
    """Write detection dataset `ds` as a COCO instances file at `path`; returns the path.

    Category ids are class index + 1; image file names are relative to the file's folder when
    the image lies under it, else absolute. Width and height come from the record's metadata,
    the image header, or (for generated images) the decoded image.
    """
    if ds.task is not Task.DETECTION:
        raise InvalidDataset(f"{ds.name} is a {ds.task.value} dataset; COCO export needs boxes")
    out = Path(path).expanduser().resolve()
    images: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for i, rec in enumerate(ds.records):
        width, height = _size_of(ds, i)
        entry: dict[str, Any] = {"id": i + 1, "file_name": _file_name(rec.ref, out.parent),
                                 "width": width, "height": height}
        if rec.split is not None:
            entry["split"] = rec.split
        if rec.patient_id is not None:
            entry["patient_id"] = rec.patient_id
        if rec.boxes is None:
            entry["annotated"] = False
        images.append(entry)
        for (x1, y1, x2, y2), label in zip((rec.boxes.xyxy if rec.boxes else ()),
                                           (rec.boxes.labels if rec.boxes else ()), strict=True):
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1,
                                "category_id": int(label) + 1, "bbox": [x1, y1, x2 - x1, y2 - y1],
                                "area": (x2 - x1) * (y2 - y1), "iscrowd": 0})
    categories = [{"id": k + 1, "name": c, "supercategory": ""} for k, c in enumerate(ds.classes)]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"info": {"description": ds.name}, "images": images,
                               "annotations": annotations, "categories": categories}))
    return out


def _file_name(ref: str, folder: Path) -> str:
    scheme, rest = split_ref(ref)
    if scheme is not None:
        return ref
    path = Path(rest).resolve()
    return path.relative_to(folder).as_posix() if path.is_relative_to(folder) else str(path)


def _size_of(ds: Dataset, i: int) -> tuple[int, int]:
    rec = ds.records[i]
    if rec.meta.get("width") and rec.meta.get("height"):
        return int(rec.meta["width"]), int(rec.meta["height"])
    scheme, rest = split_ref(rec.ref)
    size = image_size(rest) if scheme is None else None
    if size is None:
        rows, cols = ds.image(i).spatial_shape[-2:]
        size = (int(cols), int(rows))
    return size
