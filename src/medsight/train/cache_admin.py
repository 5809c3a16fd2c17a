"""Inspecting and pruning the disk image cache folder (`disk_cache`): it only grows, one pool per
preprocessing chain tried, so its pools are listed and the least recently used ones removed.

A pool is removed only under an exclusive lock of its in-use file, which every training using the
pool (building it or reading it) holds shared while its cache lives, and by renaming it out of sight
first, so no reader ever sees a half-deleted pool; one that opens it meanwhile makes it again.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from medsight.errors import InvalidConfig
from medsight.train.disk_cache import IN_USE, INDEX, LAST_USED, default_cache_dir

POOL_NAME = re.compile(r"[0-9a-f]{32}")  # disk_cache names a pool by its key's first 32 hex digits
TRASH = ".trash-"  # a pool being deleted: renamed out of sight first


@dataclass(frozen=True)
class PoolInfo:
    """One pool of the cache: its readable segments and rows, its bytes on disk (every file,
    damaged segments included), when a training last used it and whether a build is running or
    was killed (a ``.tmp-*`` folder)."""

    key: str
    path: Path
    segments: int
    rows: int
    bytes: int
    last_used: datetime
    building: bool


@dataclass(frozen=True)
class PruneReport:
    """What `prune_cache` removed (or, under `dry_run`, would remove), the pools it had to keep
    because they are in use (a training holds them, or opened them after they were listed), and
    the bytes the cache holds afterwards."""

    removed: list[PoolInfo]
    in_use: list[PoolInfo]
    remaining: int
    dry_run: bool

    @property
    def freed(self) -> int:
        """Bytes on disk of the removed pools."""
        return sum(p.bytes for p in self.removed)


def cache_pools(cache_dir: str | Path | None = None) -> list[PoolInfo]:
    """The pools of `cache_dir` (default: `default_cache_dir()`), least recently used first; none
    when the folder does not exist. A folder holding anything but pools is refused."""
    pools, _ = _entries(_root(cache_dir))
    return sorted((_pool_info(p) for p in pools), key=lambda p: p.last_used)


def prune_cache(cache_dir: str | Path | None = None, *, max_bytes: int | None = None,
                older_than: timedelta | None = None, dry_run: bool = False) -> PruneReport:
    """Remove whole pools, least recently used first, until the cache holds at most `max_bytes`,
    and every pool not used for `older_than`. A pool a training holds is kept and reported in
    use; `dry_run` only says what would go."""
    if max_bytes is None and older_than is None:
        raise InvalidConfig("say what to prune: a maximum size (max_bytes) and/or an age "
                            "(older_than)")
    root = _root(cache_dir)
    pools, trash = _entries(root)
    if not dry_run:
        for folder in trash:  # left by a prune that was killed; no reader can see them
            shutil.rmtree(folder, ignore_errors=True)
    infos = sorted((_pool_info(p) for p in pools), key=lambda p: p.last_used)
    total = sum(p.bytes for p in infos)
    now = datetime.now(UTC)
    removed, in_use = [], []
    for pool in infos:
        stale = older_than is not None and now - pool.last_used > older_than
        over = max_bytes is not None and total > max_bytes
        if not (stale or over):
            continue
        if _remove(root, pool, dry_run):
            removed.append(pool)
            total -= pool.bytes
        else:
            in_use.append(pool)
    return PruneReport(removed, in_use, total, dry_run)


def _root(cache_dir: str | Path | None) -> Path:
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def _entries(root: Path) -> tuple[list[Path], list[Path]]:
    """The pool folders and leftover trash folders of `root`; anything else (a file, a symlink,
    a folder of another name) means `root` is no medsight cache, and it is refused."""
    if not root.exists():
        return [], []
    if not root.is_dir():
        raise InvalidConfig(f"{root} is not a medsight image cache folder: it is not a folder")
    pools, trash, foreign = [], [], []
    with os.scandir(root) as entries:
        for entry in entries:
            real_dir = entry.is_dir(follow_symlinks=False)
            if real_dir and POOL_NAME.fullmatch(entry.name):
                pools.append(Path(entry.path))
            elif real_dir and entry.name.startswith(TRASH):
                trash.append(Path(entry.path))
            else:
                foreign.append(entry.name)
    if foreign:
        names = ", ".join(sorted(foreign)[:5]) + (", ..." if len(foreign) > 5 else "")
        raise InvalidConfig(
            f"{root} is not a medsight image cache folder: it holds {names}, while a cache holds "
            "only pool folders named by 32 hex digits; nothing was changed (check --cache-dir)")
    return pools, trash


def _pool_info(pool: Path) -> PoolInfo:
    segments, rows, created = 0, 0, []
    for index in pool.glob(f"seg-*/{INDEX}"):
        try:
            meta = json.loads(index.read_text())
            rows += len(meta["keys"])
            created.append(float(meta["created"]))
            segments += 1
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged segment: disk_cache ignores it, here only its bytes count
    used = _last_used(pool)
    if not used:  # last used before pools recorded it: its newest segment (or the folder's mtime)
        used = max(created, default=os.stat(pool, follow_symlinks=False).st_mtime)
    return PoolInfo(pool.name, pool, segments, rows, _bytes(pool),
                    datetime.fromtimestamp(used, UTC), any(pool.glob(".tmp-*")))


def _last_used(pool: Path) -> float:
    """The mtime of the pool's last-used file (0 when it has none)."""
    try:
        return os.stat(pool / LAST_USED, follow_symlinks=False).st_mtime
    except FileNotFoundError:
        return 0.0


def _bytes(folder: Path) -> int:
    """The sizes of every file under `folder`, symlinks not followed."""
    total = 0
    for parent, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.stat(os.path.join(parent, name), follow_symlinks=False).st_size
            except FileNotFoundError:  # a build renamed or removed it meanwhile
                continue
    return total


def _remove(root: Path, pool: PoolInfo, dry_run: bool) -> bool:
    """Remove `pool` (under `dry_run`: only check that it could be) unless a training holds it or
    used it since it was listed; True when it was (or could be) removed."""
    fd = os.open(pool.path / IN_USE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # held by a training (or locks unsupported: one cannot be ruled out)
            return False
        if datetime.fromtimestamp(_last_used(pool.path), UTC) > pool.last_used:
            return False  # a training opened it since it was listed
        if dry_run:
            return True
        trash = root / f"{TRASH}{pool.key}-{uuid.uuid4().hex[:8]}"
        os.rename(pool.path, trash)
    finally:
        os.close(fd)
    shutil.rmtree(trash)
    return True
