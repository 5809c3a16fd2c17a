"""`QualityReport`: what a data check found, as JSON-ready data (the cli renders it for a terminal).

Every finding names the records involved (index, reference, split, label, patient) so a user can
look at the files and fix the dataset; nothing is summarised away into a bare count.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from medsight.data.box_import import BoxImportReport
    from medsight.data.quality.box_stats import BoxStats

__all__ = [
    "DuplicateGroup",
    "ImageSummary",
    "LeakageFinding",
    "QualityReport",
    "RecordInfo",
    "UnreadableEntry",
]


def _label_json(label: Any) -> Any:
    if isinstance(label, tuple):
        return [int(v) for v in label]
    return None if label is None else int(label)


@dataclass(frozen=True)
class RecordInfo:
    """The identity of one record inside a finding."""

    index: int
    ref: str
    split: str | None
    label: Any = None
    label_name: str | None = None
    patient_id: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "ref": self.ref,
            "split": self.split,
            "label": _label_json(self.label),
            "label_name": self.label_name,
            "patient_id": self.patient_id,
        }


def _splits_of(members: list[RecordInfo]) -> list[str]:
    return sorted({m.split for m in members if m.split is not None})


def _labels_conflict(members: list[RecordInfo]) -> bool:
    labels = {m.label for m in members if m.label is not None}
    return len(labels) > 1


@dataclass
class UnreadableEntry:
    """A record whose pixels could not be decoded, and why."""

    record: RecordInfo
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.record.to_dict(), "reason": self.reason}


@dataclass
class DuplicateGroup:
    """Records showing the same image: ``exact`` (same decoded pixels) or ``near`` (the same
    picture, confirmed on pixels; see `near_groups`).

    ``identical_bytes`` is True when every member is a file with the very same bytes;
    ``max_distance`` is the largest pHash Hamming distance and ``max_difference`` the largest
    thumbnail difference between two members (both 0 for exact).
    """

    kind: str
    key: str
    members: list[RecordInfo]
    identical_bytes: bool = False
    max_distance: int = 0
    max_difference: float = 0.0

    @property
    def splits(self) -> list[str]:
        return _splits_of(self.members)

    @property
    def crosses_splits(self) -> bool:
        return len(self.splits) > 1

    @property
    def conflicting_labels(self) -> bool:
        return _labels_conflict(self.members)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "size": len(self.members),
            "splits": self.splits,
            "crosses_splits": self.crosses_splits,
            "conflicting_labels": self.conflicting_labels,
            "identical_bytes": self.identical_bytes,
            "max_distance": self.max_distance,
            "max_difference": self.max_difference,
            "members": [m.to_dict() for m in self.members],
        }


@dataclass
class LeakageFinding:
    """One leak between splits: a ``patient`` in several splits, or an ``exact_duplicate`` /
    ``near_duplicate`` image in several splits. ``key`` is the patient id or the image hash."""

    kind: str
    key: str
    members: list[RecordInfo]

    @property
    def splits(self) -> list[str]:
        return _splits_of(self.members)

    @property
    def conflicting_labels(self) -> bool:
        return self.kind != "patient" and _labels_conflict(self.members)

    def describe(self) -> str:
        """One line naming the leak, its splits and its records."""
        per_split = ", ".join(
            f"{s}: " + ", ".join(f"#{m.index} {m.ref}" for m in self.members if m.split == s)
            for s in self.splits
        )
        what = {
            "patient": f"patient {self.key!r}",
            "exact_duplicate": "identical image",
            "near_duplicate": "near-identical image",
        }.get(self.kind, self.kind)
        conflict = " (conflicting labels)" if self.conflicting_labels else ""
        return f"{what} in {' and '.join(self.splits)}{conflict} -> {per_split}"

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "key": self.key,
            "splits": self.splits,
            "conflicting_labels": self.conflicting_labels,
            "members": [m.to_dict() for m in self.members],
        }


@dataclass
class ImageSummary:
    """Sizes, channels, modalities and pixel spacing of the readable images."""

    shapes: dict[str, int] = field(default_factory=dict)
    channels: dict[str, int] = field(default_factory=dict)
    dims: dict[str, int] = field(default_factory=dict)
    modalities: dict[str, int] = field(default_factory=dict)
    spacing: dict[str, dict[str, list[float]]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shapes": dict(self.shapes),
            "channels": dict(self.channels),
            "dims": dict(self.dims),
            "modalities": dict(self.modalities),
            "spacing": {k: {s: list(v) for s, v in d.items()} for k, d in self.spacing.items()},
        }


@dataclass
class QualityReport:
    """Everything `check_dataset` found about one dataset."""

    dataset: str
    n_records: int
    task: str
    classes: list[str]
    split_counts: dict[str, int]
    class_counts: dict[str, dict[str, int]]
    unreadable: list[UnreadableEntry]
    exact_duplicates: list[DuplicateGroup]
    near_duplicates: list[DuplicateGroup]
    leakage: list[LeakageFinding]
    images: ImageSummary
    near_duplicate_threshold: int | None = None
    pixel_tolerance: float | None = None
    boxes: BoxStats | None = None  # detection datasets: box statistics
    box_import: BoxImportReport | None = None  # what importing the box annotations found

    # -- verdicts ----------------------------------------------------------------------------
    @property
    def has_leakage(self) -> bool:
        """Confirmed leakage: a patient, or an identical image, in two splits.

        Near-duplicate images across splits are *possible* leakage (repeat captures, or merely
        similar anatomy): listed for a person to review, but not a failure of ``--strict``.
        """
        return any(f.kind != "near_duplicate" for f in self.leakage)

    @property
    def possible_leakage(self) -> list[LeakageFinding]:
        """Near-duplicate images that span splits: to review by eye."""
        return self.leakage_of("near_duplicate")

    @property
    def has_unreadable(self) -> bool:
        return bool(self.unreadable)

    @property
    def label_conflicts(self) -> list[DuplicateGroup]:
        """Identical images (exact duplicates) that carry different labels."""
        return [g for g in self.exact_duplicates if g.conflicting_labels]

    @property
    def has_label_conflicts(self) -> bool:
        return bool(self.label_conflicts)

    def leakage_of(self, kind: str) -> list[LeakageFinding]:
        return [f for f in self.leakage if f.kind == kind]

    def summary(self) -> dict[str, int]:
        """The counts every view of the check shows (terminal, HTML report, metrics.json), so
        they cannot disagree; ``leakage`` counts confirmed findings, not ``possible_leakage``."""
        return {
            "unreadable": len(self.unreadable),
            "exact_duplicate_groups": len(self.exact_duplicates),
            "near_duplicate_groups": len(self.near_duplicates),
            "leakage": len(self.leakage) - len(self.possible_leakage),
            "possible_leakage": len(self.possible_leakage),
            "label_conflicts": len(self.label_conflicts),
        }

    # -- serialisation -----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the whole report."""
        return {
            "dataset": self.dataset,
            "n_records": self.n_records,
            "task": self.task,
            "classes": list(self.classes),
            "split_counts": dict(self.split_counts),
            "class_counts": {s: dict(c) for s, c in self.class_counts.items()},
            "unreadable": [u.to_dict() for u in self.unreadable],
            "exact_duplicates": [g.to_dict() for g in self.exact_duplicates],
            "near_duplicates": [g.to_dict() for g in self.near_duplicates],
            "near_duplicate_threshold": self.near_duplicate_threshold,
            "pixel_tolerance": self.pixel_tolerance,
            "leakage": [f.to_dict() for f in self.leakage],
            "label_conflicts": [g.to_dict() for g in self.label_conflicts],
            "images": self.images.to_dict(),
            "boxes": None if self.boxes is None else self.boxes.to_dict(),
            "box_import": None if self.box_import is None else self.box_import.to_dict(),
            "summary": self.summary(),
            "verdict": {
                "has_leakage": self.has_leakage,
                "has_unreadable": self.has_unreadable,
                "has_label_conflicts": self.has_label_conflicts,
            },
        }
