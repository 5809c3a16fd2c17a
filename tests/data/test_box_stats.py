"""Box statistics and the data check of detection datasets; splits of BCCD (given, holdout,
k-fold) stratified on the rarest class of each image."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import shared_path

from medsight.boxes import Boxes
from medsight.cli.quality_report import quality_text
from medsight.data.dataset import Dataset, Record, Task
from medsight.data.quality import box_statistics, check_dataset
from medsight.data.sources import from_voc
from medsight.data.splits import holdout, kfold, stratification_labels


def _tiny() -> Dataset:
    records = [
        Record("phantom:seed=0;size=32;index=0", boxes=Boxes(((0, 0, 4, 2), (1, 1, 9, 5)), (0, 0))),
        Record("phantom:seed=0;size=32;index=1", boxes=Boxes(((2, 2, 8, 8),), (1,))),
        Record("phantom:seed=0;size=32;index=2", boxes=Boxes()),
        Record("phantom:seed=0;size=32;index=3"),
    ]
    return Dataset(records, Task.DETECTION, ["a", "b"], name="tiny")


def test_box_statistics_count_sizes_and_boxes_per_image():
    stats = box_statistics(_tiny())
    assert (stats.n_boxes, stats.n_annotated, stats.n_empty, stats.n_unannotated) == (3, 3, 1, 1)
    assert stats.per_image == {"mean": 1.0, "min": 0, "max": 2}
    a, b = stats.classes
    assert (a.count, a.images, b.count, b.images) == (2, 1, 1, 1)
    assert a.width["min"] == 4 and a.width["max"] == 8 and a.width["median"] == 6
    assert a.area["max"] == 32 and b.height["median"] == 6
    assert a.per_image == {"mean": round(2 / 3, 3), "min": 0, "max": 2}


def test_stratification_uses_the_rarest_class_present():
    y = stratification_labels(_tiny())
    assert y.tolist() == [0, 1, 2, -1]  # b is rarer than a, but image 0 holds only a


def test_data_check_of_bccd_shows_box_statistics_and_the_import_report():
    ds = from_voc(shared_path("bccd"), classes=["RBC", "WBC", "Platelets"])
    report = check_dataset(ds, near_duplicate_threshold=None)
    payload = json.loads(json.dumps(report.to_dict()))
    assert payload["class_counts"]["test"] == {"RBC": 805, "WBC": 71, "Platelets": 69, "unlabelled": 0}
    wbc = payload["boxes"]["classes"][1]
    assert wbc["name"] == "WBC" and wbc["count"] == 372 and wbc["per_image"]["max"] == 2
    assert payload["boxes"]["per_image"]["min"] >= 1 and payload["boxes"]["n_boxes"] == 4886
    assert payload["box_import"]["counts"]["zero_area"] == 2
    text = quality_text(report, width=160)
    assert "Box import: voc" in text and "2 zero area" in text and "BloodImage_00338" in text
    assert "Platelets" in text and "median [q25-q75]" in text


def test_bccd_given_holdout_and_kfold_splits():
    ds = from_voc(shared_path("bccd"), classes=["RBC", "WBC", "Platelets"])
    fresh = ds.with_splits([None] * len(ds))
    split = holdout(fresh, ratios=(0.7, 0.15, 0.15), seed=0)
    again = holdout(fresh, ratios=(0.7, 0.15, 0.15), seed=0)
    assert split.splits == again.splits
    assert split.split_counts() == {"train": 254, "val": 55, "test": 55}
    for name in ("val", "test"):  # every class in every part, in about its share
        counts = split.split(name).class_counts()
        assert all(v > 0 for v in counts.values())
        share = counts["Platelets"] / sum(counts.values())
        assert share == pytest.approx(361 / 4886, abs=0.03)
    folds = kfold(ds, k=5, seed=0)
    tests = np.concatenate([t for _, t in folds])
    assert sorted(tests.tolist()) == list(range(len(ds)))
    sizes = [len(t) for _, t in folds]
    assert max(sizes) - min(sizes) <= 1
    for train, test in folds:
        assert not set(train) & set(test)
        assert ds.subset(test).class_counts()["WBC"] > 50


def test_data_check_command_prints_box_statistics_as_json():
    done = subprocess.run([sys.executable, "-m", "medsight.cli", "data", "check",
                           "phantom:n=12,size=32,task=detection", "--json"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    payload = json.loads(done.stdout)
    lesions = payload["boxes"]["classes"][0]
    assert payload["task"] == "detection" and lesions["name"] == "lesion"
    assert lesions["count"] == sum(payload["class_counts"][s]["lesion"] for s in payload["split_counts"])
    assert payload["box_import"] is None  # generated, not imported
