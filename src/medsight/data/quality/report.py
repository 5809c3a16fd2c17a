"""`QualityReport`: what a data check found, as JSON-ready data and as a readable terminal summary.

Every finding names the records involved (index, reference, split, label, patient) so a user can
look at the files and fix the dataset; nothing is summarised away into a bare count.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.table import Table

__all__ = [
    "DuplicateGroup",
    "ImageSummary",
    "LeakageFinding",
    "QualityReport",
    "RecordInfo",
    "UnreadableEntry",
]

_SHOW = 10  # rows per table in the terminal summary; to_dict() always has everything
_MEMBERS = 4  # records shown per finding in the terminal summary


def short_ref(ref: str) -> str:
    """A reference shortened for a terminal: scheme, parent folder and file name (+ ``#part``)."""
    head, sep, frag = ref.partition("#")
    scheme, colon, path = head.partition(":")
    if not colon or len(scheme) < 2 or "/" in scheme or "\\" in scheme:  # a plain path
        scheme, colon, path = "", "", head
    name = "/".join(path.replace("\\", "/").rstrip("/").split("/")[-2:]).lstrip("/") or path
    return f"{scheme}{colon}{name}{sep}{frag}"


def _members_text(members: list[RecordInfo]) -> str:
    text = "\n".join(f"#{m.index} {m.split or '-'}:{short_ref(m.ref)}" for m in members[:_MEMBERS])
    if len(members) > _MEMBERS:
        text += f"\n... {len(members) - _MEMBERS} more"
    return text


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
    """Records showing the same image: ``exact`` (same decoded pixels) or ``near`` (pHash).

    ``identical_bytes`` is True when every member is a file with the very same bytes;
    ``max_distance`` is the largest pHash Hamming distance that joined the group (0 for exact).
    """

    kind: str
    key: str
    members: list[RecordInfo]
    identical_bytes: bool = False
    max_distance: int = 0

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
            "leakage": [f.to_dict() for f in self.leakage],
            "label_conflicts": [g.to_dict() for g in self.label_conflicts],
            "images": self.images.to_dict(),
            "verdict": {
                "has_leakage": self.has_leakage,
                "n_possible_leakage": len(self.possible_leakage),
                "has_unreadable": self.has_unreadable,
                "has_label_conflicts": self.has_label_conflicts,
                "n_exact_duplicate_groups": len(self.exact_duplicates),
                "n_near_duplicate_groups": len(self.near_duplicates),
            },
        }

    # -- terminal ----------------------------------------------------------------------------
    def render(self, console: Console | None = None) -> None:
        """Print the summary as rich tables on `console` (a new stdout console when None)."""
        console = console or Console()
        for item in self._renderables():
            console.print(item)

    def to_text(self, width: int = 110) -> str:
        """The same summary as plain text (no colour codes)."""
        buf = io.StringIO()
        console = Console(file=buf, width=width, force_terminal=False, color_system=None)
        self.render(console)
        return buf.getvalue()

    def _renderables(self) -> list[Any]:
        out: list[Any] = [
            f"[bold]Data quality: {self.dataset}[/bold] — {self.n_records} records, "
            f"task {self.task}, classes {self.classes}"
        ]
        out.append(self._counts_table())
        out.append(self._unreadable_section())
        out.extend(self._duplicates_section())
        out.extend(self._leakage_section())
        out.append(self._images_table())
        out.append(self._verdict())
        return [o for o in out if o is not None]

    def _counts_table(self) -> Table:
        cols = [*self.classes, "unlabelled"]
        t = Table(title="Records per split and class")
        t.add_column("split")
        for c in cols:
            t.add_column(c, justify="right")
        t.add_column("total", justify="right")
        for split, total in self.split_counts.items():
            counts = self.class_counts.get(split, {})
            t.add_row(split, *(str(counts.get(c, 0)) for c in cols), str(total))
        return t

    def _unreadable_section(self) -> Any:
        if not self.unreadable:
            return "Unreadable images: none"
        t = Table(title=f"Unreadable images: {len(self.unreadable)} (not used, listed here)")
        for c in ("#", "split", "ref", "reason"):
            t.add_column(c, overflow="fold")
        for u in self.unreadable[:_SHOW]:
            t.add_row(str(u.record.index), str(u.record.split), short_ref(u.record.ref), u.reason)
        if len(self.unreadable) > _SHOW:
            t.add_row("...", "", f"{len(self.unreadable) - _SHOW} more in the JSON report", "")
        return t

    def _group_table(self, title: str, groups: list[DuplicateGroup]) -> Table:
        t = Table(title=title)
        for c in ("size", "splits", "labels"):
            t.add_column(c, overflow="fold")
        t.add_column("records", overflow="fold", no_wrap=True, ratio=1)
        for g in groups[:_SHOW]:
            labels = sorted({str(m.label_name) for m in g.members if m.label is not None})
            mark = " [red](conflict)[/red]" if g.conflicting_labels else ""
            t.add_row(
                str(len(g.members)),
                ",".join(g.splits),
                " | ".join(labels) + mark,
                _members_text(g.members),
            )
        if len(groups) > _SHOW:
            t.add_row("...", "", "", f"{len(groups) - _SHOW} more groups in the JSON report")
        return t

    def _duplicates_section(self) -> list[Any]:
        out: list[Any] = []
        n_exact = sum(len(g.members) for g in self.exact_duplicates)
        if self.exact_duplicates:
            out.append(
                self._group_table(
                    f"Exact duplicates: {len(self.exact_duplicates)} groups, {n_exact} records",
                    self.exact_duplicates,
                )
            )
        else:
            out.append("Exact duplicates: none")
        if self.near_duplicate_threshold is None:
            out.append("Near duplicates: not checked")
        elif self.near_duplicates:
            n_near = sum(len(g.members) for g in self.near_duplicates)
            out.append(
                self._group_table(
                    f"Near duplicates (pHash distance <= {self.near_duplicate_threshold}): "
                    f"{len(self.near_duplicates)} groups, {n_near} records",
                    self.near_duplicates,
                )
            )
        else:
            out.append(f"Near duplicates (pHash distance <= {self.near_duplicate_threshold}): none")
        if self.label_conflicts:
            out.append(
                f"[red]Conflicting labels on identical images: {len(self.label_conflicts)} groups[/red]"
            )
        return out

    def _leakage_section(self) -> list[Any]:
        if not self.leakage:
            return ["Leakage between splits: none found"]
        kinds = {k: len(self.leakage_of(k)) for k in ("patient", "exact_duplicate", "near_duplicate")}
        t = Table(
            title="[red]Leakage between splits[/red]: "
            + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items() if n)
        )
        for c in ("kind", "key", "splits"):
            t.add_column(c, overflow="fold")
        t.add_column("records", overflow="fold", no_wrap=True, ratio=1)
        for f in self.leakage[:_SHOW]:
            refs = _members_text(f.members)
            kind = f.kind + (" [red](conflicting labels)[/red]" if f.conflicting_labels else "")
            key = f.key if f.kind == "patient" else f.key[:12]
            t.add_row(kind, key, ",".join(f.splits), refs)
        if len(self.leakage) > _SHOW:
            t.add_row("...", "", "", f"{len(self.leakage) - _SHOW} more in the JSON report")
        return [t]

    def _images_table(self) -> Table:
        t = Table(title="Images")
        t.add_column("property")
        t.add_column("values", overflow="fold")

        def top(d: dict[str, int], n: int = 6) -> str:
            items = sorted(d.items(), key=lambda kv: -kv[1])
            text = ", ".join(f"{k} ({v})" for k, v in items[:n])
            return text + (f", ... {len(items) - n} more" if len(items) > n else "") or "-"

        t.add_row("shapes", top(self.images.shapes))
        t.add_row("dimensions", top(self.images.dims))
        t.add_row("channels", top(self.images.channels))
        t.add_row("modalities", top(self.images.modalities))
        for dims, stats in self.images.spacing.items():
            t.add_row(
                f"spacing {dims} (mm)",
                " / ".join(
                    f"{name} " + "x".join(f"{v:g}" for v in stats[name]) for name in ("min", "median", "max")
                ),
            )
        return t

    def _verdict(self) -> str:
        parts = []
        parts.append("[red]LEAKAGE FOUND[/red]" if self.has_leakage else "[green]no leakage[/green]")
        if self.possible_leakage:
            parts.append(f"[yellow]{len(self.possible_leakage)} near-duplicate groups across splits "
                         "to review[/yellow]")
        if self.has_unreadable:
            parts.append(f"[yellow]{len(self.unreadable)} unreadable[/yellow]")
        if self.has_label_conflicts:
            parts.append(f"[red]{len(self.label_conflicts)} label conflicts[/red]")
        return "Verdict: " + ", ".join(parts)
