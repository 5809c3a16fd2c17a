"""Turning raw label values (class names, integers, "a|b" lists) into class indices.

Shared by the folder, manifest and DICOM-directory sources so that every source orders classes,
infers the task and picks the positive class the same way.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from typing import Any

from medsight.data.dataset import Task
from medsight.errors import InvalidDataset

# Class names that usually mean "nothing found"; the other class of a binary task is positive.
NEGATIVE_NAMES = frozenset(
    {
        "normal",
        "negative",
        "benign",
        "healthy",
        "no",
        "false",
        "0",
        "absent",
        "no_finding",
        "no finding",
        "nofinding",
        "control",
        "clean",
    }
)
_INT = re.compile(r"^[+-]?\d+$")


def natural_key(text: str) -> tuple[Any, ...]:
    """Sort key that orders embedded numbers numerically ("class2" before "class10")."""
    return tuple(int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", text))


def clean_cell(value: Any) -> str | None:
    """A table cell as a stripped string, or None when empty/NaN (an unlabelled row)."""
    if value is None:
        return None
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if value.is_integer():
            return str(int(value))
    text = str(value).strip()
    return text or None


def parse_task(task: Task | str | None) -> Task | None:
    """Validate a task given by the caller (None means: infer it from the labels)."""
    if task is None:
        return None
    try:
        return Task(task)
    except ValueError:
        raise InvalidDataset(
            f"unknown task {task!r}; use one of {[t.value for t in Task]}"
        ) from None


def infer_task(n_classes: int, multilabel: bool = False) -> Task:
    """Two classes -> binary, more -> multiclass; multilabel when labels are lists."""
    if multilabel:
        return Task.MULTILABEL
    return Task.BINARY if n_classes == 2 else Task.MULTICLASS


def default_positive(classes: Sequence[str]) -> int:
    """Positive class of a binary task: the class that is not named like "normal"; else 1."""
    negatives = [i for i, c in enumerate(classes) if c.strip().lower() in NEGATIVE_NAMES]
    if len(classes) == 2 and len(negatives) == 1:
        return 1 - negatives[0]
    return 1


def resolve_positive(classes: Sequence[str], positive: str | int | None, where: str) -> int:
    """Index of the positive class, from a name, an index or the default rule."""
    if positive is None:
        return default_positive(classes)
    if isinstance(positive, int) and not isinstance(positive, bool):
        if 0 <= positive < len(classes):
            return positive
    elif str(positive) in classes:
        return list(classes).index(str(positive))
    raise InvalidDataset(f"{where}: positive class {positive!r} is not one of {list(classes)}")


def encode_single(
    values: Sequence[str | None],
    classes: Sequence[str] | None,
    where: Sequence[str],
) -> tuple[list[int | None], list[str]]:
    """Map raw single labels to indices; returns (labels, class names).

    With ``classes`` given, a value is a class name or an integer index into them. Without,
    all-integer values are indices (class names "0".."max"), otherwise the sorted distinct
    names are the classes. ``where[i]`` names row i in error messages.
    """
    present = [v for v in values if v is not None]
    if classes is not None:
        names = [str(c) for c in classes]
        lookup = {c: i for i, c in enumerate(names)}
        out: list[int | None] = []
        for v, w in zip(values, where, strict=True):
            if v is None:
                out.append(None)
            elif v in lookup:
                out.append(lookup[v])
            elif _INT.match(v) and 0 <= int(v) < len(names):
                out.append(int(v))
            else:
                raise InvalidDataset(f"{w}: label {v!r} is not one of the classes {names}")
        return out, names
    if present and all(_INT.match(v) for v in present):
        ints = [int(v) for v in present]
        if min(ints) < 0:
            bad = [w for v, w in zip(values, where, strict=True) if v is not None and int(v) < 0]
            raise InvalidDataset(f"{bad[0]}: negative class index; labels must be >= 0")
        names = [str(i) for i in range(max(ints) + 1)]
        return [None if v is None else int(v) for v in values], names
    names = sorted(set(present), key=natural_key)
    lookup = {c: i for i, c in enumerate(names)}
    return [None if v is None else lookup[v] for v in values], names


def encode_multilabel(
    values: Sequence[str | None],
    classes: Sequence[str] | None,
    where: Sequence[str],
    sep: str = "|",
) -> tuple[list[tuple[int, ...] | None], list[str]]:
    """Map "a|b" label lists to 0/1 flag tuples; None stays None (unlabelled)."""
    split = [None if v is None else [p.strip() for p in v.split(sep) if p.strip()] for v in values]
    if classes is None:
        names = sorted({p for parts in split if parts for p in parts}, key=natural_key)
    else:
        names = [str(c) for c in classes]
    lookup = {c: i for i, c in enumerate(names)}
    out: list[tuple[int, ...] | None] = []
    for parts, w in zip(split, where, strict=True):
        if parts is None:
            out.append(None)
            continue
        flags = [0] * len(names)
        for p in parts:
            if p not in lookup:
                raise InvalidDataset(f"{w}: label {p!r} is not one of the classes {names}")
            flags[lookup[p]] = 1
        out.append(tuple(flags))
    return out, names


def encode_flag_columns(
    rows: Iterable[Sequence[str | None]], columns: Sequence[str], where: Sequence[str]
) -> list[tuple[int, ...] | None]:
    """One 0/1 (or true/false) column per label -> flag tuples; an all-empty row is unlabelled."""
    truth = {"1": 1, "0": 0, "true": 1, "false": 0, "yes": 1, "no": 0}
    out: list[tuple[int, ...] | None] = []
    for cells, w in zip(rows, where, strict=True):
        if all(c is None for c in cells):
            out.append(None)
            continue
        flags = []
        for c, col in zip(cells, columns, strict=True):
            flag = None if c is None else truth.get(c.lower())
            if flag is None:
                raise InvalidDataset(
                    f"{w}: column {col!r} holds {c!r}; multi-label columns must be 0/1 "
                    "(empty only when the whole row is unlabelled)"
                )
            flags.append(flag)
        out.append(tuple(flags))
    return out


def check_task_classes(task: Task, classes: Sequence[str], where: str) -> None:
    """Raise when the number of classes cannot serve the task (e.g. binary with 3 classes)."""
    if task is Task.BINARY and len(classes) != 2:
        raise InvalidDataset(
            f"{where}: a binary task needs exactly 2 classes, found {len(classes)}: {list(classes)}"
            " (pass classes=[negative, positive] when one class is absent)"
        )
    if not classes:
        raise InvalidDataset(f"{where}: no labelled samples and no classes given")
