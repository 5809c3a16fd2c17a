"""Decode untrusted files in worker processes that may crash, hang or run out of memory.

A hostile file can abort the whole interpreter from inside a C/C++ decoder, loop for ever or
allocate gigabytes. `DecodePool` runs `work(item)` (default `read_image`) in separate processes
(``forkserver``, so no threaded parent is forked), one item per worker at a time, each with a time
limit per item and an address-space limit (``RLIMIT_AS``, Linux). A worker that dies, times out
or runs out of memory is replaced and its item answered with `UnreadableImage` and the reason
("decoder crashed (signal 6, SIGABRT)", "timed out after 10 s", "out of memory ..."); the other
items go on. `map` yields ``(item, result | UnreadableImage)`` in input order and keeps at most
`window` items in flight, so a stream of 100k inputs stays in bounded memory.

A server with many request threads (or an event loop) uses `submit_future` instead: a pump thread
then waits on the workers with no lock held, and each item's `concurrent.futures.Future` resolves
as soon as its worker answers; one pool is driven either way, not both.

The pool is a context manager (``with DecodePool() as pool: ...``); `close` stops the workers.
Workers start on the first item, or ahead of it with `start` (in the background, so the fork
server's start-up overlaps whatever the caller does meanwhile, such as opening a model).
`work` must be a picklable top-level function; an exception it raises becomes `UnreadableImage`.
"""

from __future__ import annotations

import collections
import concurrent.futures
import multiprocessing as mp
import os
import resource
import signal
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from medsight.errors import UnreadableImage
from medsight.io.read import read_image

_PRELOAD = ["medsight.io.read"]  # imported once in the fork server, so a new worker starts fast
_STOP_GRACE_S = 1.0


@dataclass
class PoolStats:
    """What happened so far: items done, workers lost and why, the largest worker's peak RSS."""

    items: int = 0
    crashed: int = 0
    timed_out: int = 0
    out_of_memory: int = 0
    peak_worker_rss_mb: float = 0.0
    worst_item_s: float = 0.0


@dataclass
class _Worker:
    process: Any
    conn: Connection
    task: tuple[int, Any, float] | None = None  # (ticket, item, started) while busy


class DecodePool:
    """Run `work` on items in `workers` processes, each item under `timeout_s` and `memory_mb`.

    `memory_mb` caps each worker's address space (virtual memory, so libraries that reserve much
    of it, such as torch, need a larger value); ``None`` sets no memory limit. `window` bounds the
    items `map` keeps in flight (default 4 per worker). Thread-safe: calls are serialised by a
    lock. `stats` counts what happened (`PoolStats`).
    """

    def __init__(
        self,
        work: Callable[[Any], Any] = read_image,
        workers: int = 1,
        timeout_s: float = 10.0,
        memory_mb: int | None = 4096,
        window: int | None = None,
    ) -> None:
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
        self.work, self.workers, self.timeout_s, self.memory_mb = work, workers, timeout_s, memory_mb
        self.window = window or 4 * workers
        self.stats = PoolStats()
        methods = mp.get_all_start_methods()
        self._context = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
        if self._context.get_start_method() == "forkserver":
            self._context.set_forkserver_preload(_PRELOAD)
        self._pool: list[_Worker] = []
        self._queue: collections.deque[tuple[int, Any]] = collections.deque()
        self._results: dict[int, Any] = {}
        self._dropped: set[int] = set()
        self._tickets = 0
        self._lock = threading.RLock()
        self._closed = False
        self._futures: dict[int, concurrent.futures.Future[Any]] = {}
        self._pump_thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1

    # -- public API ---------------------------------------------------------------------------
    def submit(self, item: Any) -> int:
        """Queue one item; returns a ticket for `result`."""
        with self._lock:
            if self._closed:
                raise RuntimeError("the decode pool is closed")
            ticket = self._tickets
            self._tickets += 1
            self._queue.append((ticket, item))
            self._dispatch()
            return ticket

    def submit_future(self, item: Any) -> concurrent.futures.Future[Any]:
        """Queue one item; its future resolves to the result or its `UnreadableImage` (never
        raises for a bad item). Safe from any number of threads; ``asyncio.wrap_future`` awaits it."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._lock:
            self._start_pump()
            ticket = self.submit(item)
            if ticket in self._results:  # answered at once (the item did not pickle)
                future.set_result(self._results.pop(ticket))
            else:
                self._futures[ticket] = future
        self._wake()
        return future

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet answered (queued or with a worker)."""
        with self._lock:
            return len(self._queue) + len(self._busy())

    def result(self, ticket: int) -> Any:
        """The result of a submitted item, or its `UnreadableImage` (waits until it is known)."""
        self._refuse_if_pumped()
        with self._lock:
            while ticket not in self._results:
                if not self._busy() and not self._queue:
                    raise KeyError(f"unknown or already collected ticket {ticket}")
                self._pump()
            return self._results.pop(ticket)

    def map(self, items: Iterable[Any]) -> Iterator[tuple[Any, Any]]:
        """``(item, result | UnreadableImage)`` for every item, in input order, streaming."""
        self._refuse_if_pumped()
        pending: collections.deque[tuple[int, Any]] = collections.deque()
        try:
            for item in items:
                pending.append((self.submit(item), item))
                if len(pending) >= self.window:
                    ticket, first = pending.popleft()
                    yield first, self.result(ticket)
            while pending:
                ticket, first = pending.popleft()
                yield first, self.result(ticket)
        finally:  # the caller stopped early: forget what is still in flight
            with self._lock:
                for ticket, _ in pending:
                    self._drop(ticket)

    def start(self) -> None:
        """Start the workers now, in a background thread, and return at once; items submitted
        meanwhile wait for them. A worker that fails to start here is started (and its error
        raised) by the first `submit`."""
        threading.Thread(target=self._start_all, name="medsight-decode-start", daemon=True).start()

    def _start_all(self) -> None:
        with self._lock:
            try:
                while not self._closed and len(self._pool) < self.workers:
                    self._start_worker()
            except Exception:  # noqa: S110 - retried, and raised, by the first submit
                pass

    def close(self) -> None:
        """Stop every worker (politely, then by force); the pool cannot be used afterwards."""
        with self._lock:
            self._closed = True
            thread = self._pump_thread
        if thread is not None:
            self._wake()
            thread.join()
        with self._lock:
            for future in self._futures.values():
                future.set_exception(RuntimeError("the decode pool was closed"))
            self._futures.clear()
            for fd in (self._wake_r, self._wake_w):
                if fd >= 0:
                    os.close(fd)
            self._wake_r = self._wake_w = -1
            for worker in self._pool:
                try:
                    worker.conn.send(None)
                except (OSError, ValueError):
                    pass
            deadline = time.monotonic() + _STOP_GRACE_S
            for worker in self._pool:
                worker.process.join(max(0.0, deadline - time.monotonic()))
                if worker.process.is_alive():
                    worker.process.kill()
                    worker.process.join()
                worker.conn.close()
            self._pool.clear()

    def __enter__(self) -> DecodePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the event loop -----------------------------------------------------------------------
    def _busy(self) -> list[_Worker]:
        return [w for w in self._pool if w.task is not None]

    def _drop(self, ticket: int) -> None:
        if ticket in self._results:
            del self._results[ticket]
        else:
            self._dropped.add(ticket)

    def _answer(self, ticket: int, value: Any) -> None:
        if ticket in self._dropped:
            self._dropped.discard(ticket)
        elif ticket in self._futures:
            self._futures.pop(ticket).set_result(value)
        else:
            self._results[ticket] = value

    def _dispatch(self) -> None:
        """Hand queued items to idle workers, starting workers up to `workers`."""
        for worker in [w for w in self._pool if w.task is None and not w.process.is_alive()]:
            self._replace(worker)  # died while idle
        while self._queue:
            idle = next((w for w in self._pool if w.task is None), None)
            if idle is None and len(self._pool) < self.workers:
                idle = self._start_worker()
            if idle is None:
                return
            ticket, item = self._queue.popleft()
            if ticket in self._dropped:
                self._dropped.discard(ticket)
                continue
            try:
                idle.conn.send((ticket, item))
            except OSError:  # the worker died while idle: try again with a new one
                self._queue.appendleft((ticket, item))
                self._replace(idle)
                continue
            except Exception as exc:  # the item does not pickle
                self._answer(ticket, UnreadableImage(_label(item), f"cannot send to a worker: {exc}"))
                continue
            idle.task = (ticket, item, time.monotonic())

    def _pump(self) -> None:
        """Wait for the next result, death or deadline among busy workers, and handle it."""
        self._dispatch()
        busy = self._busy()
        if not busy:
            return
        ready = set(wait(self._waitables(busy), timeout=self._wait_s(busy)))
        self._handle(busy, ready)

    def _waitables(self, busy: list[_Worker]) -> list[Any]:
        return [w.conn for w in busy] + [w.process.sentinel for w in busy]

    def _wait_s(self, busy: list[_Worker]) -> float:
        nearest = min(w.task[2] for w in busy if w.task) + self.timeout_s
        return max(0.0, nearest - time.monotonic())

    def _handle(self, busy: list[_Worker], ready: set[Any]) -> None:
        """Take the answers, deaths and overruns among `busy` workers (`ready`: what `wait` saw)."""
        for worker in busy:
            if worker.conn in ready and self._receive(worker):
                continue
            if worker.process.sentinel in ready or not worker.process.is_alive():
                self.stats.crashed += 1
                self._lost(worker, _death_reason(worker.process))
            elif time.monotonic() - worker.task[2] >= self.timeout_s:  # type: ignore[index]
                self.stats.timed_out += 1
                self._lost(worker, f"timed out after {self.timeout_s:g} s")
        self._dispatch()

    # -- the pump thread (submit_future) --------------------------------------------------------
    def _refuse_if_pumped(self) -> None:
        if self._pump_thread is not None:
            raise RuntimeError("this decode pool is driven by submit_future; result and map "
                               "cannot be mixed with it")

    def _start_pump(self) -> None:
        if self._pump_thread is not None:
            return
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._pump_thread = threading.Thread(target=self._pump_forever, name="medsight-decode-pump",
                                             daemon=True)
        self._pump_thread.start()

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except (BlockingIOError, OSError):  # the pipe is full (a wake-up is pending) or closed
            pass

    def _pump_forever(self) -> None:
        """Wait (with no lock held) on busy workers and the wake-up pipe; handle what arrives."""
        while True:
            with self._lock:
                if self._closed:
                    return
                try:
                    self._dispatch()
                except Exception as exc:  # a worker cannot start: fail what waits for one
                    for ticket, item in list(self._queue):
                        self._answer(ticket, UnreadableImage(_label(item),
                                                             f"no decode worker could start: {exc}"))
                    self._queue.clear()
                busy = self._busy()
                watch = self._waitables(busy) + [self._wake_r]
                timeout = self._wait_s(busy) if busy else None
            ready = set(wait(watch, timeout=timeout))
            if self._wake_r in ready:
                try:
                    while os.read(self._wake_r, 4096):
                        pass
                except BlockingIOError:
                    pass
            with self._lock:
                if self._closed:
                    return
                self._handle([w for w in busy if w.task is not None and w in self._pool], ready)

    def _receive(self, worker: _Worker) -> bool:
        """Take a worker's answer; False when the pipe is closed (the worker died)."""
        try:
            ticket, kind, payload, rss_mb = worker.conn.recv()
        except (EOFError, OSError):
            worker.process.join(_STOP_GRACE_S)
            return False
        assert worker.task is not None and worker.task[0] == ticket
        item, started = worker.task[1], worker.task[2]
        worker.task = None
        self._record(time.monotonic() - started, rss_mb)
        if kind == "ok":
            self._answer(ticket, payload)
            return True
        source, reason = payload
        if "out of memory" in reason:  # MemoryError here, or caught and reported by read_image
            self.stats.out_of_memory += 1
        self._answer(ticket, UnreadableImage(source or _label(item), reason))
        return True

    def _lost(self, worker: _Worker, reason: str) -> None:
        """A busy worker died or overran: answer its item with `reason` and replace it."""
        assert worker.task is not None
        ticket, item, started = worker.task
        self._record(time.monotonic() - started, 0.0)
        self._answer(ticket, UnreadableImage(_label(item), reason))
        self._replace(worker)

    def _record(self, seconds: float, rss_mb: float) -> None:
        self.stats.items += 1
        self.stats.worst_item_s = max(self.stats.worst_item_s, seconds)
        self.stats.peak_worker_rss_mb = max(self.stats.peak_worker_rss_mb, rss_mb)

    def _replace(self, worker: _Worker) -> None:
        """Kill a worker (if still running) and drop it; `_dispatch` starts a new one on demand."""
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join()
        worker.conn.close()
        self._pool.remove(worker)

    def _start_worker(self) -> _Worker:
        parent, child = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child, self.work, self.memory_mb), daemon=True,
            name="medsight-decode")
        process.start()
        child.close()
        worker = _Worker(process, parent)
        self._pool.append(worker)
        return worker


def _label(item: Any) -> str:
    """How an item is named in its `UnreadableImage`: the path, or the kind of upload."""
    if isinstance(item, str | os.PathLike):
        return os.fspath(item)
    if isinstance(item, bytes | bytearray | memoryview):
        return "<bytes>"
    return repr(item)[:80]


def _death_reason(process: Any) -> str:
    """'decoder crashed (signal 6, SIGABRT)' or 'decoder exited unexpectedly (code 3)'."""
    process.join(_STOP_GRACE_S)
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        hint = ": killed, perhaps for lack of memory" if -code == signal.SIGKILL else ""
        return f"decoder crashed (signal {-code}, {name}{hint})"
    return f"decoder exited unexpectedly (code {code})"


def _worker_main(conn: Connection, work: Callable[[Any], Any], memory_mb: int | None) -> None:
    """Worker loop: limits first, then (ticket, item) -> (ticket, kind, payload, peak RSS MB)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # an aborting decoder leaves no core file
    if memory_mb is not None:
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = memory_mb * 2**20
        soft = limit if hard == resource.RLIM_INFINITY else min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):
            return
        if message is None:
            return
        ticket, item = message
        answer = _run(work, item, memory_mb)
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        try:
            conn.send((ticket, *answer, rss_mb))
        except Exception as exc:  # the result does not pickle, or is too large to allocate
            conn.send((ticket, "error", (None, f"cannot send the result back: {exc}"), rss_mb))


def _run(work: Callable[[Any], Any], item: Any, memory_mb: int | None) -> tuple[str, Any]:
    """("ok", result) or ("error", (source or None, reason))."""
    try:
        return "ok", work(item)
    except UnreadableImage as exc:  # sent as fields: the exception itself does not unpickle
        return "error", (exc.source, exc.reason)
    except MemoryError:
        limit = f" (limit {memory_mb} MB)" if memory_mb is not None else ""
        return "error", (None, f"out of memory{limit}")
    except Exception as exc:
        return "error", (None, f"unexpected {type(exc).__name__}: {exc}")
