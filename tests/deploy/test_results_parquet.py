"""`medsight predict --out X.parquet` with the local engine: a detector's boxes and counts in the
Parquet layout, the same values as its JSON output; and a run that fails midway leaves the previous
results file untouched (written under a temporary name, renamed only when complete)."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest
from deploy.run_pngs import write_test_pngs
from deploy.tiny_detector import smear_jpegs

from medsight.deploy.batch import predict_paths

pytestmark = pytest.mark.xdist_group("deploy_runs")


def test_a_detectors_parquet_holds_its_json_boxes_and_counts(detector_run, bundle_of,
                                                             tmp_path) -> None:
    bundle = bundle_of(detector_run)
    inputs = [*smear_jpegs(2), tmp_path / "missing.png"]
    predict_paths(bundle, inputs, out=tmp_path / "r.parquet")
    predict_paths(bundle, inputs, out=tmp_path / "r.json")
    table = pq.read_table(tmp_path / "r.parquet")
    classes = json.loads((tmp_path / "r.coco.json").read_text())["categories"]
    assert table.schema.field("counts").type.num_fields == len(classes)
    rows, objects = table.to_pylist(), json.loads((tmp_path / "r.json").read_text())
    assert len(rows) == 3 and rows[2]["error"].startswith("cannot read image")
    for row, obj in zip(rows[:2], objects[:2], strict=True):
        assert row["boxes"] == obj["boxes"] and obj["boxes"]  # label, score, [x1, y1, x2, y2]
        assert row["counts"] == obj["counts"] and row["label"] == obj["label"]
        assert obj["probabilities"] == {} and row["probabilities"] is None  # documented


def test_a_failed_run_leaves_the_previous_results_file_as_it_was(classical_run, bundle_of,
                                                                tmp_path) -> None:
    folder = tmp_path / "pngs"
    write_test_pngs(classical_run, folder)
    out = tmp_path / "results.parquet"
    predict_paths(bundle_of(classical_run), [folder], out=out)
    before = out.read_bytes()

    def fail_midway(done: int, _total: int | None) -> None:
        if done == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        predict_paths(bundle_of(classical_run), [folder], out=out, progress=fail_midway)
    assert out.read_bytes() == before and pq.read_table(out).num_rows == len(list(folder.iterdir()))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pngs", "results.parquet"]  # no temp file
