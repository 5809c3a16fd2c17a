"""`create_bundle`: a `medsight train` run folder -> one verifiable deployment bundle (``.msb``).

The bundle holds ``manifest.json`` (see `medsight.deploy.manifest`), ``preprocess.json`` (the
saved chain, self-contained), the model (``model.onnx``, or ``model.skops`` for a classical model
skl2onnx cannot convert exactly), ``cam_weights.npy`` for networks with global pooling, and
``model_card.html``. Before writing, the bundle's own runtime is run on the run's test images and
must reproduce ``predict_proba`` (max |diff| < 1e-5, identical decisions); the numbers go in the
manifest. Torch is imported here only for torch models, never when a bundle is opened.
"""

from __future__ import annotations

import platform
import uuid
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import medsight
from medsight.data.dataset import Task
from medsight.deploy import bundle_facts as facts
from medsight.deploy.bundle import Bundle
from medsight.deploy.bundle_archive import MANIFEST, write_bundle
from medsight.deploy.export_network import Export
from medsight.deploy.manifest import FORMAT, FORMAT_VERSION, json_clean, seal
from medsight.deploy.model_card import CARD_FILE, render_model_card
from medsight.deploy.runtime import ModelRuntime
from medsight.errors import BundleIntegrityError, InvalidConfig
from medsight.models.inputs import load_arrays

PREPROCESS_FILE = "preprocess.json"
PARITY_TOL = 1e-5
MAX_CHECK_IMAGES = 512  # test images the parity check runs on
_LIBRARIES = ("numpy", "onnxruntime", "onnx", "scikit-learn", "skl2onnx", "skops", "scipy",
              "scikit-image", "torch")


def create_bundle(run_dir: str | Path, out: str | Path, *, name: str | None = None,
                  version: str = "1.0.0", modality: str | None = None,
                  intended_use: str | None = None, limitations: list[str] | None = None,
                  overwrite: bool = False, created: datetime | None = None) -> Path:
    """Bundle the model of the run folder `run_dir` into `out` (a ``.msb`` zip, or a folder for
    any other path); returns the path. `name`/`version`/`modality`/`intended_use`/`limitations`
    override what the run folder says; an existing `out` is replaced only with `overwrite`."""
    run = facts.open_run(run_dir)
    est = run.estimator
    if Path(out).exists() and not overwrite:
        raise InvalidConfig(f"{out} already exists; choose another path or allow overwriting "
                            "(medsight bundle create --force)")
    chain = facts.preprocess_chain(est)
    input_spec = facts.input_facts(run, chain)
    if modality:
        input_spec["modality"] = modality
    check = _check_split(run)
    if est.kind == "detector":
        from medsight.deploy.export_detection import export_detector

        export = export_detector(est)
    else:
        arrays = load_arrays(check, chain)
        x = arrays.x
        expected = est.predict_proba(check)[arrays.ok]
        export = _export(est, x, expected)
    files: dict[str, bytes] = {PREPROCESS_FILE: chain.to_json().encode("utf-8"), **export.files}
    manifest = _manifest(run, input_spec, export, name, version, intended_use, limitations, created)
    manifest["preprocess"] = {"file": PREPROCESS_FILE, "fingerprint": chain.fingerprint(),
                              "steps": chain.describe()}
    if est.kind == "detector":
        from medsight.deploy.export_detection import detector_parity

        manifest["detection"] = _detection(est)
        manifest = json_clean(manifest)
        bundle = Bundle(Path(out), manifest, chain, ModelRuntime(manifest, files), "")
        manifest["runtime"]["parity"] = detector_parity(bundle, est, check)
    else:
        manifest["runtime"]["parity"] = _parity(manifest, files, x, expected, est, check.name)
    manifest = json_clean(manifest)
    files[CARD_FILE] = render_model_card(manifest).encode("utf-8")
    files[MANIFEST] = seal(manifest, files)
    return write_bundle(files, out, overwrite=overwrite)


def _check_split(run: facts.RunFolder) -> Any:
    ds = run.dataset
    counts = ds.split_counts()
    split = next((s for s in ("test", "val", "train") if counts.get(s)), None)
    part = ds.split(split) if split else ds
    return part.subset(range(min(len(part), MAX_CHECK_IMAGES)), split or "all")


def _export(est: Any, x: np.ndarray, expected: np.ndarray) -> Export:
    if est.kind == "classical":
        from medsight.deploy.export_classical import export_classical

        features = est.pipeline_.steps[0][1].transform(x)
        return export_classical(est, features, expected, est.decide)
    if est.kind in ("torch", "torch_ensemble"):
        from medsight.deploy.export_network import export_network

        return export_network(est)
    raise InvalidConfig(f"estimator kind {est.kind!r} cannot be bundled yet")


def _parity(manifest: dict[str, Any], files: dict[str, bytes], x: np.ndarray, expected: np.ndarray,
            est: Any, split: str) -> dict[str, Any]:
    runtime = ModelRuntime(manifest, files)
    got = runtime.forward(x, with_features=False).probabilities
    diff = float(np.max(np.abs(got - expected))) if len(x) else 0.0
    same = bool(np.array_equal(est.decide(got), est.decide(expected)))
    if not diff < PARITY_TOL or not same:
        raise BundleIntegrityError(
            f"the exported model does not reproduce predict_proba on the {split}: max |diff| "
            f"{diff:.3g} (tolerance {PARITY_TOL}), decisions identical: {same}; bundle not written")
    return {"split": split, "n": len(x), "max_abs_diff": diff, "tolerance": PARITY_TOL,
            "decisions_identical": same}


def _manifest(run: facts.RunFolder, input_spec: dict[str, Any], export: Export, name: str | None,
              version: str, intended_use: str | None, limitations: list[str] | None,
              created: datetime | None) -> dict[str, Any]:
    est = run.estimator
    metrics = run.metrics
    pos = est.positive_class_ if est.task_ is Task.BINARY else None
    if est.task_ is Task.DETECTION:
        calibration = {"method": "none", "description": "none: box scores are the detector's "
                                                        "own confidences, not calibrated"}
    else:
        calibration = _calibration(est, metrics)
    when = (created or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "medsight_version": medsight.__version__,
        "created": when.isoformat().replace("+00:00", "Z"),
        "model": {
            "name": name or run.config.get("name") or metrics.get("model") or run.path.name,
            "version": version,
            "uuid": str(uuid.uuid4()),
            "kind": est.kind,
            "label": metrics.get("model"),
            "params": _params(est),
        },
        "task": est.task_.value,
        "classes": list(est.classes_),
        "positive_class": pos,
        "positive_class_name": est.classes_[pos] if pos is not None else None,
        "threshold": _threshold(run, pos),
        "calibration": calibration,
        "input": input_spec,
        "runtime": export.runtime,
        "heatmap": export.heatmap,
        "notes": export.notes,
        "evaluation": facts.evaluation_summary(metrics),
        "data_card": facts.data_card(run),
        "intended_use": facts.intended_use(run.config, intended_use),
        "limitations": facts.limitations(run.config, limitations),
        "libraries": _libraries(),
        "source_run": run.path.name,
    }


def _detection(est: Any) -> dict[str, Any]:
    """A detector's manifest section: what its boxes are and which of them are returned."""
    from medsight.deploy.detections import DEFAULT_MIN_SCORE

    return {"max_detections": int(est.max_detections),
            "min_score": float(getattr(est, "min_score", DEFAULT_MIN_SCORE)),
            "box_format": "xyxy pixel edges of the original image",
            "counted_at": float(est.score_threshold_)}


def _params(est: Any) -> dict[str, Any]:
    params = est.get_params()
    params.pop("preprocess", None)
    if isinstance(params.get("params"), dict):
        params["params"] = {k: v for k, v in params["params"].items() if k != "preprocess"}
    return params


def _threshold(run: facts.RunFolder, pos: int | None) -> dict[str, Any]:
    est = run.estimator
    if est.task_ is Task.DETECTION:
        return {"value": float(est.score_threshold_), "method": "validation",
                "how_chosen": "chosen on the validation split when the detector was fitted",
                "applies_to": "each box's score: boxes at or above it are counted and drawn"}
    if est.task_ is Task.MULTILABEL:
        return {"value": 0.5, "method": "fixed", "applies_to": "each label's probability"}
    if est.task_ is not Task.BINARY:
        return {"value": None, "method": "argmax", "applies_to": "the most probable class"}
    evaluation = run.config.get("evaluation") or {}
    method = evaluation.get("threshold", "youden")
    chosen = {"youden": "maximises Youden's J (sensitivity + specificity - 1) on the validation "
                        "split",
              "target_sensitivity": f"the highest threshold reaching sensitivity "
                                    f"{evaluation.get('target_sensitivity')} on the validation split",
              "fixed": "fixed at 0.5"}.get(method, str(method))
    return {"value": float(est.threshold_), "method": method, "how_chosen": chosen,
            "target_sensitivity": evaluation.get("target_sensitivity"),
            "applies_to": f"P({est.classes_[pos]})"}


def _calibration(est: Any, metrics: dict[str, Any]) -> dict[str, Any]:
    if est.kind == "classical":
        method = est._calibration_method()
        text = {"sigmoid": "Platt scaling (sigmoid), fitted on held-out folds of the training set "
                           "(CalibratedClassifierCV), the calibrated copies averaged",
                "isotonic": "isotonic regression, fitted on held-out folds of the training set "
                            "(CalibratedClassifierCV), the calibrated copies averaged",
                None: "none: the classifier's own probabilities"}[method]
    else:
        params = est.get_params()
        inner = params.get("params") if isinstance(params.get("params"), dict) else params
        smoothing = inner.get("label_smoothing") if isinstance(inner, dict) else None
        text = "none: the network's softmax / sigmoid / cumulative-link probabilities" + (
            f" (trained with label smoothing {smoothing})" if smoothing else "")
        method = None
    test = metrics.get("test") or {}
    return {"method": method or "none", "description": text,
            "test_ece": test.get("ece"), "test_brier": test.get("brier")}


def _libraries() -> dict[str, str | None]:
    out: dict[str, str | None] = {"python": platform.python_version(), "medsight": medsight.__version__}
    for lib in _LIBRARIES:
        try:
            out[lib] = metadata.version(lib)
        except metadata.PackageNotFoundError:
            out[lib] = None
    return out
