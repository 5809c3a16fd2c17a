"""bench/serve.py and bench/fuzz.py --service in a tiny mode: one model measured side by side (bare
ORT, bare Predictor, the live service at two concurrency levels) with the section rendered, and a
few hostile uploads sent to a real server that must stay up with no 5xx."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from conftest import load_module

BENCH = Path(__file__).resolve().parents[2] / "bench"
pytestmark = pytest.mark.xdist_group("serve")


def _serve_bench() -> Any:
    return load_module("bench_serve", BENCH / "serve.py")


def _fuzz_bench() -> Any:
    return load_module("bench_fuzz", BENCH / "fuzz.py")


def test_one_model_side_by_side_and_section(serve_bundle: Path, tmp_path: Path) -> None:
    bench = _serve_bench()
    affinity = os.sched_getaffinity(0)
    row = bench.measure_model("tiny_cnn", serve_bundle, 28, tmp_path, seconds=0.5, warmup_s=0.2,
                              calls=5, rounds=1, levels=(1, 2), n_images=4)
    assert os.sched_getaffinity(0) == affinity  # the pinning is undone
    assert row["bare_ort_images_per_s"] > 0 and row["bare_predictor"]["p50_ms"] > 0
    assert [r["clients"] for r in row["service"]] == [1, 2]
    for r in row["service"]:
        assert set(r["statuses"]) == {"201"} and r["n"] > 0 and r["images_per_s"] > 0
        assert r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] and r["mean_batch"] >= 1
    [probe] = row["service_no_wait"]
    assert probe["clients"] == 1 and set(probe["statuses"]) == {"201"}
    assert row["server_alive_after"]
    row["verdicts"] = v = bench.verdicts(row)
    assert v["throughput"]["clients"] == 2 and v["latency"]["ratio"] > 0
    result = {"models": [row], "machine": bench.machine(), "server_args": list(bench.SERVER_ARGS),
              "protocol": {"seconds_per_level": 0.5, "warmup_s": 0.2, "predictor_calls": 5,
                           "ort_rounds": 1, "levels": [1, 2], "pinned": True},
              "load_before": [], "load_after": [], "wall_s": 1.0, "when": "now", "notes": ["a note"]}
    markdown = tmp_path / "BENCHMARKS.md"
    markdown.write_text("# Benchmarks\n\n## Other\n\nkept\n")
    bench.write_section(result, markdown)
    text = markdown.read_text()
    assert "## Other\n\nkept" in text and bench.HEADING in text
    assert "| tiny_cnn | 28 px PNG | service, 2 clients |" in text
    assert "Targets" in text and "- a note" in text and "(`--max-wait-ms 0`, diagnostic)" in text


def test_multipart_body_is_what_the_service_parses() -> None:
    body, ctype = _serve_bench().multipart("x.png", b"\x89PNG bytes")
    boundary = ctype.split("boundary=", 1)[1]
    assert body.startswith(f"--{boundary}\r\n".encode()) and body.endswith(f"--{boundary}--\r\n".encode())
    assert b'name="file"; filename="x.png"' in body and b"\x89PNG bytes" in body


def test_service_fuzz_stays_up_without_5xx(serve_bundle: Path, tmp_path: Path) -> None:
    fuzz = _fuzz_bench()
    result = fuzz.run_service(inputs=20, seed=1, clients=2, group=10, slow_bombs=False, bundle=serve_bundle)
    assert result["protocol"]["tried"] == 20 and sum(result["status_all"].values()) == 20
    assert result["server_deaths"] == 0 and result["server_5xx"] == 0 and result["transport_errors"] == 0
    assert result["alive_at_end"] and result["health_checks"] == 2
    assert result["statuses"]["bomb"] and not any(c.startswith("5") for c in result["statuses"]["bomb"])
    assert result["peak_server_rss_mb"] > 50 and result["peak_worker_rss_mb"] > 10
    markdown = tmp_path / "BENCHMARKS.md"
    fuzz.write_service_section(result, markdown)
    text = markdown.read_text()
    assert fuzz.SERVICE_HEADING in text and "Server deaths: **0**" in text and "**Verdict:**" in text


def test_cpu_split_and_tagged_files() -> None:
    bench = _serve_bench()
    assert bench.cpu_split([0, 1], True) == ([1], [0])
    assert bench.cpu_split([0, 1, 2, 3], True) == ([1, 2, 3], [0])
    assert bench.cpu_split([0], True) == (None, None) and bench.cpu_split([0, 1], False) == (None, None)
    from medsight.io import read_image

    [(_, png)], [(_, jpeg)] = bench.upload_images(28, 1), bench.upload_images(224, 1)
    for data in (png, jpeg):
        a, b = bench.tagged(data, 1), bench.tagged(data, 2)
        assert a != b and (read_image(a).pixels == read_image(data).pixels).all()
    assert read_image(jpeg).pixels.shape[-2:] == (224, 224)
