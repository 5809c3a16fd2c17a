"""`medsight cache list | prune`: see what the disk image cache holds and bound it (it only grows,
one pool per preprocessing chain tried)."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from medsight.cli.app import app, console

if TYPE_CHECKING:  # the library (and torch) loads when a cache command runs
    from medsight.train.cache_admin import PoolInfo

cache_app = typer.Typer(help="The disk image cache of training (cache: disk): list its pools, "
                             "prune the least recently used.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")

_SIZE_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_DURATION_UNITS = {"h": timedelta(hours=1), "d": timedelta(days=1), "w": timedelta(weeks=1)}
_AMOUNT = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """Bytes from e.g. ``500MB``, ``20GB`` (powers of 1000) or ``1.5GiB`` (powers of 1024)."""
    match = _AMOUNT.fullmatch(text)
    if match is None or match[2].lower() not in _SIZE_UNITS:
        raise typer.BadParameter(f"{text!r} is not a size: write e.g. 500MB, 20GB or 1.5GiB")
    return int(float(match[1]) * _SIZE_UNITS[match[2].lower()])


def parse_duration(text: str) -> timedelta:
    """A duration from e.g. ``12h``, ``30d`` or ``2w``."""
    match = _AMOUNT.fullmatch(text)
    if match is None or match[2].lower() not in _DURATION_UNITS:
        raise typer.BadParameter(f"{text!r} is not a duration: write e.g. 12h, 30d or 2w")
    return float(match[1]) * _DURATION_UNITS[match[2].lower()]


def _size(n: int) -> str:
    """`n` bytes in binary units (what `parse_size` reads back)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return f"{n} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def _pools(n: int) -> str:
    return f"{n} pool" if n == 1 else f"{n} pools"


def _pool_table(pools: list[PoolInfo], title: str) -> Table:
    table = Table("pool", "segments", "rows", "size", "last used", "note", title=title)
    for p in pools:
        table.add_row(p.key[:12], str(p.segments), str(p.rows), _size(p.bytes),
                      p.last_used.astimezone().strftime("%Y-%m-%d %H:%M"),
                      "build running or killed" if p.building else "")
    return table


CacheDirOpt = Annotated[Path | None, typer.Option(
    help="the image cache folder (default: $XDG_CACHE_HOME/medsight/images)")]


@cache_app.command("list")
def cache_list(cache_dir: CacheDirOpt = None) -> None:
    """List the cache's pools (one per preprocessing chain, cache dtype and medsight version),
    least recently used first."""
    from medsight.train.cache_admin import cache_pools
    from medsight.train.disk_cache import default_cache_dir

    root = cache_dir or default_cache_dir()
    pools = cache_pools(root)
    if not pools:
        console.print(f"no cached images in {root}")
        return
    console.print(_pool_table(pools, f"image cache {root}"))
    console.print(f"total: {_pools(len(pools))}, {sum(p.rows for p in pools)} rows, "
                  f"{_size(sum(p.bytes for p in pools))}")


@cache_app.command("prune")
def cache_prune(
    cache_dir: CacheDirOpt = None,
    max_size: Annotated[int | None, typer.Option(
        parser=parse_size, metavar="SIZE",
        help="remove the least recently used pools until the cache holds at most this, e.g. "
             "20GB, 500MB, 1.5GiB")] = None,
    older_than: Annotated[timedelta | None, typer.Option(
        parser=parse_duration, metavar="AGE",
        help="remove every pool not used for this long, e.g. 12h, 30d, 2w")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only show what would be removed")] = False,
) -> None:
    """Remove whole pools of the cache; a pool a running training uses is kept (reported in use)."""
    from medsight.train.cache_admin import prune_cache
    from medsight.train.disk_cache import default_cache_dir

    if max_size is None and older_than is None:
        raise typer.BadParameter("give --max-size and/or --older-than (what to prune)")
    root = cache_dir or default_cache_dir()
    report = prune_cache(root, max_bytes=max_size, older_than=older_than, dry_run=dry_run)
    verb = "would remove" if dry_run else "removed"
    if report.removed:
        console.print(_pool_table(report.removed, f"{verb} from {root}"))
    for pool in report.in_use:
        console.print(f"[yellow]kept[/] {pool.key[:12]} ({_size(pool.bytes)}): in use (a training "
                      "holds it, or opened it meanwhile)")
    console.print(f"{verb} {_pools(len(report.removed))}, {_size(report.freed)}; the cache "
                  f"{'would hold' if dry_run else 'holds'} {_size(report.remaining)}")
