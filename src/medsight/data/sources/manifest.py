"""Datasets described by a CSV or Parquet manifest: ``path,label[,patient_id][,study_id][,split]``.

Relative paths resolve against the manifest's folder (or ``root``); every named file must exist,
and the error lists the missing ones with their manifest rows. Extra columns are kept in each
record's ``meta``. Empty labels make unlabelled records (for semi-supervised training).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import split_ref
from medsight.data.sources.labels import (
    check_task_classes,
    clean_cell,
    encode_flag_columns,
    encode_multilabel,
    encode_single,
    infer_task,
    parse_task,
    resolve_positive,
)
from medsight.errors import InvalidDataset

if TYPE_CHECKING:  # imported when a manifest is read, not with every `medsight.data` import
    import pandas as pd

SPLIT_NAMES = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}
_MAX_LISTED = 5


def read_table(path: Path) -> pd.DataFrame:
    """Read a CSV or Parquet table with every cell as text (or None), naming the file on error."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
            return frame.astype(object).where(frame.notna(), None)
        if suffix in (".csv", ".tsv", ".txt"):
            sep = "\t" if suffix == ".tsv" else ","
            return pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InvalidDataset(f"manifest {path} does not exist") from None
    except Exception as exc:  # parser errors from pandas/pyarrow
        raise InvalidDataset(f"cannot read manifest {path}: {type(exc).__name__}: {exc}") from exc
    raise InvalidDataset(f"manifest {path}: unsupported format {suffix!r}; use .csv or .parquet")


def from_manifest(
    path: str | os.PathLike[str],
    root: str | os.PathLike[str] | None = None,
    task: Task | str | None = None,
    label_column: str = "label",
    label_columns: Sequence[str] | None = None,
    path_column: str = "path",
    patient_column: str = "patient_id",
    study_column: str = "study_id",
    split_column: str = "split",
    classes: Sequence[str] | None = None,
    positive: str | int | None = None,
    multilabel_sep: str = "|",
    name: str | None = None,
) -> Dataset:
    """Build a dataset from a manifest table.

    Labels in ``label_column`` are class names or integer indices (classes "0".."max" unless
    ``classes`` names them); ``"a|b"`` lists make a multilabel task, as does
    ``label_columns=[...]`` (one 0/1 column per label). Without ``task``: 2 classes -> binary,
    more -> multiclass. A path may also be a registered reference (``npz:...#train_images/3``).
    """
    mpath = Path(path).expanduser()
    frame = read_table(mpath)
    base = Path(root).expanduser() if root is not None else mpath.resolve().parent
    where = [f"{mpath} row {i + 1}" for i in range(len(frame))]
    if frame.empty:
        raise InvalidDataset(f"manifest {mpath} has no rows")

    label_cols = list(label_columns) if label_columns else [label_column]
    _require_columns(frame, mpath, [path_column, *label_cols])

    refs = _resolve_paths(frame[path_column].tolist(), base, mpath)
    kind = parse_task(task)

    if label_columns:
        if kind not in (None, Task.MULTILABEL):
            raise InvalidDataset(f"{mpath}: label_columns means a multilabel task, not {task!r}")
        rows = [[clean_cell(v) for v in row] for row in frame[label_cols].itertuples(index=False)]
        labels: list[Any] = encode_flag_columns(rows, label_cols, where)
        names = [str(c) for c in (classes or label_cols)]
        if len(names) != len(label_cols):
            raise InvalidDataset(f"{mpath}: {len(names)} class names for {len(label_cols)} columns")
        kind = Task.MULTILABEL
    else:
        raw = [clean_cell(v) for v in frame[label_column].tolist()]
        multilabel = kind is Task.MULTILABEL or (
            kind is None and any(v is not None and multilabel_sep in v for v in raw)
        )
        if multilabel:
            labels, names = encode_multilabel(raw, classes, where, multilabel_sep)
            kind = Task.MULTILABEL
        else:
            labels, names = encode_single(raw, classes, where)
            kind = kind or infer_task(len(names))
    check_task_classes(kind, names, str(mpath))

    known = {path_column, *label_cols, patient_column, study_column, split_column}
    extra = [c for c in frame.columns if c not in known]
    patients = _optional_column(frame, patient_column)
    studies = _optional_column(frame, study_column)
    splits = [
        _split_name(s, w) for s, w in zip(_optional_column(frame, split_column), where, strict=True)
    ]
    extras = frame[extra].to_dict("records") if extra else [{}] * len(frame)

    records = [
        Record(
            ref=refs[i],
            label=labels[i],
            patient_id=patients[i],
            study_id=studies[i],
            split=splits[i],
            meta={"manifest_row": i + 1, **{k: _typed(v) for k, v in extras[i].items()}},
        )
        for i in range(len(frame))
    ]
    return Dataset(
        records,
        kind,
        names,
        name=name or mpath.stem,
        positive_class=resolve_positive(names, positive, str(mpath))
        if kind is Task.BINARY
        else None,
    )


def _typed(value: Any) -> int | float | str | None:
    """An extra column's cell as int or float when it reads as a number, else text."""
    text = clean_cell(value)
    if text is None:
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            continue
    return text


def _require_columns(frame: pd.DataFrame, mpath: Path, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise InvalidDataset(
            f"manifest {mpath} lacks column(s) {missing}; it has {list(frame.columns)}"
        )


def _optional_column(frame: pd.DataFrame, column: str) -> list[str | None]:
    if column not in frame.columns:
        return [None] * len(frame)
    return [clean_cell(v) for v in frame[column].tolist()]


def _split_name(value: str | None, where: str) -> str | None:
    if value is None:
        return None
    split = SPLIT_NAMES.get(value.lower())
    if split is None:
        raise InvalidDataset(f"{where}: split {value!r} is not one of train/val/test")
    return split


def _resolve_paths(values: list[Any], base: Path, mpath: Path) -> list[str]:
    """Absolute file paths (registered references such as ``npz:`` kept as they are)."""
    refs: list[str] = []
    missing: list[str] = []
    for i, value in enumerate(values):
        text = clean_cell(value)
        if text is None:
            raise InvalidDataset(f"{mpath} row {i + 1}: empty path")
        scheme, rest = split_ref(text)
        if scheme is not None:
            refs.append(text)
            continue
        file = Path(rest).expanduser()
        if not file.is_absolute():
            file = base / file
        if not file.is_file():
            missing.append(f"{file} (row {i + 1})")
        refs.append(str(file))
    if missing:
        listed = "; ".join(missing[:_MAX_LISTED])
        more = f" and {len(missing) - _MAX_LISTED} more" if len(missing) > _MAX_LISTED else ""
        raise InvalidDataset(
            f"manifest {mpath} names {len(missing)} missing file(s): {listed}{more}"
        )
    return refs
