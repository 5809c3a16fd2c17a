"""DecodePool: crashing, hanging, memory-hungry and failing items are reported; the rest go on."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
from conftest import shared_path
from hostile import aborting_j2k

from medsight.errors import UnreadableImage
from medsight.io import read_image
from medsight.io.decode_pool import DecodePool


@pytest.fixture
def work(monkeypatch):
    """The pool_work module, importable by the workers too (they inherit sys.path)."""
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    import pool_work

    return pool_work


def _aborting_j2k(tmp_path: Path) -> Path:
    path = tmp_path / "aborts.dcm"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(aborting_j2k())
    return path


def test_crashes_hangs_memory_and_errors_are_reported_in_order(work):
    items = [1, "abort", 2, "hang", 3, "oom", 4, "raise", 5, "kill", "exit", 6]
    with DecodePool(work.misbehave, workers=2, timeout_s=1.0, memory_mb=1024) as pool:
        got = list(pool.map(items))
        assert [item for item, _ in got] == items
        results = dict(zip(map(str, items), (r for _, r in got), strict=True))
        assert [results[str(i)] for i in range(1, 7)] == [2, 4, 6, 8, 10, 12]
        reasons = {k: v.reason for k, v in results.items() if isinstance(v, UnreadableImage)}
        assert reasons["abort"] == "decoder crashed (signal 6, SIGABRT)"
        assert reasons["hang"] == "timed out after 1 s"
        assert reasons["oom"] == "out of memory (limit 1024 MB)"
        assert reasons["raise"] == "unexpected ValueError: bad item"
        assert reasons["kill"].startswith("decoder crashed (signal 9, SIGKILL")
        assert reasons["exit"] == "decoder exited unexpectedly (code 3)"
        assert results["abort"].source == "abort"
        assert (pool.stats.crashed, pool.stats.timed_out, pool.stats.out_of_memory) == (3, 1, 1)
        assert pool.result(pool.submit(21)) == 42  # still usable after all that
        assert list(pool.map(range(3))) == [(0, 0), (1, 2), (2, 4)]


def test_a_decoder_that_aborts_the_process_is_one_unreadable_file(tmp_path):
    aborts = _aborting_j2k(tmp_path)
    good = [shared_path("dicom", "pydicom", name) for name in ("MR_small_jp2klossless.dcm", "CT_small.dcm")]
    with DecodePool(workers=1, timeout_s=20) as pool:
        got = list(pool.map([good[0], aborts, good[1], tmp_path / "missing.dcm"]))
    first, crashed, second, missing = (r for _, r in got)
    assert isinstance(crashed, UnreadableImage)
    assert crashed.source == str(aborts) and crashed.reason.startswith("decoder crashed (signal 6")
    np.testing.assert_array_equal(first.pixels, read_image(good[0]).pixels)
    np.testing.assert_array_equal(second.pixels, read_image(good[1]).pixels)
    assert isinstance(missing, UnreadableImage) and missing.reason == "file not found"
    assert missing.source == str(tmp_path / "missing.dcm")


def test_map_streams_with_a_bounded_number_in_flight(work):
    pulled: list[int] = []

    def source():
        for i in range(2000):
            pulled.append(i)
            yield i

    with DecodePool(work.identity, workers=2, window=8) as pool:
        for item, result in pool.map(source()):
            assert result == item
            assert len(pulled) - item <= 8  # never more than `window` items read ahead
    assert len(pulled) == 2000


def test_stopping_early_leaves_no_stale_results(work):
    with DecodePool(work.misbehave, workers=2, timeout_s=5.0) as pool:
        for item, result in pool.map(range(100)):
            assert result == 2 * item
            if item == 10:
                break
        assert [r for _, r in pool.map([7, 8])] == [14, 16]
        assert pool.result(pool.submit(1)) == 2
        assert not pool._results


def test_start_launches_the_workers_before_the_first_item(work):
    with DecodePool(work.misbehave, workers=2) as pool:
        pool.start()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with pool._lock:
                if len(pool._pool) == 2:
                    break
            time.sleep(0.01)
        pids = {w.process.pid for w in pool._pool}
        assert len(pids) == 2 and all(w.process.is_alive() for w in pool._pool)
        assert [r for _, r in pool.map([1, 2, 3])] == [2, 4, 6]
        assert {w.process.pid for w in pool._pool} == pids  # the same workers did the work


def test_closed_pool_refuses_work(work):
    pool = DecodePool(work.identity)
    assert pool.result(pool.submit("x")) == "x"
    processes = [w.process for w in pool._pool]
    pool.close()
    assert all(not p.is_alive() for p in processes)
    with pytest.raises(RuntimeError, match="closed"):
        pool.submit("y")


def test_an_item_that_does_not_pickle_is_unreadable(work):
    with DecodePool(work.identity) as pool:
        got = [r for _, r in pool.map([1, lambda: None, None])]
    assert got[0] == 1 and got[2] is None
    assert isinstance(got[1], UnreadableImage) and "cannot send to a worker" in got[1].reason


def test_futures_from_many_threads_resolve_while_others_still_decode(work):
    """submit_future: a pump thread waits with no lock held, so a hang in one worker does not
    hold back the answers of the other, and crashes resolve their own future only."""
    import threading

    with DecodePool(work=work.misbehave, workers=2, timeout_s=3, memory_mb=512) as pool:
        hang = pool.submit_future("hang")
        t0 = time.monotonic()
        out: dict[int, object] = {}

        def ask(i: int) -> None:
            out[i] = pool.submit_future(i).result(timeout=10)

        threads = [threading.Thread(target=ask, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert out == {i: 2 * i for i in range(8)}
        assert time.monotonic() - t0 < 2.5  # answered by the free worker, not after the hang
        assert pool.submit_future("abort").result(timeout=10).reason.startswith("decoder crashed")
        assert "timed out after 3 s" in hang.result(timeout=10).reason
        assert pool.submit_future(21).result(timeout=10) == 42
        assert pool.in_flight == 0
        with pytest.raises(RuntimeError, match="submit_future"):
            list(pool.map([1]))
