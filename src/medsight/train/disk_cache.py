"""A memory-mapped disk cache of preprocessed training images, reused across runs and folds.

Rows live in immutable *segments* (``pixels.npy`` + an ``index.json`` sidecar) inside one *pool*
folder per (preprocessing chain's fingerprint, cache dtype, medsight version, format):
``<cache_dir>/<pool key>/seg-<key>/``. A record is found by its *record key*: a hash of its ref,
its meta and the identity (size and mtime in ns) of the file it names, so a later run, or another
fold's split of the same data, reuses every row already there and decodes only what it lacks; an
edited chain opens another pool, an edited file gets a new key. Size + mtime rather than a content
hash: hashing would read every file on every run (most of a decode's I/O), while any tool that
rewrites a file moves its mtime. Unreadable records are retried on every build (a codec installed
since may read them); the sidecar records the errors met when the segment was written, and, for
a detector's cache (its own pools, ``kind="detection"``), each row's boxes on the model grid.

A segment is written chunk by chunk into a temporary folder (peak memory: one chunk) and renamed
into place when complete, so a killed build never leaves a segment that is later trusted. Builders
of one pool serialise on a lock file (ranks on one node share the work: the later one reuses the
first's rows); where the lock is unavailable the first complete rename wins. A training holds a
shared lock on the pool's in-use file for as long as its cache lives, so `cache_admin`'s pruning
(which takes it exclusively before renaming a pool away) never removes a pool in use. Nothing
here assumes a folder shared between nodes: each node builds into its own `cache_dir` unless told
otherwise.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import logging
import os
import shutil
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import reduce
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.data.dataset import Dataset
from medsight.data.refs import split_ref
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.models.inputs import iter_arrays
from medsight.train.data import (
    CACHE_DTYPES,
    ImageCache,
    ImageTransform,
    LoadProgress,
    chunk_mode,
    decode,
    encode,
    widen,
)

FORMAT = 1
PIXELS = "pixels.npy"
INDEX = "index.json"
LAST_USED = "last-used"  # a pool's file whose mtime says when a training last used it (pruning)
IN_USE = "in-use"  # a pool's file its users flock shared while they use it (pruning takes it)
OPEN_TRIES = 20  # a pool renamed away (pruned) while being opened is made again, this often
STALE_S = 24 * 3600  # a temporary folder of another host older than this is a dead build
log = logging.getLogger(__name__)


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/medsight/images`` (``~/.cache/medsight/images`` when unset)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "medsight" / "images"


def prepare_cache_dir(cache_dir: str | Path | None) -> Path:
    """The cache folder, created private (0700); one every user may write is refused, since its
    pixels are trusted as training data."""
    path = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
    except OSError as exc:
        raise InvalidConfig(f"cannot create the image cache folder {path}: {exc}") from exc
    if path.stat().st_mode & 0o002:
        raise InvalidConfig(
            f"the image cache folder {path} is writable by every user, so anyone could change "
            "the training images; use a private folder (cache_dir), e.g. a subfolder made with "
            "mode 0700"
        )
    return path


def pool_key(preprocess: ImageTransform | None, dtype: str, kind: str | None = None) -> str:
    """sha256 of what decides a cached row's values: the chain's fingerprint (the sha256 of its
    saved JSON, as the bundle pins it), the cache dtype, the decoders' version (medsight's), this
    format and the kind of rows (None: images only; "detection": images with their boxes)."""
    from medsight import __version__

    if preprocess is None:
        chain = "none"
    elif hasattr(preprocess, "fingerprint"):
        chain = preprocess.fingerprint()
    else:
        raise InvalidConfig(
            "the disk image cache needs a medsight Preprocess chain (its saved definition keys "
            f"the cache), got {type(preprocess).__name__}; use cache='memory' for other callables"
        )
    fields = {"format": FORMAT, "medsight": __version__, "chain": chain, "dtype": dtype}
    if kind is not None:
        fields["kind"] = kind
    text = json.dumps(fields, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()


def record_keys(dataset: Dataset) -> list[str]:
    """One key per record: its ref, meta and the size + mtime of the file(s) it names."""
    memo: dict[str, Any] = {}
    keys = []
    for r in dataset.records:
        files = [f for f in [_file_of(r.ref)] if f is not None]
        listed = r.meta.get("files") if isinstance(r.meta, dict) else None
        if isinstance(listed, list):
            files += [f for f in listed if isinstance(f, str)]
        ident = [_stat(f, memo) for f in files]
        text = json.dumps([r.ref, r.meta, ident], sort_keys=True, default=str)
        keys.append(hashlib.sha256(text.encode()).hexdigest()[:32])
    return keys


def _file_of(ref: str) -> str | None:
    """The file (or folder) whose pixels a ref reads; None for generated pixels (phantom:)."""
    scheme, rest = split_ref(ref)
    if scheme is None:
        return rest
    if scheme == "region":
        return _file_of(rest.partition("|")[2])
    head, sep, tail = rest.partition("#")
    if not sep:
        return rest if os.path.exists(rest) else None
    if os.path.isdir(head):  # cifar:<folder>#<batch file>/<i>, series:<root>#<uid>
        member = os.path.join(head, tail.split("/")[0])
        return member if os.path.isfile(member) else head
    return head


def _stat(path: str, memo: dict[str, Any]) -> Any:
    if path not in memo:
        try:
            st = os.stat(path)
            memo[path] = [path, st.st_size, st.st_mtime_ns]
        except OSError as exc:
            memo[path] = [path, f"missing: {exc.strerror}"]
    return memo[path]


# -- segments ---------------------------------------------------------------------------------
@dataclass
class RowChunk:
    """Rows a build decoded: the readable ones' pixels ``x`` and their positions ``ok`` in the
    dataset being decoded, the unreadable ones' reasons by position, and per readable row an
    optional JSON payload kept with the segment (a detector's boxes on the model grid)."""

    x: np.ndarray
    ok: list[int]
    errors: dict[int, str]
    extras: list[Any] | None = None


RowProducer = Callable[[Dataset], Iterator[RowChunk]]


@dataclass
class Segment:
    """One complete, immutable block of cached rows (``keys[r]`` is row r's record key,
    ``extras[r]`` its payload when the pool keeps one)."""

    path: Path
    mode: str | None
    shape: tuple[int, ...]
    keys: list[str]
    extras: list[Any] | None = None

    def pixels(self) -> np.ndarray:
        """The rows, memory-mapped copy-on-write (pages are read from the file when touched)."""
        return np.load(self.path / PIXELS, mmap_mode="c", allow_pickle=False)[:len(self.keys)]


def _load_segments(pool: Path, key: str) -> list[Segment]:
    out = []
    for folder in sorted(pool.glob("seg-*")):
        try:
            meta = json.loads((folder / INDEX).read_text())
            if meta.get("format") != FORMAT or meta.get("pool") != key:
                raise ValueError("written for another pool or format")
            keys = list(meta["keys"])
            shape = tuple(int(s) for s in meta["shape"])
            extras = meta.get("extras")
            if extras is not None and len(extras) != len(keys):
                raise ValueError(f"{len(extras)} row payloads for {len(keys)} rows")
            if keys:
                stored = np.load(folder / PIXELS, mmap_mode="r", allow_pickle=False)
                if stored.shape[0] < len(keys) or tuple(stored.shape[1:]) != shape[1:]:
                    raise ValueError(f"{PIXELS} holds {stored.shape}, the index says {shape}")
            out.append(Segment(folder, meta["mode"], shape, keys, extras))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.warning("ignoring the damaged image cache segment %s: %s", folder, exc)
    return out


class _RowsWriter:
    """Appends encoded chunks to a ``.npy`` memmap of `capacity` rows, widening it if needed."""

    def __init__(self, path: Path, capacity: int):
        self.path = path
        self.capacity = capacity
        self.array: np.ndarray | None = None
        self.mode: str | None = None
        self.rows = 0

    def append(self, x: np.ndarray, mode: str) -> None:
        if self.array is None:
            self.mode = mode
            self.array = self._open(self.path, mode, x.shape[1:])
        elif tuple(x.shape[1:]) != tuple(self.array.shape[1:]):
            raise InvalidConfig(
                f"images differ in shape after preprocessing ({tuple(self.array.shape[1:])} and "
                f"{tuple(x.shape[1:])}); add a resize step to the preprocess chain, e.g. "
                "{'resize': {'size': [64, 64]}}"
            )
        elif mode != self.mode:
            assert self.mode is not None
            wider = widen(self.mode, mode)
            if wider != self.mode:
                self._rewrite(wider)
        assert self.mode is not None
        self.array[self.rows:self.rows + len(x)] = encode(x, self.mode)
        self.rows += len(x)

    def _open(self, path: Path, mode: str, sample: tuple[int, ...]) -> np.ndarray:
        return np.lib.format.open_memmap(path, mode="w+", dtype=_dtype(mode),
                                         shape=(self.capacity, *sample))

    def _rewrite(self, mode: str) -> None:
        """Re-encode the rows written so far in the wider `mode`, a block at a time."""
        old, old_mode = self.array, self.mode
        assert old is not None and old_mode is not None
        wide = self.path.with_name("wide.npy")
        new = self._open(wide, mode, old.shape[1:])
        for s in range(0, self.rows, 1024):
            new[s:s + 1024] = encode(decode(np.asarray(old[s:min(s + 1024, self.rows)]),
                                            old_mode), mode)
        del old
        self.array = None
        os.replace(wide, self.path)
        self.array, self.mode = new, mode

    def close(self) -> None:
        if self.array is not None:
            self.array.flush()
            self.array = None
            _fsync(self.path)


def _dtype(mode: str) -> np.dtype:
    return np.dtype({"uint8": np.uint8, "unit8": np.uint8, "float16": np.float16}.get(
        mode, np.float32))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def image_rows(preprocess: ImageTransform | None, chunk_size: int, workers: int,
               progress: LoadProgress | None) -> RowProducer:
    """The classifier cache's rows: `iter_arrays` chunks, the one preprocessing path."""

    def produce(todo: Dataset) -> Iterator[RowChunk]:
        for chunk in iter_arrays(todo, preprocess, chunk_size, workers, progress,
                                 require_readable=False):
            bad = chunk.indices[~chunk.ok]
            yield RowChunk(chunk.x, [int(i) for i in chunk.indices[chunk.ok]],
                           {int(i): why for i, (_, why) in zip(bad, chunk.errors, strict=True)})

    return produce


def _write_segment(pool: Path, key: str, todo: Dataset, keys: list[str], produce: RowProducer,
                   dtype: str) -> dict[str, str]:
    """Decode `todo` into a new segment: a temporary folder renamed into place when complete.
    Returns the reason each unreadable record (by key) could not be read."""
    tmp = pool / f".tmp-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir(mode=0o700)
    try:
        writer = _RowsWriter(tmp / PIXELS, len(todo))
        row_keys: list[str] = []
        extras: list[Any] = []
        errors: dict[str, str] = {}
        for chunk in produce(todo):
            errors.update({keys[i]: why for i, why in chunk.errors.items()})
            if len(chunk.x):
                writer.append(chunk.x, chunk_mode(dtype, chunk.x))
                row_keys.extend(keys[i] for i in chunk.ok)
                if chunk.extras is not None:
                    extras.extend(chunk.extras)
        writer.close()
        if not row_keys:
            return errors  # nothing readable: no segment (unreadable ones are retried next time)
        assert writer.array is None and writer.mode is not None
        meta = {"format": FORMAT, "pool": key, "mode": writer.mode,
                "shape": [len(row_keys), *np.load(tmp / PIXELS, mmap_mode="r").shape[1:]],
                "keys": row_keys, "errors": errors, "created": time.time()}
        if extras:
            meta["extras"] = extras
        (tmp / INDEX).write_text(json.dumps(meta, default=_json_lists))
        _fsync(tmp / INDEX)
        name = "seg-" + hashlib.sha256("\n".join(row_keys).encode()).hexdigest()[:24]
        try:
            os.rename(tmp, pool / name)
        except OSError as exc:  # another builder wrote the same rows first: keep theirs
            if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY):
                raise
        return errors
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _json_lists(value: Any) -> Any:
    """Numpy arrays and scalars of a row's payload as JSON lists and numbers."""
    if isinstance(value, np.ndarray | np.generic):
        return value.tolist()
    raise TypeError(f"a disk-cache row payload holds a {type(value).__name__}, not JSON")


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock on `path` (builders of one pool take turns)."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX)
        except OSError as exc:  # e.g. a network file system without locks
            log.warning("cannot lock %s (%s); building without it: the first complete "
                        "segment wins", path, exc)
        yield


def _remove_dead_builds(pool: Path) -> None:
    """Temporary folders of builds that were killed (their process is gone)."""
    host = socket.gethostname()
    for tmp in pool.glob(".tmp-*"):
        rest, _, _ = tmp.name[len(".tmp-"):].rpartition("-")
        owner, _, pid = rest.rpartition("-")
        if owner == host and pid.isdigit():
            try:
                os.kill(int(pid), 0)
                continue  # still running
            except ProcessLookupError:
                pass
            except PermissionError:
                continue
        elif time.time() - tmp.stat().st_mtime < STALE_S:
            continue
        shutil.rmtree(tmp, ignore_errors=True)


# -- the cache ------------------------------------------------------------------------------
class SegmentRows:
    """Cache rows gathered from several segments (a `RowSource`), re-encoded to one mode."""

    def __init__(self, arrays: dict[int, np.ndarray], modes: dict[int, str], seg: np.ndarray,
                 row: np.ndarray, mode: str):
        first = next(iter(arrays.values()))
        self.arrays, self.modes, self.seg, self.row, self.mode = arrays, modes, seg, row, mode
        self.shape = (len(seg), *first.shape[1:])
        self.nbytes = int(np.prod(self.shape)) * _dtype(mode).itemsize

    def __getitem__(self, rows: torch.Tensor) -> torch.Tensor:
        rows_np = np.asarray(rows, dtype=np.int64).reshape(-1)
        seg, local = self.seg[rows_np], self.row[rows_np]
        out = np.empty((len(rows_np), *self.shape[1:]), dtype=_dtype(self.mode))
        for s in np.unique(seg):
            take = seg == s
            part = self.arrays[int(s)][local[take]]
            if self.modes[int(s)] != self.mode:
                part = encode(decode(part, self.modes[int(s)]), self.mode)
            out[take] = part
        return torch.from_numpy(out)


def build_disk_cache(
    dataset: Dataset,
    preprocess: ImageTransform | None = None,
    dtype: str = "auto",
    cache_dir: str | Path | None = None,
    chunk_size: int = 512,
    workers: int = 1,
    progress: LoadProgress | None = None,
) -> ImageCache:
    """The `ImageCache` of `dataset` over memory-mapped segments in `cache_dir` (see the module
    docstring); only records missing from the cache are decoded (``cache.decoded`` counts them).
    """
    cache, _ = cached_rows(dataset, preprocess, dtype, cache_dir, record_keys(dataset),
                           image_rows(preprocess, chunk_size, workers, progress), progress=progress)
    return cache


def cached_rows(dataset: Dataset, preprocess: ImageTransform | None, dtype: str,
                cache_dir: str | Path | None, keys: list[str], produce: RowProducer, *,
                kind: str | None = None, progress: LoadProgress | None = None
                ) -> tuple[ImageCache, list[Any] | None]:
    """The cache of `dataset` (record i keyed by ``keys[i]``) in the pool of `preprocess`,
    `dtype` and `kind`, the missing rows made by `produce`; with each cached row's payload when
    the rows carry one."""
    if dtype not in CACHE_DTYPES:
        raise InvalidConfig(f"cache dtype {dtype!r} is not one of {list(CACHE_DTYPES)}")
    key = pool_key(preprocess, dtype, kind)
    pool = prepare_cache_dir(cache_dir) / key[:32]
    in_use = _use_pool(pool)
    try:
        cache, extras = _cached_rows(pool, key, dataset, dtype, keys, produce, progress)
    except BaseException:
        in_use.close()
        raise
    cache.holds = (in_use,)  # the pool stays in use (unprunable) while the cache lives
    return cache, extras


def _use_pool(pool: Path) -> Any:
    """`pool` made if missing; its in-use file, open and flocked shared (the caller closes it
    when done). A prune renames a pool away under the exclusive lock: a lock granted on a
    file that is no longer at the pool's path means the pool was pruned meanwhile, so it is made
    again."""
    for _ in range(OPEN_TRIES):
        pool.mkdir(exist_ok=True, mode=0o700)
        try:
            handle = open(pool / IN_USE, "a+")  # noqa: SIM115 (held for the cache's lifetime)
        except FileNotFoundError:  # renamed away between the mkdir and the open
            continue
        try:
            fcntl.flock(handle, fcntl.LOCK_SH)
        except OSError as exc:  # e.g. a network file system without locks: pruning cannot tell
            log.warning("cannot lock %s (%s); a prune meanwhile could remove it", handle.name, exc)
        try:
            here = os.stat(pool / IN_USE, follow_symlinks=False)
        except FileNotFoundError:
            here = None
        there = os.fstat(handle.fileno())
        if here is not None and (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino):
            (pool / LAST_USED).touch()
            return handle
        handle.close()
    raise InvalidConfig(f"the disk image cache pool {pool} was removed {OPEN_TRIES} times while "
                        "being opened: is a `medsight cache prune` running in a loop?")


def _cached_rows(pool: Path, key: str, dataset: Dataset, dtype: str, keys: list[str],
                 produce: RowProducer, progress: LoadProgress | None
                 ) -> tuple[ImageCache, list[Any] | None]:
    segments = _load_segments(pool, key)
    todo = _missing(segments, keys)
    errors: dict[str, str] = {}
    if todo:
        with _locked(pool / "lock"):
            segments = _load_segments(pool, key)  # another builder may have written them
            todo = _missing(segments, keys)
            if todo:
                _remove_dead_builds(pool)
                errors = _write_segment(pool, key, dataset.subset(todo, name=dataset.name),
                                        [keys[i] for i in todo], produce, dtype)
                segments = _load_segments(pool, key)
    if not todo and progress is not None:
        progress(len(dataset), len(dataset))
    log.info("%s: %d of %d images reused from the disk cache %s", dataset.name,
             len(dataset) - len(todo), len(dataset), pool)
    return _assemble(dataset, keys, segments, errors, len(todo))


def _missing(segments: list[Segment], keys: list[str]) -> list[int]:
    """Positions of the first record of each key no segment holds."""
    have = {k for s in segments for k in s.keys}
    seen: set[str] = set()
    out = []
    for i, k in enumerate(keys):
        if k not in have and k not in seen:
            seen.add(k)
            out.append(i)
    return out


def _assemble(dataset: Dataset, keys: list[str], segments: list[Segment],
              why: dict[str, str], decoded: int) -> tuple[ImageCache, list[Any] | None]:
    where = {k: (s, r) for s, seg in enumerate(segments) for r, k in enumerate(seg.keys)}
    index, seg_of, row_of, errors = [], [], [], []
    for i, (record, k) in enumerate(zip(dataset.records, keys, strict=True)):
        if k in where:
            s, r = where[k]
            index.append(i)
            seg_of.append(s)
            row_of.append(r)
        else:
            errors.append((record.ref, why.get(k, "unreadable")))
    if errors:
        log.warning("%s: skipped %d of %d images as unreadable (first: %s: %s)",
                    dataset.name, len(errors), len(dataset), errors[0][0], errors[0][1])
    if not index:
        first = f"; first error: {errors[0][0]}: {errors[0][1]}" if errors else ""
        raise InvalidDataset(f"{dataset.name}: none of its {len(dataset)} images could be "
                             f"read{first}")
    used = sorted(set(seg_of))
    shapes = {segments[s].shape[1:] for s in used}
    if len(shapes) > 1:
        raise InvalidConfig(
            f"{dataset.name}: images differ in shape after preprocessing ({sorted(shapes)}); add "
            "a resize step to the preprocess chain, e.g. {'resize': {'size': [64, 64]}}"
        )
    modes = {s: segments[s].mode for s in used}
    mode = reduce(widen, [m for m in modes.values() if m is not None])
    only = used[0]
    whole = (len(used) == 1 and modes[only] == mode
             and row_of == list(range(len(segments[only].keys))))
    data: Any
    if whole:
        data = torch.from_numpy(segments[only].pixels())
    else:
        data = SegmentRows({s: segments[s].pixels() for s in used}, modes,  # type: ignore[arg-type]
                           np.asarray(seg_of), np.asarray(row_of), mode)
    cache = ImageCache(data, mode, np.asarray(index), errors, len(dataset), decoded)
    return cache, _payloads(segments, seg_of, row_of)


def _payloads(segments: list[Segment], seg_of: list[int], row_of: list[int]) -> list[Any] | None:
    """Each cached row's payload, in cache order; None for a pool whose rows carry none."""
    out = []
    for s, r in zip(seg_of, row_of, strict=True):
        extras = segments[s].extras
        if extras is None:
            return None
        out.append(extras[r])
    return out
