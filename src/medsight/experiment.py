"""One training run, from a validated config to a run folder with model, metrics and report.

`run_experiment` opens the data, assigns splits (given, holdout or k-fold), fits every candidate
model through the one estimator protocol, selects the best on validation data (never on test),
evaluates it with confidence intervals (and on an external set when given), and writes:
``config.yaml``, ``splits.csv``, ``model/``, ``metrics.json``, ``predictions.csv``, ``plots/`` and
a self-contained ``report.html``. A detection dataset takes the same path through
`medsight.experiment_detection` (holdout only; boxes, mAP and counts instead of probabilities).
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from medsight.config import ExperimentConfig, ModelConfig
from medsight.data.dataset import Dataset, Task
from medsight.data.open import open_source
from medsight.errors import InvalidConfig, InvalidDataset, MedsightError
from medsight.evaluate import plots
from medsight.evaluate.metrics import higher_is_better
from medsight.evaluate.report import ReportData, SplitResult, render_report
from medsight.evaluate.schemes import (
    CVResult,
    HoldoutResult,
    cross_validate,
    external_evaluate,
    holdout_evaluate,
)
from medsight.jsonable import jsonable
from medsight.models.base import MedsightEstimator
from medsight.models.kinds import estimator_class
from medsight.preprocess import Preprocess

log = logging.getLogger(__name__)
Status = Callable[[str], None]


@dataclass
class RunResult:
    """Where the run was written and its headline numbers."""

    out_dir: Path
    metrics: dict[str, Any]
    report: Path
    model_label: str
    seconds: float


def build_estimator(spec: ModelConfig, preprocess: list[dict[str, Any]], seed: int,
                    evaluation: Any = None, progress: Callable | None = None) -> MedsightEstimator:
    """The estimator a model spec names, with the run's preprocessing chain, seed, threshold
    choice and progress callback where the kind takes them; its parameters are checked."""
    defaults: dict[str, Any] = {"preprocess": preprocess, "seed": seed}
    if evaluation is not None:
        defaults["threshold_method"] = None if evaluation.threshold == "fixed" else evaluation.threshold
        defaults["target_sensitivity"] = evaluation.target_sensitivity
    try:
        est = estimator_class(spec.kind).with_defaults(dict(spec.params), **defaults)
        if progress is not None and "progress" in est.param_names():
            est.set_params(progress=progress)
        est.validate_params()
    except InvalidConfig as exc:
        raise InvalidConfig(f"model {spec.label!r}: {exc}") from None
    return est


def prepare_dataset(cfg: ExperimentConfig) -> Dataset:
    """Open the configured source, set the positive class, assign splits, apply `limit`."""
    from medsight.data.splits import holdout

    ds = open_source(cfg.data.source, **cfg.data.options)
    ds = with_positive_class(ds, cfg.data.positive_class)
    ds.cache_size = cfg.data.cache_images
    split = cfg.data.split
    if split.method == "given" and all(r.split is None for r in ds.records):
        raise InvalidConfig(
            f"{ds.name} has no given splits; set data.split.method to 'holdout' or 'kfold'"
        )
    if split.method == "holdout":
        ds = holdout(ds, split.ratios, seed=split.seed, group_by_patient=split.grouped is not False)
    if cfg.data.limit:
        keep, seen = [], {}
        for i, r in enumerate(ds.records):
            seen[r.split] = seen.get(r.split, 0) + 1
            if seen[r.split] <= cfg.data.limit:
                keep.append(i)
        ds = ds.subset(keep, ds.name)
    return ds


def with_positive_class(ds: Dataset, positive: str | int | None) -> Dataset:
    """Set which class is 'positive' (by name or index); clinicians read its sensitivity."""
    if positive is None:
        return ds
    if isinstance(positive, str) and not positive.isdigit():
        if positive not in ds.classes:
            raise InvalidConfig(f"positive_class {positive!r} is not one of {ds.classes}")
        ds.positive_class = ds.classes.index(positive)
    else:
        idx = int(positive)
        if not 0 <= idx < len(ds.classes):
            raise InvalidConfig(f"positive_class {idx} is out of range for classes {ds.classes}")
        ds.positive_class = idx
    return ds


def run_experiment(cfg: ExperimentConfig, status: Status | None = None,
                   progress: Callable | None = None) -> RunResult:
    """Run the whole experiment described by `cfg` and write the run folder.

    `status` receives one-line stage messages; `progress` is handed to estimators that report
    training progress (neural networks: a `TrainEvent` per batch and epoch).
    """
    from medsight.train import distributed

    group = distributed.current()
    if group is not None and not group.is_main:
        # ranks other than 0 train alongside rank 0 but write nothing shared: a private scratch
        # folder of their own, removed when they are done
        import shutil
        import tempfile

        scratch = tempfile.mkdtemp(prefix=f"medsight-rank{group.rank}-")
        try:
            return _run_experiment(cfg.model_copy(update={"output": scratch}), status, progress)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
    return _run_experiment(cfg, status, progress)


def _run_experiment(cfg: ExperimentConfig, status: Status | None,
                    progress: Callable | None) -> RunResult:
    say = status or (lambda msg: log.info(msg))
    started = time.perf_counter()
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    say(f"opening {cfg.data.source}")
    ds = prepare_dataset(cfg)
    if ds.task is Task.MULTILABEL and cfg.evaluation.threshold != "fixed":
        log.info("multilabel task: per-label threshold 0.5")
    ds.to_frame().to_csv(out / "splits.csv", index=False)
    quality = _quality_summary(ds, say)
    if ds.task is Task.DETECTION:
        from medsight.experiment_detection import run_detection

        metrics, report, label = run_detection(cfg, ds, out, quality, say, progress)
        return RunResult(out, metrics, report, label, time.perf_counter() - started)

    ev = cfg.evaluation
    kfold = cfg.data.split.method == "kfold"
    results: dict[str, HoldoutResult | CVResult] = {}
    for spec in cfg.models:
        say(f"fitting {spec.label}")
        factory = _factory(spec, cfg, progress)
        if kfold:
            results[spec.label] = cross_validate(
                factory, ds, k=cfg.data.split.k, grouped=cfg.data.split.grouped,
                seed=cfg.data.split.seed, val_fraction=0.2, ci=ev.ci, n_boot=ev.n_boot,
                allow_leakage=ev.allow_leakage)
        else:
            results[spec.label] = holdout_evaluate(
                factory, ds, ci=ev.ci, n_boot=ev.n_boot, allow_leakage=ev.allow_leakage,
                seed=cfg.seed)
    best_label, leaderboard = _select(results, ev.select_by, kfold)
    best = results[best_label]
    best_spec = next(s for s in cfg.models if s.label == best_label)

    if kfold:
        say(f"refitting {best_label} on all labelled data for the saved model")
        estimator = _refit_all(best_spec, cfg, ds)
    else:
        estimator = best.estimator
    estimator.save(out / "model")

    metrics: dict[str, Any] = {"model": best_label}
    metrics.update(best.to_dict())
    if kfold:
        metrics = {"model": best_label, "cv": best.to_dict()}
    if len(results) > 1:
        metrics["candidates"] = leaderboard
    external = None
    if cfg.data.external:
        say(f"external evaluation on {cfg.data.external}")
        ext_ds = with_positive_class(open_source(cfg.data.external, **cfg.data.external_options),
                                     cfg.data.positive_class)
        external = external_evaluate(estimator, ext_ds, best, ci=ev.ci, n_boot=ev.n_boot,
                                     seed=cfg.seed, allow_leakage=ev.allow_leakage)
        metrics.update(external.to_dict())
    metrics["quality"] = quality
    (out / "metrics.json").write_text(json.dumps(jsonable(metrics), indent=2))
    _write_predictions(out / "predictions.csv", best, external)

    say("writing report")
    report = render_report(
        _report_data(cfg, ds, estimator, best, best_label, leaderboard, external, quality),
        out / "report.html", figure_dir=out / "plots")
    return RunResult(out, metrics, report, best_label, time.perf_counter() - started)


def preprocess_preview(ds: Dataset, config: str | Path, n: int = 6, seed: int = 0):
    """(figure, chain): before/after grid of `n` seeded random samples for a preprocessing YAML.

    The YAML is either a list of steps or an experiment config with a ``preprocess:`` key.
    """
    from medsight.preprocess import preview_grid

    path = Path(config)
    if not path.is_file():
        raise InvalidConfig(f"preprocessing config {path} not found")
    raw = yaml.safe_load(path.read_text())
    steps = raw.get("preprocess", []) if isinstance(raw, dict) else raw
    chain = Preprocess.from_config(steps or [], base_dir=path.parent)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))
    before, after, titles, problems = [], [], [], []
    for i in order:
        if len(before) == n:
            break
        try:
            img = ds.image(int(i))
            after.append(chain(img))
            before.append(img)
            label = ds.records[i].label
            titles.append(ds.classes[label] if isinstance(label, int) else ds.records[i].ref[-24:])
        except MedsightError as exc:
            problems.append(str(exc))
    if not before:
        raise InvalidDataset(f"no readable image to preview in {ds.name}: {problems[:3]}")
    return preview_grid(before, after, titles), chain


def demo_config(out: str | Path, data: str | None = None) -> ExperimentConfig:
    """The demo's experiment: HOG+SVM, random forest and logistic regression on the phantoms
    (or on a MedMNIST file given with ``--data``), chosen on validation AUC."""
    from medsight.config import parse_config

    source = data or "phantom:n=240,size=64,seed=0"
    size = 64 if data is None else 28
    raw = {
        "name": "medsight demo",
        "data": {"source": source},
        "preprocess": [{"resize": {"size": [size, size]}}, {"minmax": {}}],
        "candidates": [
            {"kind": "classical", "params": {"model": "svm_rbf", "features": ["hog"]}},
            {"kind": "classical", "params": {"model": "random_forest",
                                             "features": ["hog", "stats", "lbp"]}},
            {"kind": "classical", "params": {"model": "logistic_regression",
                                             "features": ["hog"]}},
        ],
        "evaluation": {"n_boot": 500},
        "output": str(out),
    }
    return parse_config(raw, origin="demo")


# -- helpers ------------------------------------------------------------------------------------
def _factory(spec: ModelConfig, cfg: ExperimentConfig,
             progress: Callable | None = None) -> Callable[[], MedsightEstimator]:
    build_estimator(spec, cfg.preprocess, cfg.seed, cfg.evaluation)  # validate params early
    return lambda: build_estimator(spec, cfg.preprocess, cfg.seed, cfg.evaluation, progress)


def _refit_all(spec: ModelConfig, cfg: ExperimentConfig, ds: Dataset) -> MedsightEstimator:
    from medsight.data.splits import holdout

    data = ds.labelled()
    carved = holdout(data, (0.8, 0.2), seed=cfg.data.split.seed, names=("train", "val"))
    est = build_estimator(spec, cfg.preprocess, cfg.seed, cfg.evaluation)
    return est.fit(carved.split("train"), carved.split("val"))


def _select(results: dict[str, HoldoutResult | CVResult], metric: str,
            kfold: bool) -> tuple[str, list[dict[str, Any]]]:
    """Best candidate by the validation metric (CV mean for k-fold; the smallest for an error
    such as brier, ece or log_loss); never by the test split."""
    board = []
    for label, res in results.items():
        if kfold:
            row = {"model": label, f"cv {metric}": res.mean.get(metric),
                   f"cv {metric} sd": res.sd.get(metric)}
            key = res.mean.get(metric)
        else:
            val = res.splits.get("val")
            test = res.splits.get("test")
            key = val.metrics.get(metric) if val else None
            row = {"model": label, f"val {metric}": key,
                   f"test {metric}": test.metrics.get(metric) if test else None,
                   "test acc": test.metrics.get("acc") if test else None}
        board.append(row)
        sign = 1.0 if higher_is_better(metric) else -1.0  # best first, whatever the direction
        row["_key"] = -np.inf if key is None or not np.isfinite(key) else sign * float(key)
    if len(results) > 1 and all(r["_key"] == -np.inf for r in board):
        raise InvalidDataset(
            "several candidate models but no validation split to choose between them; "
            "add a 'val' split (data.split.method: holdout) or use kfold"
        )
    board.sort(key=lambda r: r["_key"], reverse=True)
    for r in board:
        r.pop("_key")
    return board[0]["model"], board


def _quality_summary(ds: Dataset, say: Status) -> dict[str, Any]:
    """The quality check's findings in brief, for metrics.json and the report.

    Patient leakage stops evaluation (in the schemes); image-level findings (the same picture in
    two splits, as in BreastMNIST's official split) are reported here, loudly, not hidden.
    """
    from medsight.data.quality import check_dataset

    say(f"checking data quality of {len(ds)} images")
    rep = check_dataset(ds)
    return {**rep.summary(), "unreadable_files": [u.to_dict() for u in rep.unreadable],
            "leakage_findings": [f.to_dict() for f in rep.leakage]}


def _write_predictions(path: Path, best: HoldoutResult | CVResult, external: Any) -> None:
    frames = []
    if isinstance(best, CVResult):
        f = best.oof.to_frame()
        f.insert(0, "split", "cv")
        frames.append(f)
    else:
        for name, split in best.splits.items():
            f = split.predictions.to_frame()
            f.insert(0, "split", name)
            frames.append(f)
    if external is not None:
        f = external.external.predictions.to_frame()
        f.insert(0, "split", external.external.name)
        frames.append(f)
    pd.concat(frames, ignore_index=True).to_csv(path, index=False)


def _report_data(cfg: ExperimentConfig, ds: Dataset, est: MedsightEstimator,
                 best: HoldoutResult | CVResult, label: str, leaderboard: list[dict[str, Any]],
                 external: Any, quality: dict[str, Any]) -> ReportData:
    chain = Preprocess.from_config(cfg.preprocess)
    splits: list[SplitResult] = []
    cv = None
    notes = []
    if isinstance(best, CVResult):
        p = best.oof
        splits.append(SplitResult("cross-validation (out of fold)", p.y_true, p.proba,
                                  best.pooled, p.refs))
        cols = [c for c in ("auc", "acc", "sensitivity", "specificity", "f1")
                if c in best.mean]
        cv = {"columns": cols, "rows": best.folds, "mean": best.mean, "sd": best.sd,
              "description": f"{best.k}-fold, "
                             f"{'grouped by patient' if best.grouped else 'not grouped'}, "
                             f"seed {best.seed}"}
        wrong_src = p
    else:
        for name, s in best.splits.items():
            p = s.predictions
            splits.append(SplitResult(name, p.y_true, p.proba, s.metrics, p.refs))
        wrong_src = best.splits["test"].predictions
    ext_rows = []
    if external is not None:
        p = external.external.predictions
        splits.append(SplitResult(external.external.name, p.y_true, p.proba,
                                  external.external.metrics, p.refs))
        ext_rows = [{"metric": r["metric"], "internal": r["internal"], "external": r["external"],
                     "change": r["delta"]} for r in external.comparison]
    if quality.get("leakage"):
        notes.append(f"The data check found {quality['leakage']} leakage finding(s) "
                     "(the same patient or image in two splits): see `medsight data check`.")
    if quality.get("unreadable"):
        notes.append(f"{quality['unreadable']} unreadable image(s) were skipped and named in "
                     "metrics.json.")
    counts = {}
    order = {"train": 0, "val": 1, "test": 2}
    for split_name in sorted({r.split or "unassigned" for r in ds.records},
                             key=lambda n: (order.get(n, 3), n)):
        sub = [r for r in ds.records if (r.split or "unassigned") == split_name]
        counts[split_name] = {c: sum(1 for r in sub if r.label == i)
                              for i, c in enumerate(ds.classes)}
    return ReportData(
        title=f"{cfg.name}: {label}",
        task=ds.task.value,
        class_names=ds.classes,
        positive_class=ds.positive_class,
        model_label=label,
        threshold=float(est.threshold_) if ds.task is Task.BINARY else None,
        splits=splits,
        data_summary=_data_summary(cfg, ds, counts),
        quality=quality,
        preprocess_steps=[repr(s) for s in chain],
        preprocess_preview_png=_preview_png(ds, chain),
        misclassified_png=_misclassified_png(ds, chain, wrong_src, est),
        leaderboard=leaderboard if len(leaderboard) > 1 else [],
        cv=cv,
        external_vs_internal=ext_rows,
        history=list(getattr(est, "history_", []) or []),
        config_text=yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False),
        notes=notes,
    )


def _data_summary(cfg: ExperimentConfig, ds: Dataset, counts: dict[str, Any]) -> dict[str, Any]:
    summary: dict[str, Any] = {"counts": counts, "source": cfg.data.source}
    patients = {r.patient_id for r in ds.records if r.patient_id}
    if patients:
        summary["patients"] = len(patients)
    split = cfg.data.split
    summary["split"] = (f"{split.k}-fold cross-validation" if split.method == "kfold"
                        else "given splits" if split.method == "given"
                        else f"holdout {list(split.ratios)}") + (
        ", grouped by patient" if patients and split.grouped is not False
        and split.method != "given" else "")
    return summary


def _preview_png(ds: Dataset, chain: Preprocess, n: int = 4) -> bytes | None:
    from medsight.preprocess import preview_grid

    before, after = [], []
    for i in range(len(ds)):
        if len(before) == n:
            break
        try:
            img = ds.image(i)
            before.append(img)
            after.append(chain(img))
        except Exception:  # unreadable images are reported elsewhere; preview shows readable ones
            continue
    if not before:
        return None
    buf = io.BytesIO()
    preview_grid(before, after, cell_inches=1.6).savefig(buf, format="png", dpi=90)
    return buf.getvalue()


def _misclassified_png(ds: Dataset, chain: Preprocess, preds: Any, est: MedsightEstimator,
                       n: int = 12) -> bytes | None:
    """The most confidently wrong predictions, as the model saw them (after preprocessing)."""
    if preds.y_true.ndim != 1:
        return None
    wrong = np.flatnonzero(preds.y_pred != preds.y_true)
    if wrong.size == 0:
        return None
    conf = preds.proba[wrong, preds.y_pred[wrong]]
    order = wrong[np.argsort(-conf)][:n]
    by_ref = {r.ref: i for i, r in enumerate(ds.records)}
    images, titles = [], []
    for j in order:
        i = by_ref.get(preds.refs[j])
        if i is None:
            continue
        images.append(chain(ds.image(i)).pixels)
        t, p = int(preds.y_true[j]), int(preds.y_pred[j])
        titles.append(f"true {est.classes_[t][:14]}\npred {est.classes_[p][:14]} "
                      f"({preds.proba[j, p]:.2f})")
    return plots.image_grid(images, titles) if images else None
