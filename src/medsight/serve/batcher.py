"""Dynamic batching: requests for one model are gathered into batches (at most `max_batch`, the
first waiting at most `max_wait_ms` for company) and run together by one thread, so concurrent
single-image clients share each pass through the ONNX Runtime session."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any, Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class Batcher(Generic[T, R]):
    """`submit(item)` -> a future of ``run([...items])[k]``. `run` gets each gathered batch and
    returns one result per item (or raises: then every item of that batch gets the error).
    `on_batch(size, seconds)` is told of each batch (for metrics). `waiting()` (optional) says
    how many requests could still join: once the batch holds them all it runs at once instead
    of waiting out `max_wait_ms` (a lone client pays no batching delay)."""

    def __init__(self, run: Callable[[list[T]], list[R]], max_batch: int = 32,
                 max_wait_ms: float = 5.0, name: str = "model",
                 on_batch: Callable[[int, float], None] | None = None,
                 waiting: Callable[[], int] | None = None) -> None:
        self.run, self.max_batch, self.max_wait_s = run, max(1, int(max_batch)), max_wait_ms / 1e3
        self.on_batch, self.waiting = on_batch, waiting
        self._queue: queue.SimpleQueue[tuple[T, Future[R]] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"medsight-batch-{name}", daemon=True)
        self._closed = False
        self._thread.start()

    def submit(self, item: T) -> Future[R]:
        if self._closed:
            raise RuntimeError("the batcher is closed")
        future: Future[R] = Future()
        self._queue.put((item, future))
        return future

    def close(self) -> None:
        """Finish what was submitted, then stop the thread."""
        self._closed = True
        self._queue.put(None)
        self._thread.join()

    @property
    def depth(self) -> int:
        """Items waiting for a batch (approximate)."""
        return self._queue.qsize()

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = time.monotonic() + self.max_wait_s
            stop = False
            while len(batch) < self.max_batch:
                if self.waiting is not None and len(batch) >= self.waiting() and self._queue.empty():
                    break
                timeout = deadline - time.monotonic()
                try:
                    nxt = self._queue.get(timeout=timeout) if timeout > 0 else self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    stop = True
                    break
                batch.append(nxt)
            self._run(batch)
            if stop:
                return

    def _run(self, batch: list[tuple[Any, Future[R]]]) -> None:
        t0 = time.perf_counter()
        try:
            results = self.run([item for item, _ in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"batch run returned {len(results)} results for {len(batch)} items")
        except BaseException as exc:  # noqa: BLE001 - every waiting request learns of it
            for _, future in batch:
                future.set_exception(exc)
            return
        finally:
            if self.on_batch is not None:
                self.on_batch(len(batch), time.perf_counter() - t0)
        for (_, future), result in zip(batch, results, strict=True):
            future.set_result(result)
