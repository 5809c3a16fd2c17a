"""bench/medmnist.py end to end in a tiny mode: trains, records JSON, writes its markdown table."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import load_module, shared_path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "medmnist.py"


@pytest.fixture(scope="module")
def bench():
    return load_module("bench_medmnist", BENCH)


def test_tiny_run_writes_records_and_the_medmnist_section(bench, tmp_path):
    data = shared_path("medmnist", "breastmnist.npz")
    out, md = tmp_path / "results", tmp_path / "BENCHMARKS.md"
    md.write_text("# Benchmarks\n\n## Training speed\n\nkept as is\n")
    rc = bench.main(["--run", "--write", "--datasets", str(data), "--methods", "recipe",
                     "pixels+svm", "--epochs", "1", "--limit", "64", "--seeds", "1",
                     "--out", str(out), "--markdown", str(md)])
    assert rc == 0
    names = sorted(p.name for p in out.glob("*.json"))
    assert names == ["breastmnist__pixels+svm__s0.json", "breastmnist__recipe+svm__s0.json",
                     "breastmnist__recipe__s0.json"]
    rec = json.loads((out / "breastmnist__recipe__s0.json").read_text())
    assert rec["n"] == {"train": 64, "val": 64, "test": 64}
    assert rec["epochs_run"] == 1 and rec["params"]["network"] == "resnet18_28"
    assert rec["hardware"]["cores"] >= 1 and rec["hardware"]["torch"]
    for r in (rec, json.loads((out / "breastmnist__pixels+svm__s0.json").read_text())):
        assert 0.0 <= r["test"]["acc"] <= 1.0 and 0.0 <= r["test"]["auc"] <= 1.0
        assert r["test"]["n"] == 64
    # pixels + SVM separates malignant from benign on 64 images far better than chance
    svm = json.loads((out / "breastmnist__pixels+svm__s0.json").read_text())
    assert svm["test"]["auc"] > 0.6

    text = md.read_text()
    assert "## Training speed\n\nkept as is" in text  # other engineers' sections survive
    assert text.count("## MedMNIST") == 1
    table = text.split("### BreastMNIST", 1)[1]
    assert "| medsight recipe (smoke test, limit64) |" in table
    assert f"| pixels + SVM (RBF) (smoke test, limit64) | {svm['test']['acc']:.3f} |" in table
    assert "| *published v2: Google AutoML Vision* | 0.861 | 0.919 |" in table

    # --write again: regenerated in place, not appended
    bench.main(["--write", "--out", str(out), "--markdown", str(md)])
    assert md.read_text() == text


def test_tiny_3d_run_trains_the_3d_recipe_and_its_shape_partner(bench, tmp_path):
    data = shared_path("medmnist", "adrenalmnist3d.npz")
    out = tmp_path / "results"
    rc = bench.main(["--run", "--datasets", str(data), "--methods", "recipe", "shape+svm",
                     "--epochs", "1", "--limit", "48", "--seeds", "1", "--out", str(out)])
    assert rc == 0
    rec = json.loads((out / "adrenalmnist3d__recipe__s0.json").read_text())
    assert rec["params"]["network"] == "cnn3d_small" and rec["params"]["augment"] == "mask"
    both = json.loads((out / "adrenalmnist3d__recipe+svm__s0.json").read_text())
    shape = json.loads((out / "adrenalmnist3d__shape+svm__s0.json").read_text())
    assert shape["params"]["features"] == ["shape"]
    for r in (rec, both, shape):
        assert r["test"]["n"] == 48 and 0.0 <= r["test"]["auc"] <= 1.0
    # shape descriptors of the adrenal masks separate the classes even from 48 volumes
    assert shape["test"]["auc"] > 0.6


def test_replace_section_keeps_neighbours(bench):
    from importlib import import_module

    common = import_module("common")
    doc = "# B\n\n## A\n\na\n\n## MedMNIST\n\nold\n\n## Z\n\nz\n"
    new = common.replace_section(doc, "## MedMNIST", "## MedMNIST\n\nnew\n")
    assert new == "# B\n\n## A\n\na\n\n## MedMNIST\n\nnew\n\n## Z\n\nz\n"
    assert common.replace_section("# B\n", "## MedMNIST", "## MedMNIST\n\nx\n") == (
        "# B\n\n## MedMNIST\n\nx\n")
