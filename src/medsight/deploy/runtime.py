"""`ModelRuntime`: a bundle's model as a function of the preprocessed tensor, on ONNX Runtime + numpy.

One `onnxruntime.InferenceSession` is built per bundle and shared by every thread (its ``run`` is
thread-safe); `forward` cuts a batch into chunks. A detector's graph (runtime kind "detector")
answers `detect` instead: boxes, scores and labels with the decoding inside the graph.
Networks map the preprocessed tensor straight to probabilities (and last feature maps);
classical models first compute their hand-crafted features with the very extractors training
used (`medsight.features`, refitted on the input layout only, which is all their ``fit``
learns), then run the scaler + classifier graph -- or, where skl2onnx could not convert the
classifier, its skops file loaded with an explicit list of trusted types. Nothing is unpickled
and torch is never imported.
"""

from __future__ import annotations

import io
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from medsight.errors import BundleIntegrityError, InvalidConfig

#: the only non-default types a skops fallback file may contain (scikit-learn internals)
TRUSTED_SKOPS_TYPES = (
    "sklearn.calibration._CalibratedClassifier",
    "sklearn.calibration._SigmoidCalibration",
    "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
    "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
    "sklearn._loss.link.IdentityLink",
    "sklearn._loss.link.LogitLink",
    "sklearn._loss.link.MultinomialLogit",
    "sklearn._loss.loss.HalfBinomialLoss",
    "sklearn._loss.loss.HalfMultinomialLoss",
    "sklearn.isotonic.IsotonicRegression",
    "sklearn.multiclass.OneVsRestClassifier",
    "sklearn.preprocessing._label.LabelBinarizer",
    "sklearn.tree._tree.Tree",
)
DEFAULT_BATCH = 64


@dataclass(frozen=True)
class DetectorOutput:
    """A detector graph's answer for a batch: ``boxes`` (N, K, 4) float32 xyxy in model-input
    pixel edges, ``scores`` (N, K) float32 (0 for padding), ``labels`` (N, K) int64; K is the
    bundle's ``max_detections``, each row sorted by score."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray


@dataclass(frozen=True)
class RuntimeOutput:
    """``probabilities``: (N, K) float64 (multilabel: (N, L)); ``features``: the network's last
    feature maps (N, F, *spatial) float32 when the graph exports them and they were asked for."""

    probabilities: np.ndarray
    features: np.ndarray | None = None


class ModelRuntime:
    """The model of an opened bundle (see the module docstring); built by `open_bundle`."""

    def __init__(self, manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> None:
        spec = manifest["runtime"]
        self.kind: str = spec["kind"]
        self.format: str = spec["format"]
        self.input_shape: tuple[int, ...] = tuple(int(s) for s in manifest["input"]["shape"])
        self.n_outputs: int = int(spec["n_outputs"])
        self._class_columns = np.asarray(spec.get("class_columns") or range(self.n_outputs), dtype=int)
        self._all_columns = np.array_equal(self._class_columns, np.arange(self.n_outputs))
        self._features_output: str | None = spec.get("features_output")
        self.cam_weights: np.ndarray | None = None
        cam = (manifest.get("heatmap") or {}).get("cam_weights")
        if cam:
            self.cam_weights = _load_npy(files, cam)
        graph = files.get(spec["graph"])
        if graph is None:
            raise BundleIntegrityError(f"bundle: model file {spec['graph']!r} is missing")
        self._extractor = _feature_extractor(spec["features"], self.input_shape) \
            if self.kind == "classical" else None
        self._session = self._skops = None
        if self.format == "onnx":
            self._session = _session(graph, spec["graph"])
            self._input_name = spec["input_name"]
            self._outputs = [spec["detection_outputs"][k] for k in ("boxes", "scores", "labels")] \
                if self.is_detector else [spec["probabilities_output"]]
            self._outputs_with_maps = [*self._outputs, self._features_output]
            self._input_dtype = np.dtype(spec.get("input_dtype", "float32"))
        elif self.format == "skops":
            self._skops = _load_skops(graph, spec["graph"])
        else:
            raise BundleIntegrityError(f"bundle: unknown model format {self.format!r}")

    @property
    def is_detector(self) -> bool:
        """Whether the graph gives boxes (`detect`) instead of probabilities (`forward`)."""
        return self.kind == "detector"

    @property
    def has_features(self) -> bool:
        """Whether `forward` can return the last feature maps (networks with global pooling)."""
        return self._features_output is not None

    def forward(self, x: np.ndarray, with_features: bool = True,
                batch_size: int = DEFAULT_BATCH) -> RuntimeOutput:
        """Probabilities (and feature maps) of a preprocessed float32 batch (N, *input_shape)."""
        if self.is_detector:
            raise InvalidConfig("this bundle holds a detector: it gives boxes (detect), not "
                                "class probabilities")
        x = self._checked(x)
        probas, maps = [], []
        want_maps = with_features and self.has_features
        for start in range(0, len(x), max(1, int(batch_size))):
            p, m = self._run(x[start:start + batch_size], want_maps)
            probas.append(p)
            if m is not None:
                maps.append(m)
        if not probas:
            return RuntimeOutput(np.zeros((0, self.n_outputs), dtype=np.float64), None)
        if len(probas) == 1:  # one chunk: its own fresh arrays, no copy
            return RuntimeOutput(probas[0], maps[0] if maps else None)
        return RuntimeOutput(np.concatenate(probas), np.concatenate(maps) if maps else None)

    def detect(self, x: np.ndarray, batch_size: int = DEFAULT_BATCH) -> DetectorOutput:
        """A detector's boxes, scores and labels for a preprocessed float32 batch
        (N, *input_shape), boxes on the model-input grid."""
        if not self.is_detector:
            raise InvalidConfig("this bundle holds a classifier: it gives probabilities (forward)")
        x = self._checked(x)
        parts = [self._session.run(self._outputs, {self._input_name: x[s:s + batch_size]})
                 for s in range(0, len(x), max(1, int(batch_size)))]
        if not parts:
            return DetectorOutput(np.zeros((0, 0, 4), np.float32), np.zeros((0, 0), np.float32),
                                  np.zeros((0, 0), np.int64))
        boxes, scores, labels = (np.concatenate([np.asarray(p[i]) for p in parts]) for i in range(3))
        return DetectorOutput(boxes.astype(np.float32, copy=False),
                              scores.astype(np.float32, copy=False),
                              labels.astype(np.int64, copy=False))

    # -- internals --------------------------------------------------------------------------
    def _checked(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != len(self.input_shape) + 1 or tuple(x.shape[1:]) != self.input_shape:
            raise InvalidConfig(
                f"the model takes preprocessed tensors (N, {', '.join(map(str, self.input_shape))}) "
                f"as the bundle's preprocess chain makes them; got shape {x.shape}")
        return x.astype(np.float32, copy=False)

    def _run(self, x: np.ndarray, want_maps: bool) -> tuple[np.ndarray, np.ndarray | None]:
        inputs = self._extractor(x) if self._extractor is not None else x
        if self._skops is not None:
            raw = np.asarray(self._skops.predict_proba(inputs), dtype=np.float64)
            return self._columns(raw), None
        names = self._outputs_with_maps if want_maps else self._outputs
        out = self._session.run(names, {self._input_name: inputs.astype(self._input_dtype, copy=False)})
        return self._columns(np.asarray(out[0], dtype=np.float64)), (out[1] if want_maps else None)

    def _columns(self, raw: np.ndarray) -> np.ndarray:
        """Classical heads know only the classes seen in training: one column per class."""
        if raw.shape[1] == self.n_outputs and self._all_columns:
            return raw
        out = np.zeros((len(raw), self.n_outputs))
        out[:, self._class_columns] = raw
        return out

def _feature_extractor(spec: Mapping[str, Any], input_shape: tuple[int, ...]):
    """The training feature step rebuilt from its names and parameters (x -> float64 features)."""
    names = list(spec.get("names") or [])
    if not names:
        return lambda x: np.asarray(x).reshape(len(x), -1).astype(np.float64)
    from medsight.features import make_features

    union = make_features(names, **(spec.get("params") or {}))
    union.fit(np.zeros((1, *input_shape), dtype=np.float32))
    columns = [str(c) for c in union.get_feature_names_out()]
    if columns != list(spec.get("columns") or []):
        raise BundleIntegrityError(
            f"bundle: the feature extractors {names} of this medsight give other columns than "
            "the ones the model was trained on; use the medsight version that made the bundle")
    return union.transform


def session_options() -> Any:
    """ONNX Runtime options: one intra-op thread per core this process may run on. ORT's default
    counts the machine's cores, so a pinned or container-limited process got more threads than
    cores, and between runs their spinning took the CPU from preprocessing (Predictor at batch 1
    on one core: 63 -> 129 images/s, bench/predict.py)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else (os.cpu_count() or 1)
    return opts


def _session(graph: bytes, name: str) -> Any:
    import onnxruntime as ort

    try:
        return ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail / InvalidGraph types
        raise BundleIntegrityError(f"bundle: {name!r} is not a loadable ONNX graph ({exc})") from exc


def _load_skops(data: bytes, name: str) -> Any:
    import skops.io as sio

    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception as exc:  # skops raises zip/json/key errors on a damaged file
        raise BundleIntegrityError(f"bundle: {name!r} is not a readable skops file ({exc})") from exc
    unknown = sorted(set(untrusted) - set(TRUSTED_SKOPS_TYPES))
    if unknown:
        raise BundleIntegrityError(
            f"bundle: {name!r} contains types outside medsight's trusted list: {unknown}; refused")
    return sio.loads(data, trusted=list(untrusted))


def _load_npy(files: Mapping[str, bytes], name: str) -> np.ndarray:
    data = files.get(name)
    if data is None:
        raise BundleIntegrityError(f"bundle: {name!r} is missing")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except ValueError as exc:
        raise BundleIntegrityError(f"bundle: {name!r} is not a plain .npy array ({exc})") from exc
