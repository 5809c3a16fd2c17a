"""Detection metrics: AP by hand on a tiny case, pycocotools equal to torchmetrics on fixed
predictions, the bootstrap's reweighted matches equal to pycocotools on repeated images, counts."""

from __future__ import annotations

import numpy as np
import pytest

from medsight.boxes import Boxes, Detections
from medsight.errors import InvalidDataset
from medsight.evaluate.detection import evaluate_detections
from medsight.evaluate.detection_coco import average_precision, coco_evaluate, weighted_ap

CLASSES = ["RBC", "WBC", "Platelets"]


def _tiny(iou_of_second: bool) -> tuple[list[Boxes], list[Detections]]:
    """2 true boxes, 3 detections: a hit (0.9), a miss (0.8), and the second box found (0.7)
    exactly, or with IoU 0.72 (a hit only at IoU thresholds 0.50 ... 0.70)."""
    truth = [Boxes.from_arrays([[0, 0, 10, 10], [20, 20, 30, 30]], [0, 0])]
    second = [20, 20, 30, 27.2] if iou_of_second else [20, 20, 30, 30]
    dets = [Detections([[0, 0, 10, 10], [50, 50, 60, 60], second], [0.9, 0.8, 0.7], [0, 0, 0])]
    return truth, dets


def test_ap_by_hand_on_two_boxes_and_three_detections() -> None:
    # PR points (P, R): (1, .5), (.5, .5), (2/3, 1) -> interpolated precision 1 up to recall .5
    # (51 of COCO's 101 recall points), 2/3 above (50 points)
    full = (51 + 50 * 2 / 3) / 101
    truth, dets = _tiny(iou_of_second=False)
    m = evaluate_detections(truth, dets, ["cell"], ci=False).metrics
    assert m["map50"] == pytest.approx(full, abs=1e-12)
    assert m["map50_95"] == pytest.approx(full, abs=1e-12)
    truth, dets = _tiny(iou_of_second=True)
    m = evaluate_detections(truth, dets, ["cell"], ci=False).metrics
    half = 51 / 101  # only the first box is found at IoU >= 0.75: recall stops at 0.5
    assert m["map50"] == pytest.approx(full, abs=1e-12)
    assert m["map50_95"] == pytest.approx((5 * full + 5 * half) / 10, abs=1e-12)
    assert m["per_class_ap"]["cell"] == {"ap50": pytest.approx(full), "ap50_95": pytest.approx(
        (5 * full + 5 * half) / 10), "n_boxes": 2}


def _random_case(seed: int, n_images: int = 25) -> tuple[list[Boxes], list[Detections]]:
    """Cells with jittered detections, missed cells, false alarms, wrong labels, an empty image
    and an image with no detection; every score distinct."""
    rng = np.random.default_rng(seed)
    truth, preds = [], []
    for i in range(n_images):
        n = 0 if i == 3 else int(rng.integers(1, 15))
        xy = rng.uniform(0, 500, (n, 2))
        boxes = np.c_[xy, xy + rng.uniform(8, 90, (n, 2))]
        labels = rng.integers(0, 3, n)
        truth.append(Boxes.from_arrays(boxes, labels))
        if i == 5:
            preds.append(Detections())
            continue
        found = rng.random(n) < 0.8
        jitter = boxes[found] + rng.normal(0, 4, (int(found.sum()), 4))
        flip = np.where(rng.random(int(found.sum())) < 0.1, rng.integers(0, 3, int(found.sum())),
                        labels[found])
        k = int(rng.integers(0, 6))
        fxy = rng.uniform(0, 500, (k, 2))
        false = np.c_[fxy, fxy + rng.uniform(8, 90, (k, 2))]
        preds.append(Detections(np.r_[jitter, false], rng.uniform(0.01, 1, len(jitter) + k),
                                np.r_[flip, rng.integers(0, 3, k)]))
    return truth, preds


def _torchmetrics(truth: list[Boxes], preds: list[Detections]) -> dict[str, np.ndarray]:
    torch = pytest.importorskip("torch")
    detection = pytest.importorskip("torchmetrics.detection")
    try:
        import faster_coco_eval  # noqa: F401
        backend = "faster_coco_eval"
    except ImportError:
        backend = "pycocotools"
    metric = detection.MeanAveragePrecision(box_format="xyxy", iou_type="bbox",
                                            class_metrics=True, backend=backend)
    metric.update(
        [{"boxes": torch.from_numpy(d.xyxy), "scores": torch.from_numpy(d.scores),
          "labels": torch.from_numpy(d.labels)} for d in preds],
        [{"boxes": torch.from_numpy(b.array()), "labels": torch.from_numpy(b.label_array())}
         for b in truth],
    )
    out = metric.compute()
    return {k: np.atleast_1d(v.numpy()).astype(np.float64) for k, v in out.items()}


@pytest.mark.parametrize("case", ["tiny", "random0", "random1"])
def test_pycocotools_equals_torchmetrics_on_fixed_predictions(case: str) -> None:
    truth, preds = _tiny(True) if case == "tiny" else _random_case(int(case[-1]))
    n_classes = 1 if case == "tiny" else 3
    ours = evaluate_detections(truth, preds, CLASSES[:n_classes], ci=False).metrics
    ref = _torchmetrics(truth, preds)
    # torchmetrics answers in float32
    assert ours["map50_95"] == pytest.approx(ref["map"][0], abs=1e-6)
    assert ours["map50"] == pytest.approx(ref["map_50"][0], abs=1e-6)
    per_class = dict(zip(ref["classes"].astype(int), ref["map_per_class"], strict=True))
    for k, c in enumerate(CLASSES[:n_classes]):
        assert ours["per_class_ap"][c]["ap50_95"] == pytest.approx(per_class[k], abs=1e-6)
    assert 0.2 < ours["map50"] < 0.95  # a case that is neither trivial nor hopeless


def test_reweighted_matches_equal_pycocotools_on_repeated_images() -> None:
    truth, preds = _random_case(2, n_images=12)
    _, matches = coco_evaluate(truth, preds, 3)
    weights = np.array([0, 2, 1, 3, 0, 1, 1, 2, 0, 1, 1, 0], dtype=float)
    rep = np.repeat(np.arange(12), weights.astype(int))
    ev_rep, _ = coco_evaluate([truth[i] for i in rep], [preds[i] for i in rep], 3)
    expected = np.asarray(ev_rep.eval["precision"])[:, :, :, 0, -1].mean(axis=1)  # (T, K)
    got = np.stack([weighted_ap(m, weights[None])[0] for m in matches.classes], axis=1)
    np.testing.assert_allclose(got, expected, atol=1e-12)
    ones = np.stack([weighted_ap(m, np.ones((1, 12)))[0] for m in matches.classes], axis=1)
    ev, _ = coco_evaluate(truth, preds, 3)
    np.testing.assert_allclose(ones[0], average_precision(ev)["ap50"], atol=1e-12)


def test_counting_error_per_class_at_the_score_threshold() -> None:
    truth = [Boxes.from_arrays([[0, 0, 5, 5], [10, 10, 20, 20], [30, 30, 40, 40]], [0, 0, 1]),
             Boxes.from_arrays([[0, 0, 5, 5]], [0])]
    preds = [Detections([[0, 0, 5, 5], [10, 10, 20, 20], [30, 30, 40, 40], [1, 1, 4, 4]],
                        [0.9, 0.6, 0.8, 0.3], [0, 0, 1, 0]),
             Detections([[0, 0, 5, 5], [6, 6, 9, 9]], [0.7, 0.55], [0, 1])]
    m = evaluate_detections(truth, preds, ["RBC", "WBC"], score_threshold=0.5, ci=False).metrics
    # image 1: RBC 2 vs 2, WBC 1 vs 1; image 2: RBC 1 vs 1, WBC 1 predicted vs 0 true
    assert m["count_exact"] == {"RBC": 1.0, "WBC": 0.5}
    assert m["count_mae"] == {"RBC": 0.0, "WBC": 0.5}
    m = evaluate_detections(truth, preds, ["RBC", "WBC"], score_threshold=0.65, ci=False).metrics
    assert m["count_exact"] == {"RBC": 0.5, "WBC": 1.0}  # image 1 loses its 0.6 RBC
    assert m["mean_count"]["RBC"] == {"true": 1.5, "predicted": 1.0}


def test_bootstrap_intervals_over_images_bracket_the_point() -> None:
    truth, preds = _random_case(0, n_images=40)
    m = evaluate_detections(truth, preds, CLASSES, n_boot=300, seed=1).metrics
    for name in ("map50", "map50_95"):
        ci = m["ci"][name]
        assert ci["value"] == m[name] and ci["n_valid"] == 300
        assert ci["ci_low"] < m[name] < ci["ci_high"]
        assert ci["ci_high"] - ci["ci_low"] < 0.3
    wbc = m["ci"]["count_exact"]["WBC"]
    assert wbc["ci_low"] <= m["count_exact"]["WBC"] <= wbc["ci_high"]
    again = evaluate_detections(truth, preds, CLASSES, n_boot=300, seed=1).metrics
    assert again["ci"] == m["ci"]  # seeded


def test_a_class_without_true_boxes_is_undefined_not_zero() -> None:
    truth = [Boxes.from_arrays([[0, 0, 10, 10]], [0])]
    preds = [Detections([[0, 0, 10, 10], [20, 20, 30, 30]], [0.9, 0.8], [0, 1])]
    m = evaluate_detections(truth, preds, ["RBC", "WBC"], ci=False).metrics
    assert m["per_class_ap"]["WBC"]["ap50"] is None
    assert m["map50"] == pytest.approx(1.0)  # the mean over classes that have boxes


def test_bad_inputs_are_named() -> None:
    truth, preds = _tiny(False)
    with pytest.raises(InvalidDataset, match="1 annotated images but 2 predictions"):
        evaluate_detections(truth, preds * 2, ["cell"])
    with pytest.raises(InvalidDataset, match="class index 0, outside the 0"):
        evaluate_detections(truth, preds, [])
    bad = [Detections([[0, 0, 1, 1]], [0.5], [3])]
    with pytest.raises(InvalidDataset, match="detection has class index 3"):
        evaluate_detections(truth, bad, ["cell"])


def test_schemes_send_boxes_to_the_detection_holdout() -> None:
    from medsight.data.sources.phantom import make_phantoms
    from medsight.errors import InvalidConfig
    from medsight.evaluate.detection_holdout import detection_holdout_evaluate
    from medsight.evaluate.schemes import cross_validate, holdout_evaluate
    from medsight.models.classical import ClassicalClassifier

    boxes = make_phantoms(n=20, size=16, task="detection")
    with pytest.raises(InvalidConfig, match="detection dataset.*detection_holdout_evaluate"):
        holdout_evaluate(ClassicalClassifier, boxes)
    with pytest.raises(InvalidConfig, match="detectors are not cross-validated"):
        cross_validate(ClassicalClassifier, boxes)
    with pytest.raises(InvalidConfig, match="does not predict boxes"):
        detection_holdout_evaluate(ClassicalClassifier, boxes)
    with pytest.raises(InvalidDataset, match="binary dataset, not detection"):
        detection_holdout_evaluate(ClassicalClassifier, make_phantoms(n=20, size=16))


def test_an_unreadable_image_is_left_out_of_the_split_metrics_and_named(tmp_path) -> None:
    from medsight.data.dataset import Dataset, Record, Task
    from medsight.evaluate.detection_holdout import evaluate_detection_split

    class Answers:
        """A fitted detector's answers, fixed: the second image could not be read."""

        score_threshold_ = 0.5

        def predict_detections(self, dataset):
            return [Detections([[0, 0, 10, 10]], [0.9], [0]), None, Detections()]

    records = [Record(str(tmp_path / f"{i}.png"), boxes=Boxes.from_arrays([[0, 0, 10, 10]], [0]))
               for i in range(3)]
    records.append(Record(str(tmp_path / "unannotated.png")))  # not annotated: not evaluated
    data = Dataset(records, Task.DETECTION, ["cell"], name="three")
    out = evaluate_detection_split(Answers(), data, "test", ci=False)
    assert out.refs == [records[0].ref, records[2].ref] and out.unreadable == [records[1].ref]
    d = out.to_dict()
    assert d["n"] == 2 and d["n_unreadable"] == 1 and d["unreadable"] == [records[1].ref]
    assert d["map50"] == pytest.approx(51 / 101)  # one of two cells found: precision 1 to recall .5
    assert d["count_exact"] == {"cell": 0.5}
