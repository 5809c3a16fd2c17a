"""A fitted `ClassicalClassifier` as the bundle's scaler + classifier graph (skl2onnx, else skops).

The hand-crafted feature step is not converted: the runtime recomputes it with the same
`medsight.features` extractors (their names, parameters and output columns go in the manifest).
The rest of the pipeline is converted with skl2onnx, double precision first, then single
precision; a conversion is kept only when it matches ``predict_proba`` on the run's own test
images within `PARITY_TOL` with identical decisions. Otherwise the head is stored with skops (no
pickle) and the manifest says why. With skl2onnx 1.20 / onnx 1.23 that happens to
HistGradientBoosting (the converter emits boolean attributes onnx refuses), isotonic calibration
(its ONNX interpolation differs by ~0.04) and often random forests (probabilities are multiples of
1/n_trees and the threshold is one of them, so float rounding flips ties).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

from medsight.deploy.export_network import Export
from medsight.errors import InvalidConfig

GRAPH = "model.onnx"
SKOPS_FILE = "model.skops"
PARITY_TOL = 1e-5
OPSETS = {"": 17, "ai.onnx.ml": 3}


def export_classical(estimator: Any, features: np.ndarray, expected: np.ndarray,
                     decide: Callable[[np.ndarray], np.ndarray]) -> Export:
    """Export the head of `estimator`; `features` (N, F) are the feature rows of check images
    whose `estimator.predict_proba` is `expected` (N, K); `decide` turns probabilities into
    decisions."""
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    if "cnn" in (estimator.features or []):
        raise InvalidConfig("a classical model on CNN-embedding features needs PyTorch at "
                            "prediction time and cannot be bundled; use hand-crafted features "
                            "or a torch model")
    steps = estimator.pipeline_.steps
    feature_step = steps[0][1]
    head = Pipeline([(n, s) for n, s in steps[1:] if s != "passthrough"])
    columns = ([] if isinstance(feature_step, FunctionTransformer)
               else [str(c) for c in feature_step.get_feature_names_out()])
    class_columns = [int(c) for c in np.asarray(estimator.pipeline_.classes_).ravel()] \
        if np.asarray(estimator.pipeline_.classes_).ndim == 1 else None
    runtime: dict[str, Any] = {
        "kind": "classical",
        "model": estimator.model,
        "features": {"names": list(estimator.features), "params": estimator.feature_params or {},
                     "columns": columns},
        "n_outputs": len(estimator.classes_),
        "class_columns": class_columns,
    }
    notes: list[str] = []
    tried: list[str] = []
    for dtype in (np.float64, np.float32):
        graph, why = _convert(head, features.shape[1], dtype)
        if graph is None:
            tried.append(f"{np.dtype(dtype).name}: {why}")
            continue
        got = _run(graph, features.astype(dtype))
        got = _columns(got, class_columns, len(estimator.classes_))
        diff = float(np.max(np.abs(got - expected))) if len(expected) else 0.0
        same = bool(np.array_equal(decide(got), decide(expected)))
        if diff < PARITY_TOL and same:
            runtime.update(format="onnx", graph=GRAPH, input_name="input",
                           input_dtype=np.dtype(dtype).name, probabilities_output="probabilities",
                           features_output=None, converter="skl2onnx")
            if dtype is np.float32:
                notes.append("skl2onnx converts this model in single precision only (float32 "
                             "thresholds/arithmetic); parity was checked on the test images")
            return Export({GRAPH: graph}, runtime, {"method": "occlusion", "cam_weights": None},
                          notes)
        tried.append(f"{np.dtype(dtype).name}: max |diff| {diff:.2e}, decisions identical: {same}")
    import skops.io as sio

    runtime.update(format="skops", graph=SKOPS_FILE, features_output=None, converter="skops",
                   onnx_attempts=tried)
    notes.append(f"{estimator.model} is stored with skops (loaded with an explicit list of trusted "
                 f"types, never unpickled) because skl2onnx gave no exact graph: {'; '.join(tried)}")
    return Export({SKOPS_FILE: sio.dumps(head)}, runtime,
                  {"method": "occlusion", "cam_weights": None}, notes)


def _convert(head: Any, n_features: int, dtype: type) -> tuple[bytes | None, str]:
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType

    kind = DoubleTensorType if dtype is np.float64 else FloatTensorType
    last = head.steps[-1][1]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            onx = to_onnx(head, initial_types=[("input", kind([None, n_features]))],
                          options={id(last): {"zipmap": False}}, target_opset=OPSETS)
        graph = onx.SerializeToString()
        _session(graph)
    except Exception as exc:  # skl2onnx/onnxruntime raise many types for unsupported models
        root = exc.__cause__ or exc
        return None, f"{type(root).__name__}: {str(root).splitlines()[0][:160]}"
    return graph, ""


def _session(graph: bytes) -> Any:
    import onnxruntime as ort

    return ort.InferenceSession(graph, providers=["CPUExecutionProvider"])


def _run(graph: bytes, x: np.ndarray) -> np.ndarray:
    session = _session(graph)
    return np.asarray(session.run(["probabilities"], {"input": x})[0], dtype=np.float64)


def _columns(raw: np.ndarray, class_columns: list[int] | None, k: int) -> np.ndarray:
    if class_columns is None or class_columns == list(range(k)):
        return raw
    out = np.zeros((len(raw), k))
    out[:, class_columns] = raw
    return out

