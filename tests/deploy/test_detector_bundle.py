"""A detector bundle end to end on real BCCD smears: the manifest states the task, classes, score
threshold and box limits; the bundle's Predictor (ONNX Runtime, no torch) gives the estimator's own
boxes within 1e-3 px on test JPEGs read from disk, counts them at the threshold and draws them;
`medsight predict` writes boxes into the JSON, a COCO file pycocotools reads and one annotated PNG
per image; predicting loads neither torch nor the dataset sources; a classifier's and a detector's
runtimes refuse each other's call."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys

import numpy as np
import pytest
from deploy.tiny_detector import smear_jpegs
from PIL import Image as PILImage
from typer.testing import CliRunner

from medsight.cli import app
from medsight.data.dataset import Dataset, Record, Task
from medsight.deploy import open_bundle
from medsight.deploy.bundle_facts import open_run
from medsight.deploy.detections import count_label
from medsight.deploy.predictor import Predictor
from medsight.errors import InvalidConfig

pytestmark = pytest.mark.xdist_group("deploy_runs")


@pytest.fixture(scope="module")
def detector(detector_run, bundle_of):
    """(the fitted TorchDetector, the bundle path)."""
    return open_run(detector_run).estimator, bundle_of(detector_run)


def _png_size(data: bytes) -> tuple[int, int]:
    with PILImage.open(io.BytesIO(data)) as img:
        assert img.mode == "RGB"
        return img.size


def test_manifest_states_the_detector(detector) -> None:
    est, path = detector
    bundle = open_bundle(path)
    m = bundle.manifest
    assert m["task"] == "detection" and m["classes"] == list(est.classes_)
    assert m["model"]["kind"] == "detector" and m["runtime"]["kind"] == "detector"
    assert m["threshold"]["value"] == pytest.approx(est.score_threshold_)
    assert m["detection"]["max_detections"] == est.max_detections == 20
    assert m["detection"]["min_score"] == pytest.approx(est.min_score)
    parity = m["runtime"]["parity"]
    assert parity["n"] == 6 and parity["boxes"] > 0 and parity["max_abs_box_diff_px"] < 1e-3
    assert "boxes" in bundle.model_card_html and "max box difference" in bundle.model_card_html
    assert any("task: detection" in line for line in bundle.summary())


def test_bundle_boxes_equal_the_estimators_on_bccd_jpegs(detector) -> None:
    est, path = detector
    files = smear_jpegs(3)
    expected = est.predict_detections(Dataset([Record(str(f)) for f in files], Task.DETECTION,
                                              est.classes_, name="jpegs"))
    predictor = Predictor(path)
    got = predictor.predict([str(f) for f in files])
    n_classes = len(est.classes_)
    assert sum(len(d) for d in expected) > 0
    for want, pred in zip(expected, got, strict=True):
        boxes = np.array([b["box"] for b in pred.boxes]).reshape(-1, 4)
        assert len(boxes) == len(want)
        for b in pred.boxes:  # its twin: same class, corners within 1e-3 px (ties may swap ranks)
            dist = np.abs(want.xyxy - np.array(b["box"])).max(axis=1)
            dist[want.labels != est.classes_.index(b["label"])] = np.inf
            j = int(np.argmin(dist))
            assert dist[j] < 1e-3 and abs(want.scores[j] - b["score"]) < 1e-5
        assert [b["score"] for b in pred.boxes] == sorted((b["score"] for b in pred.boxes), reverse=True)
        assert (boxes[:, [0, 2]] >= 0).all() and (boxes[:, [0, 2]] <= 640).all()  # original pixels
        assert (boxes[:, [1, 3]] >= 0).all() and (boxes[:, [1, 3]] <= 480).all()
        counts = want.counts(n_classes, est.score_threshold_)
        assert pred.counts == dict(zip(est.classes_, counts.tolist(), strict=True))
        assert pred.label == count_label(pred.counts) and pred.probabilities == {}
        counted = want.scores[want.scores >= est.score_threshold_]
        assert pred.confidence == pytest.approx(float(counted.max()) if len(counted) else 0.0)
        assert pred.threshold == pytest.approx(est.score_threshold_)
        row = pred.to_dict()
        assert row["boxes"] == pred.boxes and row["counts"] == pred.counts


def test_the_picture_shows_the_counted_boxes(detector) -> None:
    _, path = detector
    predictor = Predictor(path)
    [jpeg] = smear_jpegs(1)
    plain = predictor.predict(str(jpeg), heatmap=True)
    assert _png_size(plain.image_png) == _png_size(plain.annotated_png) == (640, 480)
    predictor.detection = dataclasses.replace(predictor.detection, threshold=0.0)  # count them all
    drawn = predictor.predict(str(jpeg), heatmap=True)
    assert sum(drawn.counts.values()) == len(drawn.boxes) > 0
    image = np.asarray(PILImage.open(io.BytesIO(drawn.image_png)))
    annotated = np.asarray(PILImage.open(io.BytesIO(drawn.annotated_png)))
    x1, y1, x2, y2 = (int(round(v)) for v in drawn.boxes[0]["box"])
    changed = np.any(image != annotated, axis=2)
    assert changed[max(0, y1 - 2):y2 + 3, max(0, x1 - 2):x2 + 3].any()  # its outline is drawn
    assert not changed[-40:, :40].all()  # and not everything was painted over


def test_offline_predict_writes_boxes_json_coco_and_pngs(detector, tmp_path) -> None:
    from pycocotools.coco import COCO

    _, path = detector
    files = smear_jpegs(2)
    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, ["predict", "-b", str(path), *map(str, files), "--out",
                                      str(out), "--allow-unsigned"])
    assert result.exit_code == 0, result.output
    rows = json.loads(out.read_text())
    direct = Predictor(path).predict([str(f) for f in files])
    assert [r["boxes"] for r in rows] == [p.boxes for p in direct]
    assert [r["counts"] for r in rows] == [p.counts for p in direct]
    doc = json.loads((tmp_path / "results.coco.json").read_text())
    assert [i["file_name"] for i in doc["images"]] == [str(f) for f in files]
    assert [c["name"] for c in doc["categories"]] == Predictor(path).classes
    assert len(doc["annotations"]) == sum(len(r["boxes"]) for r in rows)
    first = rows[0]["boxes"][0]
    x1, y1, x2, y2 = first["box"]
    ann = doc["annotations"][0]
    assert ann["bbox"] == pytest.approx([x1, y1, x2 - x1, y2 - y1], abs=1e-3)
    assert ann["score"] == pytest.approx(first["score"])
    coco = COCO()
    coco.dataset = doc
    coco.createIndex()
    assert len(coco.loadRes(doc["annotations"]).getAnnIds()) == len(doc["annotations"])
    pngs = sorted((tmp_path / "results_annotated").glob("*.png"))
    assert [p.name for p in pngs] == [f"{i:06d}_{f.stem}.png" for i, f in enumerate(files, 1)]
    assert _png_size(pngs[0].read_bytes()) == (640, 480)
    assert "boxes (COCO)" in result.output


def test_csv_results_hold_counts_per_class(detector, tmp_path) -> None:
    import csv

    from medsight.deploy.batch import predict_paths

    _, path = detector
    files = smear_jpegs(2)
    summary = predict_paths(path, files, out=tmp_path / "counts.csv")
    assert summary.ok == 2 and summary.coco == tmp_path / "counts.coco.json"
    rows = list(csv.DictReader((tmp_path / "counts.csv").open()))
    direct = Predictor(path).predict([str(f) for f in files])
    classes = Predictor(path).classes
    assert [c for c in rows[0] if c.startswith("n_")] == [f"n_{c}" for c in classes]
    assert [{c: int(r[f"n_{c}"]) for c in classes} for r in rows] == [p.counts for p in direct]
    assert [r["label"] for r in rows] == [p.label for p in direct]


def test_runtimes_refuse_the_other_kinds_call(detector, cnn2d_run, bundle_of) -> None:
    _, path = detector
    det = open_bundle(path).runtime
    x = np.zeros((1, *det.input_shape), np.float32)
    with pytest.raises(InvalidConfig, match="detector"):
        det.forward(x)
    assert det.detect(x).boxes.shape == (1, 20, 4)
    clf = open_bundle(bundle_of(cnn2d_run)).runtime
    with pytest.raises(InvalidConfig, match="classifier"):
        clf.detect(np.zeros((1, *clf.input_shape), np.float32))


def test_predicting_boxes_loads_no_torch_nor_dataset_sources(detector) -> None:
    _, path = detector
    [jpeg] = smear_jpegs(1)
    script = ("import json, sys\n"
              "from medsight.deploy.predictor import Predictor\n"
              "p = Predictor(sys.argv[1]).predict(sys.argv[2], heatmap=True)\n"
              "print(json.dumps([len(p.boxes), [m for m in ('torch', 'medsight.data', 'pydicom', "
              "'scipy.ndimage', 'pandas') if m in sys.modules]]))")
    run = subprocess.run([sys.executable, "-c", script, str(path), str(jpeg)], capture_output=True,
                         text=True)
    assert run.returncode == 0, run.stderr
    n_boxes, loaded = json.loads(run.stdout.strip().splitlines()[-1])
    assert n_boxes > 0 and loaded == []


def test_bundle_create_and_verify_commands_describe_the_detector(detector_run, tmp_path) -> None:
    out = tmp_path / "detector.msb"
    created = CliRunner().invoke(app, ["bundle", "create", str(detector_run), "-o", str(out)])
    assert created.exit_code == 0, created.output
    assert "parity with predict_detections on 6 images" in created.output
    verified = CliRunner().invoke(app, ["bundle", "verify", str(out)])
    assert verified.exit_code == 0, verified.output
    assert "task: detection" in verified.output and "not signed" in verified.output


def test_parity_matches_boxes_not_ranks() -> None:
    from medsight.deploy.export_detection import _at_cut, _match

    a = (np.array([[0, 0, 10, 10], [20, 20, 30, 30], [5, 5, 6, 6]], float),
         np.array([0.5, 0.5, 0.2]), np.array([0, 0, 1]))
    swapped = (a[0][[1, 0, 2]] + 1e-4, a[1][[1, 0, 2]], a[2][[1, 0, 2]])  # a tie in another order
    assert _match(a, swapped)[2] == [] and _match(a, swapped)[0] < 1e-3
    moved = (a[0] + np.array([[0, 0, 0, 0], [0, 0, 0, 0], [1, 0, 1, 0]]), a[1], a[2])
    assert _match(a, moved)[2] == [0.2, 0.2]  # the moved box is missing on both sides
    relabelled = (a[0], a[1], np.array([0, 0, 0]))
    assert _match(a, relabelled)[2] == [0.2, 0.2]
    assert _at_cut(0.2, a[1], a[1], floor=0.05, k=3)  # the lowest of k boxes: a tie at the cut
    assert not _at_cut(0.2, a[1], a[1], floor=0.05, k=20)
    assert _at_cut(0.05, a[1], a[1], floor=0.05, k=20)  # at the floor
