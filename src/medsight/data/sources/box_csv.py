"""Box annotations in a CSV table: ``path,x1,y1,x2,y2,label``, one row per box, several rows per
image; a row whose box and label cells are empty is an image holding nothing.

Optional columns ``split``, ``patient_id``, ``width`` and ``height`` (the image size, else read
from the file's header) must agree across the rows of one image. Relative paths resolve against
the CSV's folder (or ``root``). Validation and the report come from `medsight.data.box_import`.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from medsight.data.box_import import (
    BoxImportReport,
    RawImage,
    build_detection_dataset,
    check_unknown_policy,
    resolve_image_path,
    split_name,
)
from medsight.data.dataset import Dataset
from medsight.data.sources.labels import clean_cell
from medsight.data.sources.manifest import read_table
from medsight.errors import InvalidDataset

BOX_COLUMNS = ("path", "x1", "y1", "x2", "y2", "label")
_PER_IMAGE = ("split", "patient_id", "width", "height")


def is_box_csv(path: str | os.PathLike[str]) -> bool:
    """True for a ``.csv`` whose header names every one of `BOX_COLUMNS`."""
    file = Path(path)
    if file.suffix.lower() != ".csv":
        return False
    try:
        with file.open(newline="") as fh:
            header = next(csv.reader(fh), [])
    except (OSError, UnicodeDecodeError):
        return False
    return set(BOX_COLUMNS) <= {h.strip() for h in header}


def from_box_csv(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    classes: Sequence[str] | None = None,
    unknown: str = "error",
    name: str | None = None,
) -> Dataset:
    """A detection dataset from a box CSV (classes: `classes` in that order, else sorted)."""
    check_unknown_policy(unknown)
    file = Path(path).expanduser().resolve()
    frame = read_table(file)
    missing = [c for c in BOX_COLUMNS if c not in frame.columns]
    if missing:
        raise InvalidDataset(f"box CSV {file} lacks column(s) {missing}; it needs {list(BOX_COLUMNS)}")
    base = Path(root).expanduser() if root is not None else file.parent
    extra = [c for c in _PER_IMAGE if c in frame.columns]
    images: dict[str, RawImage] = {}
    first_row: dict[str, tuple[int, dict[str, str | None]]] = {}
    for n, row in enumerate(frame.to_dict("records"), start=2):  # row 1 is the header
        where = f"{file} row {n}"
        value = clean_cell(row["path"])
        if value is None:
            raise InvalidDataset(f"{where}: empty path")
        ref = resolve_image_path(value, base)
        per_image = {c: clean_cell(row[c]) for c in extra}
        if ref not in images:
            images[ref] = _new_image(ref, per_image, where, n)
            first_row[ref] = (n, per_image)
        elif per_image != first_row[ref][1]:
            raise InvalidDataset(f"{where}: {', '.join(extra)} of {value} differ from row "
                                 f"{first_row[ref][0]} ({first_row[ref][1]} vs {per_image})")
        box = _box(row, where)
        if box is not None:
            images[ref].boxes.append(box)  # type: ignore[union-attr]
    if not images:
        raise InvalidDataset(f"box CSV {file} has no rows")
    return build_detection_dataset(list(images.values()), BoxImportReport(str(file), "csv"), classes,
                                   unknown, name=name or file.stem)


def _new_image(ref: str, cells: dict[str, str | None], where: str, row: int) -> RawImage:
    size = None
    if cells.get("width") or cells.get("height"):
        try:
            size = (int(float(cells["width"] or "")), int(float(cells["height"] or "")))
        except ValueError:
            raise InvalidDataset(f"{where}: width and height must both be numbers, got "
                                 f"{cells.get('width')!r} and {cells.get('height')!r}") from None
    return RawImage(ref=ref, boxes=[], size=size, split=split_name(cells.get("split"), where),
                    patient_id=cells.get("patient_id"), meta={"csv_row": row})


def _box(row: dict[str, Any], where: str) -> tuple[float, float, float, float, str] | None:
    cells = [clean_cell(row[c]) for c in BOX_COLUMNS[1:]]
    if all(c is None for c in cells):
        return None
    if any(c is None for c in cells):
        raise InvalidDataset(f"{where}: x1, y1, x2, y2 and label must all be given, or all be empty "
                             f"(an image with no objects); got {cells}")
    try:
        x1, y1, x2, y2 = (float(c) for c in cells[:4])  # type: ignore[arg-type]
    except ValueError:
        raise InvalidDataset(f"{where}: box corners must be numbers, got {cells[:4]}") from None
    return x1, y1, x2, y2, str(cells[4])
