"""Evaluation: metrics, bootstrap confidence intervals, paired model comparison, thresholds,
calibration, detection metrics (COCO mAP, counts) (and, in their own modules, validation schemes
and the HTML report)."""

from medsight.evaluate.batched import HEADLINE_METRICS, METRICS
from medsight.evaluate.bootstrap import bootstrap_ci, metrics_with_ci
from medsight.evaluate.calibration import expected_calibration_error, reliability_curve
from medsight.evaluate.compare import delong_test, paired_bootstrap
from medsight.evaluate.detection import DetectionEvaluation, evaluate_detections
from medsight.evaluate.metrics import compute_metrics
from medsight.models.threshold import apply_threshold, choose_threshold

__all__ = [
    "DetectionEvaluation",
    "HEADLINE_METRICS",
    "METRICS",
    "apply_threshold",
    "bootstrap_ci",
    "choose_threshold",
    "compute_metrics",
    "delong_test",
    "evaluate_detections",
    "expected_calibration_error",
    "metrics_with_ci",
    "paired_bootstrap",
    "reliability_curve",
]
