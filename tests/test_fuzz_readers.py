"""Fuzzing the readers (hypothesis, derandomised): mutated real files and bombs decode or are refused.

Every input goes through the decode pool, so an input that kills its decoder's process fails
the test instead of the test run. Only compressed DICOM seeds (RLE, JPEG, JPEG-LS, JPEG 2000) may
crash their worker: python-gdcm, one of pydicom's plugins, throws uncaught C++ exceptions on
some broken codestreams and aborts the process, which only the pool can contain. For every
other seed a crash means a reader lets something through that `read_image` should have turned
into UnreadableImage (a Rust panic reaching the worker loop, for one, kills it too).
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest
from conftest import load_module, shared_path
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from medsight.errors import UnreadableImage
from medsight.io.decode_pool import DecodePool

BENCH = Path(__file__).resolve().parents[1] / "bench" / "fuzz.py"
_GDCM_CODECS = ("RLE", "JPEG")


def _load_bench():
    return load_module("bench_fuzz", BENCH)


fuzz = _load_bench()


@pytest.fixture(scope="module")
def seeds() -> list[tuple[str, bytes]]:
    data_dir = shared_path()
    return [(name, fuzz.seed_bytes(name, data_dir)) for name, _ in fuzz.SEEDS]


@pytest.fixture(scope="module")
def pool():
    with DecodePool(workers=1, timeout_s=10.0, memory_mb=2048) as decode_pool:
        yield decode_pool


@settings(max_examples=120, derandomize=True, deadline=None, database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(which=st.integers(0, len(fuzz.SEEDS) - 1), mutation=st.integers(0, 2**32 - 1))
def test_mutated_real_files_decode_or_are_unreadable(seeds, pool, which, mutation):
    name, data = seeds[which]
    what = fuzz.SEEDS[which][1]
    result = pool.result(pool.submit(fuzz.mutate(data, random.Random(mutation))))
    outcome = fuzz.outcome(result)  # asserts: an Image or an UnreadableImage
    gdcm = what.startswith("DICOM") and any(codec in what for codec in _GDCM_CODECS)
    allowed = {"decoded", "unreadable"} | ({"crashed"} if gdcm else set())
    assert outcome in allowed, f"{name} mutated with {mutation}: {getattr(result, 'reason', result)}"


def test_bombs_are_refused_quickly(pool):
    for name, data in fuzz.bombs(shared_path(), slow=False):
        start = time.perf_counter()
        result = pool.result(pool.submit(data))
        seconds = time.perf_counter() - start
        assert isinstance(result, UnreadableImage), name
        assert fuzz.outcome(result) == "unreadable", (name, result.reason)
        assert seconds < 1.0, (name, seconds)


def test_bench_records_and_writes_its_section(tmp_path):
    result = fuzz.run(inputs=20, seed=3, timeout_s=10.0, memory_mb=2048, slow_s=1.0, slow_bombs=False)
    assert sum(result["counts"].values()) == 20
    assert result["by_kind"]["bomb"] == {"unreadable": 2}
    assert result["peak_worker_rss_mb"] > 0
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\n## Training speed\n\nkept\n")
    fuzz.write_section(result, markdown)
    text = markdown.read_text()
    assert "## Training speed\n\nkept\n" in text and "## Fuzzing the readers" in text
    assert "| decoded |" in text and "20 hostile inputs" in text
