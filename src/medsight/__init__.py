"""medsight: medical image classification and detection, from files to a validated model.

The public API is re-exported here; heavy parts (torch, scikit-learn) load on first use, so
``import medsight`` stays fast. Everything not listed in ``__all__`` may change.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    # errors
    "MedsightError": "medsight.errors",
    "UnreadableImage": "medsight.errors",
    "InvalidDataset": "medsight.errors",
    "InvalidConfig": "medsight.errors",
    "LeakageError": "medsight.errors",
    "BundleIntegrityError": "medsight.errors",
    "NotFittedError": "medsight.errors",
    # acquire
    "Image": "medsight.io",
    "read_image": "medsight.io",
    "read_dicom_series": "medsight.io",
    "Dataset": "medsight.data",
    "Record": "medsight.data",
    "Task": "medsight.data",
    "open_source": "medsight.data.open",
    "from_class_folders": "medsight.data.sources",
    "from_manifest": "medsight.data.sources",
    "from_medmnist": "medsight.data.sources",
    "from_dicom_dir": "medsight.data.sources",
    "from_cifar10": "medsight.data.sources",
    "make_phantoms": "medsight.data.sources",
    "from_voc": "medsight.data.sources.voc",
    "from_coco": "medsight.data.sources.coco",
    "to_coco": "medsight.data.sources.coco",
    "from_box_csv": "medsight.data.sources.box_csv",
    "Boxes": "medsight.boxes",
    "Detections": "medsight.boxes",
    "fetch_medmnist": "medsight.data.fetch",
    # clean
    "holdout": "medsight.data.splits",
    "kfold": "medsight.data.splits",
    "check_dataset": "medsight.data.quality",
    "assert_no_leakage": "medsight.data.quality",
    "deidentify": "medsight.data.deid",
    "Preprocess": "medsight.preprocess",
    # features and models
    "make_features": "medsight.features",
    "MedsightEstimator": "medsight.models.base",
    "load_estimator": "medsight.models.base",
    "clone": "medsight.models.base",
    "ClassicalClassifier": "medsight.models.classical",
    "TorchClassifier": "medsight.models.torch_classifier",
    "TorchEnsemble": "medsight.models.torch_ensemble",
    "TorchDetector": "medsight.models.torch_detector",
    "create_network": "medsight.models.networks",
    "list_networks": "medsight.models.networks",
    "export_onnx": "medsight.models.export_onnx",
    # evaluate
    "compute_metrics": "medsight.evaluate",
    "metrics_with_ci": "medsight.evaluate",
    "delong_test": "medsight.evaluate",
    "holdout_evaluate": "medsight.evaluate.schemes",
    "cross_validate": "medsight.evaluate.schemes",
    "external_evaluate": "medsight.evaluate.schemes",
    "render_report": "medsight.evaluate.report",
    "evaluate_detections": "medsight.evaluate.detection",
    # runs
    "load_config": "medsight.config",
    "run_experiment": "medsight.experiment",
    # deploy
    "create_bundle": "medsight.deploy",
    "open_bundle": "medsight.deploy",
    "Predictor": "medsight.deploy",
    "Prediction": "medsight.deploy",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medsight' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
