"""bench/predict.py in a tiny mode: the Predictor and bare ONNX Runtime both report images/s on the
same graph, the process-tree memory probe works, and the BENCHMARKS.md section renders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import load_module

BENCH = Path(__file__).resolve().parents[2] / "bench" / "predict.py"
pytestmark = pytest.mark.xdist_group("deploy_runs")


def _bench():
    return load_module("bench_predict", BENCH)


def test_throughput_side_by_side_and_section(cnn2d_run, bundle_of) -> None:
    bench = _bench()
    row = bench.throughput(bundle_of(cnn2d_run), batch=4, rounds=2, n_images=8)
    assert row["images"] == 8 and row["bare_images_per_s"] > 0 and row["predictor_images_per_s"] > 0
    assert row["ratio"] > 0 and row["preprocess_ms_per_image"] > 0
    assert bench._tree_rss_mb(os.getpid()) > 10
    result = {"throughput": {"resnet18_28": [row]}, "when": "now", "cpu": "cpu", "cores": "1 core",
              "load_before": [], "load_after": [],
              "cold_start": {"wall_s": 1.0, "walls_s": [1.0], "torch_imported": False, "import_s": 0.5},
              "memory": [{"images": 10, "rows": 10, "exit_code": 0, "peak_rss_mb": 100.0,
                          "wall_s": 1.0, "images_per_s": 10.0}]}
    text = bench.render(result)
    assert text.startswith(bench.HEADING) and "| resnet18_28 | 28 px | 4 |" in text
    assert "torch imported: no" in text


def test_throughput_only_rerun_keeps_cold_start_and_memory(monkeypatch) -> None:
    bench = _bench()
    row = {"batch": 1, "images": 2, "rounds": 1, "bare_images_per_s": 10.0,
           "predictor_images_per_s": 9.9, "bare_default_images_per_s": 5.0,
           "predictor_end_to_end_images_per_s": 9.0, "ratio": 0.99, "preprocess_ms_per_image": 0.1}
    monkeypatch.setattr(bench, "make_bundles", lambda tmp: {"resnet18_28": tmp / "b.msb"})
    monkeypatch.setattr(bench, "all_throughput", lambda bundles, *a: {n: [row] for n in bundles})
    saved = {"throughput": {"resnet18_28": [dict(row, ratio=0.5)]}, "when": "then", "cpu": "cpu",
             "cores": "1 core", "load_before": [], "load_after": [],
             "cold_start": {"wall_s": 1.25, "walls_s": [1.25], "torch_imported": False, "import_s": 0.5},
             "memory": [{"images": 10, "rows": 10, "exit_code": 0, "peak_rss_mb": 100.0,
                         "wall_s": 1.0, "images_per_s": 10.0}]}
    result = bench.rerun_throughput(saved, rounds=1, n_images=2, batches=[1])
    assert result["cold_start"] == saved["cold_start"] and result["memory"] == saved["memory"]
    assert result["throughput"]["resnet18_28"][0]["ratio"] == 0.99
    text = bench.render(result)
    assert "Throughput rerun on its own" in text and "| 0.990 |" in text and "1.25 s" in text
