"""Class-per-folder image trees (``root/<class>/**/<file>``, optionally under train/val/test).

Only the file names are listed: pixels are read later, so unreadable files are found and named
by the quality check instead of disappearing here.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.sources.labels import (
    check_task_classes,
    natural_key,
    parse_task,
    resolve_positive,
)
from medsight.errors import InvalidDataset

log = logging.getLogger(__name__)

# Top-level folder names read as split names (lower-cased) -> the split they stand for.
SPLIT_FOLDERS = {
    "train": "train",
    "training": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
    "testing": "test",
}


def from_class_folders(
    root: str | os.PathLike[str],
    task: Task | str = "multiclass",
    extensions: Iterable[str] | None = None,
    positive: str | int | None = None,
    name: str | None = None,
) -> Dataset:
    """Build a dataset from ``root/<class>/...`` (or ``root/<split>/<class>/...``) folders.

    Every non-hidden file below a class folder is a sample unless ``extensions`` (e.g.
    ``[".png", ".dcm", ".nii.gz"]``, case-insensitive) restricts them. When every top-level
    folder is a split name (train/val/test and common spellings) those splits are kept.
    Classes are the folder names in natural order; for a binary task the positive class is
    ``positive`` (name or index) or the one not named like "normal"/"benign"/"negative"
    (else index 1).
    """
    base = Path(root).expanduser()
    if not base.is_dir():
        raise InvalidDataset(f"image folder {base} does not exist or is not a directory")
    kind = parse_task(task)
    if kind not in (Task.BINARY, Task.MULTICLASS, Task.ORDINAL):
        raise InvalidDataset(
            f"{base}: class folders give one label per image; task must be binary, multiclass "
            f"or ordinal, not {task!r}"
        )
    exts = None if extensions is None else {_norm_ext(e) for e in extensions}

    top = _visible_dirs(base)
    if top and all(d.name.lower() in SPLIT_FOLDERS for d in top):
        groups = [(SPLIT_FOLDERS[d.name.lower()], d) for d in top]
    else:
        groups = [(None, base)]

    found: list[tuple[str | None, str, Path]] = []  # (split, class, file)
    loose: list[Path] = []  # files outside any class folder: no label can be given to them
    for split, folder in groups:
        loose += [p for p in folder.iterdir() if p.is_file() and not _hidden(p.name)]
        for class_dir in _visible_dirs(folder):
            for f in visible_files(class_dir, exts):
                found.append((split, class_dir.name, f))
    if loose:
        log.warning(
            "%d file(s) under %s are outside any class folder and were not used: %s",
            len(loose),
            base,
            [p.relative_to(base).as_posix() for p in sorted(loose)[:5]],
        )

    classes = sorted({c for _, c, _ in found}, key=natural_key)
    if not classes:
        what = "image files" if _visible_dirs(base) else "class folders"
        raise InvalidDataset(
            f"no {what} found under {base}; expected {base}/<class>/<image files>"
            + (f" with extensions {sorted(exts)}" if exts else "")
        )
    where = str(base)
    check_task_classes(kind, classes, where)
    index = {c: i for i, c in enumerate(classes)}
    records = [
        Record(
            ref=str(f),
            label=index[c],
            split=split,
            meta={"relpath": f.relative_to(base).as_posix(), "class_folder": c},
        )
        for split, c, f in found
    ]
    return Dataset(
        records,
        kind,
        classes,
        name=name or base.name,
        positive_class=resolve_positive(classes, positive, where) if kind is Task.BINARY else None,
    )


def _norm_ext(ext: str) -> str:
    ext = ext.strip().lower()
    return ext if ext.startswith(".") else f".{ext}"


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.startswith("__MACOSX")


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(
        (p for p in folder.iterdir() if p.is_dir() and not _hidden(p.name)),
        key=lambda p: natural_key(p.name),
    )


def visible_files(folder: Path, exts: Iterable[str] | None = None) -> list[Path]:
    """All non-hidden files under `folder` (hidden folders pruned), in natural path order.

    ``exts`` keeps only names ending in one of them (lower-case, with the dot).
    """
    ends = None if exts is None else tuple(exts)
    out: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not _hidden(d)]
        for fn in filenames:
            if _hidden(fn):
                continue
            if ends is not None and not fn.lower().endswith(ends):
                continue
            out.append(Path(dirpath) / fn)
    return sorted(out, key=lambda p: [natural_key(part) for part in p.relative_to(folder).parts])
