"""The run report for a detector: mAP with CIs, per-class AP and counting error, PR and count
figures and the example images with boxes drawn, all inside one HTML file."""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.boxes import Boxes, Detections
from medsight.evaluate.detection import evaluate_detections
from medsight.evaluate.detection_plots import annotated_image, boxes_grid
from medsight.evaluate.report import DetectionSplit, ReportData, render_report
from medsight.explain.box_overlay import TRUTH_COLOUR, class_colour, draw_boxes

CLASSES = ["RBC", "WBC", "Platelets"]


def test_draw_boxes_outlines_the_box_edges_and_leaves_the_inside() -> None:
    img = np.full((60, 80, 3), 40, np.uint8)
    out = draw_boxes(img, [[20, 25, 50, 45]], [1], [0.87], CLASSES, width=1)
    colour = np.array(class_colour(1))
    # pixel edges (20, 25)-(50, 45): columns 20..49, rows 25..44 form the outline
    for r, c in [(25, 20), (25, 49), (44, 20), (44, 49), (35, 20), (35, 49), (44, 35)]:
        assert (out[r, c] == colour).all(), (r, c, out[r, c])
    assert (out[35, 35] == 40).all() and (out[46, 35] == 40).all() and (out[35, 51] == 40).all()
    assert (out[10:24, 20:30] != 40).any()  # the caption sits above the box
    assert (img == 40).all()  # a copy: the input is untouched
    truth = draw_boxes(img, [[5, 30, 15, 40]], [0], colours=TRUTH_COLOUR, width=1)
    assert (truth[39, 10] == TRUTH_COLOUR).all()
    top = draw_boxes(img, [[0, 0, 30, 30]], [0], [0.5], CLASSES, width=1)
    assert (top[29, 15] == class_colour(0)).all()  # no room above: the caption goes inside


def _case() -> tuple[list[Boxes], list[Detections], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    truth, preds, images = [], [], []
    for _ in range(8):
        boxes = np.array([[10, 10, 40, 40], [60, 20, 90, 50], [30, 60, 45, 75]], float)
        boxes += rng.uniform(-5, 5, (3, 1))
        truth.append(Boxes.from_arrays(boxes, [0, 1, 2]))
        preds.append(Detections(boxes + rng.normal(0, 2, boxes.shape),
                                rng.uniform(0.3, 1.0, 3), [0, 1, 2]))
        images.append(rng.uniform(0, 255, (3, 100, 120)).astype(np.float32))
    return truth, preds, images


def _png_images(html: str) -> list[PILImage.Image]:
    return [PILImage.open(io.BytesIO(base64.b64decode(b)))
            for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html)]


def test_detection_report_is_self_contained_with_tables_and_figures(tmp_path: Path) -> None:
    truth, preds, images = _case()
    ev = evaluate_detections(truth, preds, CLASSES, score_threshold=0.5, n_boot=200)
    pictures = [annotated_image(im, t, p, CLASSES, 0.5)
                for im, t, p in zip(images, truth, preds, strict=True)]
    data = ReportData(title="bccd: detector", task="detection", class_names=CLASSES,
                      positive_class=None, model_label="detector", threshold=None, splits=[],
                      detection=[DetectionSplit("test", ev, boxes_grid(pictures[:6], ["a"] * 6))],
                      data_summary={"counts": {"test": {"RBC": 8, "WBC": 8, "Platelets": 8}}})
    path = render_report(data, tmp_path / "report.html", figure_dir=tmp_path / "plots")
    html = path.read_text()
    assert "Detection results: test (n = 8 images, 24 boxes)" in html
    m = ev.metrics
    assert f"{m['map50']:.3f}" in html and f"{m['map50_95']:.3f}" in html
    lo, hi = m["ci"]["map50"]["ci_low"], m["ci"]["map50"]["ci_high"]
    assert f"{lo:.3f} – {hi:.3f}" in html
    for c in CLASSES:
        assert f"<td>{c}</td>" in html
        assert f"{m['per_class_ap'][c]['ap50']:.3f}" in html
        assert f"{m['count_exact'][c]:.3f}" in html
    assert "count exact" in html and "score threshold" in html
    assert "http://" not in html and "https://" not in html  # nothing fetched from outside
    pngs = _png_images(html)
    assert len(pngs) == 3  # PR curves, counts, example grid
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == [
        "test_counts.png", "test_examples.png", "test_pr.png"]


def test_annotated_image_draws_truth_and_only_detections_above_the_threshold() -> None:
    img = np.zeros((1, 50, 50), np.float32)
    img[0, 10:20, 10:20] = 1.0
    truth = Boxes.from_arrays([[10, 10, 20, 20]], [0])
    det = Detections([[30, 30, 45, 45], [2, 25, 8, 40]], [0.9, 0.2], [1, 1])
    out = annotated_image(img, truth, det, CLASSES, threshold=0.5, min_size=0)
    assert out.shape == (50, 50, 3)
    assert (out == np.array(TRUTH_COLOUR)).all(axis=2).any()
    wbc = (out == np.array(class_colour(1))).all(axis=2)
    assert wbc[35:45, 30:45].any() and not wbc[26:40, 2:8].any()
    big = annotated_image(img, truth, det, CLASSES, threshold=0.5)  # small: enlarged x7
    assert big.shape == (350, 350, 3)
    assert (big[7 * 44 + 3, 7 * 30:7 * 45] == np.array(class_colour(1))).all(axis=1).any()


def test_report_of_a_grey_volume_is_refused_clearly() -> None:
    from medsight.errors import InvalidConfig

    with pytest.raises(InvalidConfig, match="2D image"):
        annotated_image(np.zeros((1, 4, 8, 8)), None, None, CLASSES)
