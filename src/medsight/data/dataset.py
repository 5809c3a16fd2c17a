"""`Dataset`: a table of records (pixel reference, label, patient, study, split, metadata).

Pixels are read only when a sample is requested, through `medsight.data.refs.resolve`, so a
100k-image folder costs a table in memory, not the images. An optional LRU cache keeps recently
decoded images (bounded by count).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import numpy as np

from medsight.boxes import Boxes
from medsight.data.refs import resolve
from medsight.errors import InvalidDataset
from medsight.io.image import Image

if TYPE_CHECKING:  # pandas costs ~0.5 s to import: only `to_frame` needs it
    import pandas as pd


class Task(StrEnum):
    """What the labels mean: decides losses, metrics and stratification."""

    BINARY = "binary"
    MULTICLASS = "multiclass"
    MULTILABEL = "multilabel"
    ORDINAL = "ordinal"
    DETECTION = "detection"


Label = int | tuple[int, ...] | None


@dataclass(frozen=True)
class Record:
    """One sample: where its pixels are and what is known about it.

    ``label`` is a class index (binary, multiclass, ordinal), a tuple of 0/1 flags (multilabel)
    or None (unlabelled). ``split`` is ``train``/``val``/``test`` or None when not yet assigned.
    Detection records carry their annotations in ``boxes`` (None: not annotated, i.e. unlabelled;
    an empty `Boxes` is an image annotated as holding no object) and leave ``label`` None.
    """

    ref: str
    label: Label = None
    patient_id: str | None = None
    study_id: str | None = None
    split: str | None = None
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    boxes: Boxes | None = None

    @property
    def annotated(self) -> bool:
        """Whether the record carries its target: a label, or boxes for detection."""
        return self.label is not None or self.boxes is not None


@dataclass
class Sample:
    """A record with its decoded image."""

    image: Image
    record: Record

    @property
    def label(self) -> Label:
        return self.record.label


class Dataset(Sequence[Sample]):
    """An ordered collection of records plus the task and class names.

    ``classes`` names the label values (index i -> classes[i]); for multilabel the label names.
    ``positive_class`` (binary) is the index whose sensitivity clinicians read, e.g. *malignant*.
    """

    def __init__(
        self,
        records: Iterable[Record],
        task: Task | str,
        classes: Sequence[str],
        name: str = "dataset",
        positive_class: int | None = None,
        cache_size: int = 0,
    ):
        self.records: list[Record] = list(records)
        self.task = Task(task)
        self.classes = [str(c) for c in classes]
        self.name = name
        if self.task is Task.BINARY and positive_class is None:
            positive_class = 1
        self.positive_class = positive_class
        self.cache_size = cache_size
        self._cache: OrderedDict[str, Image] = OrderedDict()
        self._validate()

    # -- construction helpers -------------------------------------------------------------
    def _validate(self) -> None:
        n = len(self.classes)
        if self.task is Task.DETECTION:
            self._validate_boxes(n)
            return
        for r in self.records:
            if r.label is None:
                continue
            if self.task is Task.MULTILABEL:
                if not isinstance(r.label, tuple) or len(r.label) != n:
                    raise InvalidDataset(
                        f"{self.name}: multilabel record {r.ref} needs {n} flags, got {r.label!r}"
                    )
            elif not isinstance(r.label, (int, np.integer)) or not 0 <= int(r.label) < n:
                raise InvalidDataset(
                    f"{self.name}: label {r.label!r} of {r.ref} is not one of 0..{n - 1} "
                    f"(classes {self.classes})"
                )

    def _validate_boxes(self, n: int) -> None:
        for r in self.records:
            if r.label is not None:
                raise InvalidDataset(
                    f"{self.name}: detection record {r.ref} has a class label {r.label!r}; "
                    "detection targets live in Record.boxes"
                )
            if r.boxes is not None and len(r.boxes) and not (
                (r.boxes.label_array() >= 0).all() and (r.boxes.label_array() < n).all()
            ):
                raise InvalidDataset(
                    f"{self.name}: a box label of {r.ref} is not one of 0..{n - 1} "
                    f"(classes {self.classes})"
                )

    def _derive(self, records: Iterable[Record], name: str | None = None) -> Dataset:
        """A dataset over other records of the same task; it shares this one's image cache, so
        folds and splits of a cached dataset never decode an image twice."""
        derived = Dataset(
            records,
            self.task,
            self.classes,
            name=name or self.name,
            positive_class=self.positive_class,
            cache_size=self.cache_size,
        )
        derived._cache = self._cache
        return derived

    # -- sequence protocol ------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> Sample:  # type: ignore[override]
        if isinstance(i, slice):
            raise TypeError("use Dataset.subset(indices) for several samples")
        return Sample(self.image(i), self.records[i])

    def __iter__(self) -> Iterator[Sample]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"Dataset({self.name!r}, n={len(self)}, task={self.task.value}, "
            f"classes={self.classes}, splits={self.split_counts()})"
        )

    # -- pixels ---------------------------------------------------------------------------
    def image(self, i: int) -> Image:
        """Decode the image of record i (from the LRU cache, keyed by ref, when enabled)."""
        rec = self.records[i]
        if self.cache_size and rec.ref in self._cache:
            self._cache.move_to_end(rec.ref)
            return self._cache[rec.ref]
        img = resolve(rec.ref, rec.meta)
        if self.cache_size:
            self._cache[rec.ref] = img
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return img

    # -- views ------------------------------------------------------------------------------
    @property
    def labels(self) -> np.ndarray:
        """Labels as an array: (N,) ints for single-label tasks (-1 = unlabelled), (N, L) flags."""
        if self.task is Task.MULTILABEL:
            n = len(self.classes)
            return np.array(
                [r.label if r.label is not None else (-1,) * n for r in self.records], dtype=int
            ).reshape(len(self), n)
        return np.array([-1 if r.label is None else int(r.label) for r in self.records], dtype=int)

    @property
    def patient_ids(self) -> list[str | None]:
        return [r.patient_id for r in self.records]

    @property
    def splits(self) -> list[str | None]:
        return [r.split for r in self.records]

    def split_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for r in self.records:
            key = r.split or "unassigned"
            counts[key] = counts.get(key, 0) + 1
        return counts

    def subset(self, indices: Iterable[int], name: str | None = None) -> Dataset:
        return self._derive((self.records[int(i)] for i in indices), name)

    def split(self, name: str) -> Dataset:
        """The records whose split is `name` (e.g. ``"train"``); raises when there are none."""
        idx = [i for i, r in enumerate(self.records) if r.split == name]
        if not idx:
            raise InvalidDataset(
                f"{self.name} has no records in split {name!r}; splits present: {self.split_counts()}"
            )
        return self.subset(idx, f"{self.name}[{name}]")

    def with_splits(self, splits: Sequence[str | None]) -> Dataset:
        """A copy with the split of record i set to ``splits[i]``."""
        if len(splits) != len(self):
            raise ValueError(f"got {len(splits)} split names for {len(self)} records")
        return self._derive(replace(r, split=s) for r, s in zip(self.records, splits, strict=True))

    def labelled(self) -> Dataset:
        return self._derive(r for r in self.records if r.annotated)

    def concat(self, other: Dataset) -> Dataset:
        if other.task is not self.task or other.classes != self.classes:
            raise InvalidDataset(
                f"cannot join {self.name} ({self.task.value}, {self.classes}) with "
                f"{other.name} ({other.task.value}, {other.classes})"
            )
        return self._derive([*self.records, *other.records])

    def class_counts(self) -> dict[str, int]:
        """Records per class; for detection, boxes per class."""
        if self.task is Task.DETECTION:
            total = np.zeros(len(self.classes), dtype=np.int64)
            for r in self.records:
                if r.boxes is not None:
                    total += r.boxes.counts(len(self.classes))
            return {c: int(v) for c, v in zip(self.classes, total, strict=True)}
        if self.task is Task.MULTILABEL:
            lab = self.labels
            ok = lab[:, 0] >= 0 if len(lab) else np.zeros(0, bool)
            return {c: int(lab[ok, j].sum()) for j, c in enumerate(self.classes)}
        counts = {c: 0 for c in self.classes}
        for r in self.records:
            if r.label is not None:
                counts[self.classes[int(r.label)]] += 1
        return counts

    def to_frame(self) -> pd.DataFrame:
        """The record table as a DataFrame (metadata flattened into columns)."""
        import pandas as pd

        rows = []
        for r in self.records:
            row = {
                "ref": r.ref,
                "label": r.label,
                "patient_id": r.patient_id,
                "study_id": r.study_id,
                "split": r.split,
            }
            row.update({f"meta.{k}": v for k, v in r.meta.items() if np.isscalar(v)})
            rows.append(row)
        return pd.DataFrame(rows)
