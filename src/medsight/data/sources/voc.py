"""Pascal VOC detection folders: ``Annotations/*.xml`` boxes, ``JPEGImages/`` pixels and the
official split in ``ImageSets/Main/{train,val,test}.txt`` when present (e.g. BCCD).

Box corners are read as pixel edges unchanged (see `medsight.boxes`); validation and the
`BoxImportReport` come from `medsight.data.box_import`. An image without an XML file becomes an
unannotated record; an XML without its image is skipped and named in the report.
"""

from __future__ import annotations

import os
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from medsight.data.box_import import (
    BoxImportReport,
    RawBox,
    RawImage,
    build_detection_dataset,
    check_unknown_policy,
)
from medsight.data.dataset import Dataset
from medsight.errors import InvalidDataset

SPLIT_FILES = ("train", "val", "test")
_MAX_XML_BYTES = 16 * 2**20


def is_voc_folder(root: str | os.PathLike[str]) -> bool:
    """True for a folder holding ``Annotations/`` and ``JPEGImages/``."""
    path = Path(root)
    return (path / "Annotations").is_dir() and (path / "JPEGImages").is_dir()


def from_voc(
    root: str | os.PathLike[str],
    classes: Sequence[str] | None = None,
    unknown: str = "error",
    name: str | None = None,
) -> Dataset:
    """A detection dataset from a VOC folder; classes are `classes` (their order is the index
    order, e.g. ``["RBC", "WBC", "Platelets"]`` for BCCD) or the sorted object names."""
    check_unknown_policy(unknown)
    base = Path(root).expanduser().resolve()
    if not is_voc_folder(base):
        raise InvalidDataset(f"{base} is not a Pascal VOC folder: it needs Annotations/ and JPEGImages/")
    image_dir, annotation_dir = base / "JPEGImages", base / "Annotations"
    pictures = {p.stem: p for p in sorted(image_dir.iterdir()) if p.is_file() and not p.name.startswith(".")}
    splits = _official_splits(base / "ImageSets" / "Main")
    report = BoxImportReport(source=str(base), format="voc")
    images: list[RawImage] = []
    annotated: set[str] = set()
    for xml in sorted(annotation_dir.glob("*.xml")):
        raw = _read_annotation(xml, image_dir, pictures)
        annotated.add(Path(raw.ref).stem)
        images.append(raw)
    for stem, picture in pictures.items():
        if stem not in annotated:
            images.append(RawImage(ref=str(picture), boxes=None, meta={"image_id": stem}))
    if splits:
        for raw in images:
            raw.split = splits.get(raw.meta["image_id"])
            if raw.split is None:
                report.unsplit.append(raw.ref)
        present = {raw.meta["image_id"] for raw in images}
        report.missing_images.extend(
            f"{image_dir / stem} (listed in ImageSets/Main/{split}.txt)"
            for stem, split in splits.items() if stem not in present
        )
    return build_detection_dataset(images, report, classes, unknown, name=name or base.name)


def _official_splits(folder: Path) -> dict[str, str]:
    """Image id -> split from ``train.txt``/``val.txt``/``test.txt`` (first word per line)."""
    out: dict[str, str] = {}
    for split in SPLIT_FILES:
        listing = folder / f"{split}.txt"
        if not listing.is_file():
            continue
        for n, line in enumerate(listing.read_text().splitlines(), start=1):
            words = line.split()
            if not words:
                continue
            if words[0] in out and out[words[0]] != split:
                raise InvalidDataset(
                    f"{listing} line {n}: {words[0]} is also listed in {out[words[0]]}.txt; "
                    "an image belongs to one split"
                )
            out[words[0]] = split
    return out


def _read_annotation(xml: Path, image_dir: Path, pictures: dict[str, Path]) -> RawImage:
    data = xml.read_bytes()
    if len(data) > _MAX_XML_BYTES or b"<!ENTITY" in data:
        raise InvalidDataset(f"{xml}: refusing an annotation over 16 MiB or declaring XML entities")
    try:
        root = ET.fromstring(data)
    except ET.ParseError as exc:
        raise InvalidDataset(f"{xml}: not valid XML ({exc})") from None
    filename = (root.findtext("filename") or "").strip()
    picture: Path | None = image_dir / filename if filename else None
    if picture is None or not picture.is_file():  # VOC files often name the image without suffix
        picture = pictures.get(Path(filename).stem) or pictures.get(xml.stem)
    ref = str(picture or image_dir / (filename or f"{xml.stem}.jpg"))
    boxes: list[RawBox] = []
    for k, obj in enumerate(root.iter("object"), start=1):
        label = (obj.findtext("name") or "").strip()
        corners = [obj.findtext(f"bndbox/{c}") for c in ("xmin", "ymin", "xmax", "ymax")]
        try:
            x1, y1, x2, y2 = (float(v) for v in corners)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise InvalidDataset(f"{xml} object {k} ({label!r}): bndbox needs numeric "
                                 f"xmin/ymin/xmax/ymax, got {corners}") from None
        if not label:
            raise InvalidDataset(f"{xml} object {k}: the object has no <name>")
        boxes.append((x1, y1, x2, y2, label))
    return RawImage(ref=ref, boxes=boxes, size=_size(root),
                    meta={"image_id": xml.stem, "annotation": str(xml)})


def _size(root: ET.Element) -> tuple[int, int] | None:
    try:
        w, h = int(float(root.findtext("size/width") or 0)), int(float(root.findtext("size/height") or 0))
    except ValueError:
        return None
    return (w, h) if w > 0 and h > 0 else None
