"""The data-check report (`QualityReport`) as rich tables: what `data check` and `demo` print.

The library returns the findings as data; this module decides how they look on a terminal.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

if TYPE_CHECKING:  # only annotations: `medsight predict` starts without loading the data layer
    from medsight.data.quality import DuplicateGroup, QualityReport, RecordInfo

_SHOW = 10  # rows per table in the terminal summary; the JSON report always has everything
_MEMBERS = 4  # records shown per finding in the terminal summary


def render_quality(report: QualityReport, console: Console) -> None:
    """Print the summary of `report` as rich tables on `console`."""
    for item in _renderables(report):
        console.print(item)


def quality_text(report: QualityReport, width: int = 110) -> str:
    """The same summary as plain text (no colour codes)."""
    buf = io.StringIO()
    render_quality(report, Console(file=buf, width=width, force_terminal=False, color_system=None))
    return buf.getvalue()


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


def _renderables(r: QualityReport) -> list[Any]:
    out: list[Any] = [
        f"[bold]Data quality: {r.dataset}[/bold] — {r.n_records} records, "
        f"task {r.task}, classes {r.classes}"
    ]
    out.append(_counts_table(r))
    out.append(_unreadable_section(r))
    out.extend(_duplicates_section(r))
    out.extend(_leakage_section(r))
    out.append(_images_table(r))
    out.extend(_boxes_section(r))
    out.append(_verdict(r))
    return out


def _counts_table(r: QualityReport) -> Table:
    cols = [*r.classes, "unlabelled"]
    detection = r.boxes is not None
    t = Table(title="Boxes per split and class (unlabelled: images not annotated; total: images)"
              if detection else "Records per split and class")
    t.add_column("split")
    for c in cols:
        t.add_column(c, justify="right")
    t.add_column("total", justify="right")
    for split, total in r.split_counts.items():
        counts = r.class_counts.get(split, {})
        t.add_row(split, *(str(counts.get(c, 0)) for c in cols), str(total))
    return t


def _unreadable_section(r: QualityReport) -> Any:
    if not r.unreadable:
        return "Unreadable images: none"
    t = Table(title=f"Unreadable images: {len(r.unreadable)} (not used, listed here)")
    for c in ("#", "split", "ref", "reason"):
        t.add_column(c, overflow="fold")
    for u in r.unreadable[:_SHOW]:
        t.add_row(str(u.record.index), str(u.record.split), short_ref(u.record.ref), u.reason)
    if len(r.unreadable) > _SHOW:
        t.add_row("...", "", f"{len(r.unreadable) - _SHOW} more in the JSON report", "")
    return t


def _group_table(title: str, groups: list[DuplicateGroup]) -> Table:
    t = Table(title=title)
    for c in ("size", "splits", "labels"):
        t.add_column(c, overflow="fold")
    t.add_column("records", overflow="fold", no_wrap=True, ratio=1)
    for g in groups[:_SHOW]:
        labels = sorted({str(m.label_name) for m in g.members if m.label is not None})
        mark = " [red](conflict)[/red]" if g.conflicting_labels else ""
        t.add_row(str(len(g.members)), ",".join(g.splits), " | ".join(labels) + mark,
                  _members_text(g.members))
    if len(groups) > _SHOW:
        t.add_row("...", "", "", f"{len(groups) - _SHOW} more groups in the JSON report")
    return t


def _duplicates_section(r: QualityReport) -> list[Any]:
    out: list[Any] = []
    if r.exact_duplicates:
        n_exact = sum(len(g.members) for g in r.exact_duplicates)
        out.append(_group_table(f"Exact duplicates: {len(r.exact_duplicates)} groups, {n_exact} records",
                                r.exact_duplicates))
    else:
        out.append("Exact duplicates: none")
    if r.near_duplicate_threshold is None:
        out.append("Near duplicates: not checked")
    elif r.near_duplicates:
        n_near = sum(len(g.members) for g in r.near_duplicates)
        out.append(_group_table(f"Near duplicates (the same picture, {_near_rule(r)}): "
                                f"{len(r.near_duplicates)} groups, {n_near} records", r.near_duplicates))
    else:
        out.append(f"Near duplicates ({_near_rule(r)}): none")
    if r.label_conflicts:
        out.append(f"[red]Conflicting labels on identical images: {len(r.label_conflicts)} groups[/red]")
    return out


def _near_rule(r: QualityReport) -> str:
    return f"pHash distance <= {r.near_duplicate_threshold}, thumbnails within {r.pixel_tolerance:g} sd"


def _leakage_section(r: QualityReport) -> list[Any]:
    if not r.leakage:
        return ["Leakage between splits: none found"]
    kinds = {k: len(r.leakage_of(k)) for k in ("patient", "exact_duplicate", "near_duplicate")}
    t = Table(title="[red]Leakage between splits[/red]: "
              + ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in kinds.items() if n))
    for c in ("kind", "key", "splits"):
        t.add_column(c, overflow="fold")
    t.add_column("records", overflow="fold", no_wrap=True, ratio=1)
    for f in r.leakage[:_SHOW]:
        kind = f.kind + (" [red](conflicting labels)[/red]" if f.conflicting_labels else "")
        key = f.key if f.kind == "patient" else f.key[:12]
        t.add_row(kind, key, ",".join(f.splits), _members_text(f.members))
    if len(r.leakage) > _SHOW:
        t.add_row("...", "", "", f"{len(r.leakage) - _SHOW} more in the JSON report")
    return [t]


def _images_table(r: QualityReport) -> Table:
    t = Table(title="Images")
    t.add_column("property")
    t.add_column("values", overflow="fold")

    def top(d: dict[str, int], n: int = 6) -> str:
        items = sorted(d.items(), key=lambda kv: -kv[1])
        text = ", ".join(f"{k} ({v})" for k, v in items[:n])
        return text + (f", ... {len(items) - n} more" if len(items) > n else "") or "-"

    t.add_row("shapes", top(r.images.shapes))
    t.add_row("dimensions", top(r.images.dims))
    t.add_row("channels", top(r.images.channels))
    t.add_row("modalities", top(r.images.modalities))
    for dims, stats in r.images.spacing.items():
        t.add_row(f"spacing {dims} (mm)", " / ".join(
            f"{name} " + "x".join(f"{v:g}" for v in stats[name]) for name in ("min", "median", "max")))
    return t


def _boxes_section(r: QualityReport) -> list[Any]:
    """Detection datasets: what the annotation import found and the box statistics."""
    out: list[Any] = []
    imp = r.box_import
    if imp is not None:
        out.append(f"Box import: {imp.describe()}")
        shown = [*imp.issues, *(("missing image", m) for m in imp.missing_images)]
        if shown:
            t = Table(title="Boxes and images the import changed or left out")
            for c in ("kind", "image", "box", "label"):
                t.add_column(c, overflow="fold")
            for item in shown[:_SHOW]:
                if isinstance(item, tuple):
                    t.add_row(item[0], short_ref(item[1]), "", "")
                else:
                    box = ", ".join(f"{v:g}" for v in item.box)
                    t.add_row(item.kind.replace("_", " "), short_ref(item.image), box, escape(item.label))
            if len(shown) > _SHOW:
                t.add_row("...", f"{len(shown) - _SHOW} more in the JSON report", "", "")
            out.append(t)
    b = r.boxes
    if b is None:
        return out
    spread = b.per_image
    out.append(f"Boxes: {b.n_boxes} in {b.n_annotated} annotated images ({b.n_empty} empty, "
               f"{b.n_unannotated} not annotated); per image mean {spread['mean']:g}, "
               f"min {spread['min']}, max {spread['max']}")
    t = Table(title=escape("Boxes per class (sizes in pixels: median [q25-q75], min-max)"))
    for c in ("class", "boxes", "images", "per image mean (min-max)", "width", "height", "area"):
        t.add_column(c, justify="right" if c in ("boxes", "images") else "left")

    def size(q: dict[str, float] | None) -> str:
        if q is None:
            return "-"
        return f"{q['median']:.4g} [{q['q25']:.4g}-{q['q75']:.4g}], {q['min']:.4g}-{q['max']:.4g}"

    for c in b.classes:
        p = c.per_image
        t.add_row(c.name, str(c.count), str(c.images), f"{p['mean']:g} ({p['min']}-{p['max']})",
                  size(c.width), size(c.height), size(c.area))
    out.append(t)
    return out


def _verdict(r: QualityReport) -> str:
    """One line of counts, from `QualityReport.summary` like the HTML report's."""
    c = r.summary()
    parts = ["[red]LEAKAGE FOUND[/red]" if r.has_leakage else "[green]no leakage[/green]"]
    if c["possible_leakage"]:
        parts.append(f"[yellow]{c['possible_leakage']} near-duplicate groups across splits "
                     "to review[/yellow]")
    parts.append(f"{c['unreadable']} unreadable" if not c["unreadable"]
                 else f"[yellow]{c['unreadable']} unreadable[/yellow]")
    parts.append(f"{c['exact_duplicate_groups']} exact and {c['near_duplicate_groups']} near "
                 "duplicate groups")
    if c["label_conflicts"]:
        parts.append(f"[red]{c['label_conflicts']} label conflicts[/red]")
    return "Verdict: " + ", ".join(parts)
