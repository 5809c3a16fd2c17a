"""Deployment: verifiable model bundles, their ONNX Runtime model and the one `Predictor` (no torch
when predicting).

`create_bundle(run_dir, out)` turns a `medsight train` run folder into one ``.msb`` file;
`open_bundle(path)` verifies it and gives a `Bundle` with its manifest, preprocessing chain,
`ModelRuntime` and model card; `Predictor(bundle)` predicts with it. Every name is imported on
first use, so a decode worker importing `medsight.deploy.inputs` stays light.
"""

import importlib
from typing import Any

_EXPORTS = {
    "Bundle": "medsight.deploy.bundle",
    "open_bundle": "medsight.deploy.bundle",
    "verify_bundle": "medsight.deploy.bundle",
    "ModelRuntime": "medsight.deploy.runtime",
    "RuntimeOutput": "medsight.deploy.runtime",
    "create_bundle": "medsight.deploy.bundle_create",
    "Predictor": "medsight.deploy.predictor",
    "Prediction": "medsight.deploy.prediction",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'medsight.deploy' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
