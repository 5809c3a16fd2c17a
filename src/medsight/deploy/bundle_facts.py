"""What a bundle's manifest says about its run: data card, input intensities, evaluation, uses.

Everything is read from the run folder that `medsight train` wrote (``config.yaml``,
``splits.csv``, ``metrics.json``, ``model/``): the records are rebuilt from ``splits.csv``, the
training images are read again for their intensity statistics (raw and after the saved
preprocessing chain), and the metrics are copied with their confidence intervals.
"""

from __future__ import annotations

import ast
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medsight.data.dataset import Dataset, Record, Task
from medsight.errors import InvalidConfig, UnreadableImage
from medsight.jsonable import jsonable
from medsight.models.base import MedsightEstimator, load_estimator

MAX_STATS_IMAGES = 512  # training images read for the intensity statistics (evenly spaced)
PIXELS_PER_IMAGE = 4096  # pixels sampled per image for the pooled percentiles
HEADLINE = ("map50", "map50_95", "per_class_ap", "count_exact", "count_mae",
            "auc", "acc", "balanced_acc", "sensitivity", "specificity", "ppv", "npv", "f1",
            "kappa", "ece", "brier", "log_loss", "mae", "qwk")
_NOT_EXTERNAL = {"model", "val", "test", "cv", "candidates", "quality", "leakage",
                 "external_vs_internal"}
DEFAULT_INTENDED_USE = (
    "Research and decision support only: a second reader for trained professionals on images like "
    "those it was trained on (same modality, acquisition and population). It is not a medical "
    "device and does not make a diagnosis.")
DEFAULT_LIMITATIONS = (
    "Validated only on the data described in the data card; performance on other scanners, sites, "
    "populations or image types is unknown.",
    "Probabilities are estimates; the stated confidence intervals reflect only the evaluation data "
    "described here.",
    "Inputs that differ from the training images (modality, channels, size, intensity range) are "
    "flagged but may still give confident, wrong answers.",
)


@dataclass
class RunFolder:
    """A run folder opened for bundling."""

    path: Path
    config: dict[str, Any]
    metrics: dict[str, Any]
    splits: pd.DataFrame
    estimator: MedsightEstimator
    dataset: Dataset


def open_run(run_dir: str | Path) -> RunFolder:
    """Read a `medsight train` run folder; InvalidConfig naming what is missing."""
    path = Path(run_dir)
    for name in ("config.yaml", "splits.csv", "metrics.json", "model/estimator.json"):
        if not (path / name).is_file():
            raise InvalidConfig(f"{path} is not a complete medsight run folder: {name} is missing "
                                "(make one with `medsight train CONFIG`)")
    config = yaml.safe_load((path / "config.yaml").read_text()) or {}
    metrics = json.loads((path / "metrics.json").read_text())
    splits = pd.read_csv(path / "splits.csv", dtype={"patient_id": str, "study_id": str,
                                                       "ref": str, "split": str})
    estimator = load_estimator(path / "model")
    dataset = _dataset(splits, estimator, str(config.get("name") or path.name))
    return RunFolder(path, config, metrics, splits, estimator, dataset)


def _dataset(frame: pd.DataFrame, est: MedsightEstimator, name: str) -> Dataset:
    records = []
    meta_cols = [c for c in frame.columns if c.startswith("meta.")]
    for row in frame.to_dict("records"):
        meta = {c[len("meta."):]: jsonable(row[c]) for c in meta_cols if not _missing(row[c])}
        records.append(Record(ref=row["ref"], label=_label(row["label"], est.task_),
                              patient_id=None if _missing(row.get("patient_id")) else row["patient_id"],
                              study_id=None if _missing(row.get("study_id")) else row["study_id"],
                              split=None if _missing(row.get("split")) else row["split"], meta=meta))
    return Dataset(records, est.task_, est.classes_, name=name,
                   positive_class=getattr(est, "positive_class_", None))


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label(value: Any, task: Task) -> Any:
    if _missing(value) or task is Task.DETECTION:  # a detection record's target is its boxes
        return None
    if task is Task.MULTILABEL:
        return tuple(int(v) for v in (ast.literal_eval(value) if isinstance(value, str) else value))
    return int(float(value))


def preprocess_chain(est: MedsightEstimator) -> Any:
    """The one saved `Preprocess` chain of an estimator (an ensemble's members share one)."""
    members = list(getattr(est, "members_", None) or [est])
    chains = {m.preprocess_.fingerprint(): m.preprocess_ for m in members}
    if len(chains) != 1:
        raise InvalidConfig("ensemble members use different preprocessing chains; cannot bundle")
    return next(iter(chains.values()))


# -- input specification -------------------------------------------------------------------------
def input_facts(run: RunFolder, chain: Any) -> dict[str, Any]:
    """Modality, channels, shapes, spacing and intensity statistics of the training images."""
    train = run.dataset.split("train") if "train" in run.dataset.split_counts() else run.dataset
    n = len(train)
    picks = np.unique(np.linspace(0, n - 1, min(n, MAX_STATS_IMAGES)).astype(int)) if n else []
    raw, pre, modalities, channels, shapes = [], [], Counter(), Counter(), []
    spacings, pre_spacings = [], []
    pre_shape: tuple[int, ...] | None = None
    rng = np.random.default_rng(0)
    for i in picks:
        try:
            image = train.image(int(i))
        except UnreadableImage:
            continue
        modalities[image.modality or train.records[int(i)].meta.get("modality") or "unknown"] += 1
        channels[image.channels] += 1
        shapes.append(image.spatial_shape)
        spacings.append(image.spacing)
        raw.append(_pixel_summary(image.pixels, rng))
        out = chain(image)
        pre_shape = tuple(int(s) for s in out.pixels.shape)
        pre_spacings.append(out.spacing)
        pre.append(_pixel_summary(out.pixels, rng))
    if not raw:
        raise InvalidConfig(f"{run.path}: no training image could be read again for the input "
                            "statistics; is the data still where splits.csv says?")
    shape_arr = np.asarray([s for s in shapes if len(s) == len(shapes[0])])
    return {
        "modality": modalities.most_common(1)[0][0],
        "modalities_seen": dict(modalities),
        "channels": int(pre_shape[0]),
        "shape": list(pre_shape),
        "layout": "NCHW" if len(pre_shape) == 3 else "NCDHW",
        "dtype": "float32",
        "raw": {
            "channels": sorted(int(c) for c in channels),
            "shape_min": shape_arr.min(axis=0).tolist(),
            "shape_max": shape_arr.max(axis=0).tolist(),
            "spacing_median": np.median(np.asarray(spacings), axis=0).tolist(),
        },
        "spacing": np.median(np.asarray(pre_spacings), axis=0).tolist(),
        "intensity": {"raw": _pool(raw), "preprocessed": _pool(pre),
                      "n_images": len(raw), "split": "train"},
    }


def _pixel_summary(pixels: np.ndarray, rng: np.random.Generator) -> dict[str, Any]:
    flat = np.asarray(pixels, dtype=np.float64).ravel()
    flat = flat[np.isfinite(flat)]
    sample = flat if len(flat) <= PIXELS_PER_IMAGE else rng.choice(flat, PIXELS_PER_IMAGE, False)
    return {"mean": float(flat.mean()), "std": float(flat.std()), "sample": sample}


def _pool(parts: list[dict[str, Any]]) -> dict[str, Any]:
    pixels = np.concatenate([p["sample"] for p in parts])
    means = np.asarray([p["mean"] for p in parts])
    stds = np.asarray([p["std"] for p in parts])
    return {
        "mean": float(pixels.mean()), "std": float(pixels.std()),
        "p01": float(np.percentile(pixels, 1)), "p99": float(np.percentile(pixels, 99)),
        "min": float(pixels.min()), "max": float(pixels.max()),
        "image_mean": _range(means), "image_std": _range(stds),
    }


def _range(values: np.ndarray) -> dict[str, float]:
    return {"min": float(values.min()), "p01": float(np.percentile(values, 1)),
            "p50": float(np.percentile(values, 50)), "p99": float(np.percentile(values, 99)),
            "max": float(values.max())}


# -- data card, evaluation, uses ------------------------------------------------------------------
def data_card(run: RunFolder) -> dict[str, Any]:
    """Source, counts per split and class, patient grouping, and the data-check findings."""
    data = run.config.get("data") or {}
    split_cfg = data.get("split") or {}
    ds = run.dataset
    counts: dict[str, dict[str, int]] = {}
    patients: dict[str, int] = {}
    kfold = split_cfg.get("method") == "kfold"  # folds, not the records' split column, were used

    def group(r: Record) -> str:
        return "all" if kfold or not r.split else r.split

    for split in sorted({group(r) for r in ds.records}):
        part = ds.subset([i for i, r in enumerate(ds.records) if group(r) == split])
        # splits.csv holds no boxes: a detector's data card counts images only
        counts[split] = {"total": len(part),
                         **({} if ds.task is Task.DETECTION else part.class_counts())}
        patients[split] = len({p for p in part.patient_ids if p is not None})
    with_patient = sum(p is not None for p in ds.patient_ids)
    return {
        "name": run.config.get("name"),
        "source": data.get("source"),
        "external": data.get("external"),
        "task": ds.task.value,
        "classes": list(ds.classes),
        "counts": counts,
        "patients": patients,
        "patient_grouping": {
            "records_with_patient_id": with_patient,
            "split_method": split_cfg.get("method", "given"),
            "grouped": split_cfg.get("grouped"),
            "statement": _grouping_statement(split_cfg, with_patient, len(ds)),
        },
        "limit_per_split": data.get("limit"),
        "quality": run.metrics.get("quality"),
    }


def _grouping_statement(split_cfg: dict[str, Any], with_patient: int, n: int) -> str:
    method = split_cfg.get("method", "given")
    if method == "given":
        return ("the dataset's own (given) split was used" + (
            "; patient ids were recorded and checked for leakage" if with_patient else
            "; no patient ids were available, so patient overlap could not be checked"))
    if not with_patient:
        return f"{method} split by image: no patient ids were available"
    if split_cfg.get("grouped") is False:
        return f"{method} split by image although patient ids exist (grouping switched off)"
    return f"{method} split grouped by patient ({with_patient} of {n} records have a patient id)"


def evaluation_summary(metrics: dict[str, Any]) -> dict[str, Any]:
    """Headline metrics with their CIs per evaluated split (val, test, external, CV)."""
    out: dict[str, Any] = {"selected_model": metrics.get("model")}
    for split in ("test", "val"):
        if isinstance(metrics.get(split), dict):
            out[split] = _headline(metrics[split])
    external = {k: _headline(v) for k, v in metrics.items()
                if k not in _NOT_EXTERNAL and isinstance(v, dict) and "n" in v}
    if external:
        out["external"] = external
        out["external_vs_internal"] = metrics.get("external_vs_internal")
    if isinstance(metrics.get("cv"), dict):
        cv = metrics["cv"]
        out["cv"] = {k: cv.get(k) for k in ("k", "grouped", "mean", "sd", "pooled")}
    if metrics.get("candidates"):
        out["candidates"] = metrics["candidates"]
    return out


def _headline(split: dict[str, Any]) -> dict[str, Any]:
    keep = {k: split[k] for k in HEADLINE if k in split}
    keep.update({k: split.get(k) for k in ("n", "n_unreadable", "threshold", "confusion_matrix")
                 if k in split})
    keep["ci"] = split.get("ci") or {}
    return keep


def intended_use(config: dict[str, Any], override: str | None) -> str:
    card = config.get("model_card") or {}
    return override or card.get("intended_use") or DEFAULT_INTENDED_USE


def limitations(config: dict[str, Any], override: list[str] | None) -> list[str]:
    card = config.get("model_card") or {}
    given = override or card.get("limitations")
    if isinstance(given, str):
        given = [given]
    return list(given) if given else list(DEFAULT_LIMITATIONS)
