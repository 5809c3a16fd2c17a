"""`compute_metrics`: every headline classification metric of one prediction set, as plain JSON.

Inputs and how predictions are made (threshold for binary and multilabel, most probable class for
multiclass and ordinal) are described in ``evaluate.inputs``. Keys of the result:

* ``acc``, ``balanced_acc`` (mean recall over the classes in ``y_true``), ``auc``, ``sensitivity``,
  ``specificity``, ``ppv``, ``npv``, ``f1``, ``kappa``, ``ece``, ``brier``, ``log_loss``;
  ordinal adds ``mae`` (mean absolute grade error), multilabel ``subset_acc`` (all labels right).
* binary: every rate is for ``positive_class`` (BreastMNIST: class 0, *malignant*); AUC scores
  P(positive); Brier is the mean squared error of P(positive); ECE bins P(positive).
* multiclass / ordinal: AUC is the macro mean of one-vs-rest AUCs; sensitivity, specificity, PPV,
  NPV and F1 are macro means over the classes present in labels or predictions, skipping
  undefined ones; kappa is Cohen's (quadratic-weighted for ordinal); Brier sums over classes;
  ECE uses the top-label confidence.
* multilabel: each metric per label (``per_class``) and their macro mean; ``acc`` is the mean
  label-wise accuracy.
* ``evaluate.HEADLINE_METRICS[task]`` names the ones a summary shows first.
* direction: `LOWER_IS_BETTER` (errors: ``log_loss``, ``brier``, ``ece``, ``mae``) are better
  when smaller, every other metric when larger; `higher_is_better(name)` says which, and model
  selection sorts by it.
* ``confusion_matrix`` (rows true, columns predicted; multilabel: ``[[tn, fp], [fn, tp]]`` per
  label), ``per_class`` (one flat row per class or label: support, precision, recall,
  specificity, NPV, F1, one-vs-rest AUC), ``notes`` (why a value is None or partial).

Undefined values (e.g. AUC when ``y_true`` has one class) are None with the reason in ``notes``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from medsight.errors import InvalidConfig
from medsight.evaluate.batched import METRICS, weighted_metrics
from medsight.evaluate.bootstrap import metrics_with_ci
from medsight.evaluate.inputs import Problem, check_inputs
from medsight.jsonable import jsonable

LOWER_IS_BETTER = frozenset({"log_loss", "brier", "ece", "mae"})
SINGLE_CLASS = "y_true and the predictions hold one and the same class: chance agreement is total"


def compute_metrics(
    y_true: Any,
    proba: Any,
    task: str,
    positive_class: int = 1,
    threshold: float | Sequence[float] | None = None,
    class_names: Sequence[str] | None = None,
    n_bins: int = 10,
    n_boot: int = 0,
    seed: int = 0,
    alpha: float = 0.05,
    groups: Sequence[Any] | None = None,
) -> dict[str, Any]:
    """All metrics of `task` for labels `y_true` and probabilities `proba` (see module doc).

    With ``n_boot > 0`` the result also holds ``ci``: ``{metric: {"value", "ci_low", "ci_high",
    "n_valid"}}`` for every scalar metric, from ``metrics_with_ci`` (stratified bootstrap,
    resampling whole `groups`, e.g. patients, when given).
    """
    problem = check_inputs(y_true, proba, task, positive_class, threshold)
    k = problem.n_classes
    names = [str(i) for i in range(k)] if class_names is None else [str(c) for c in class_names]
    if len(names) != k:
        raise InvalidConfig(f"{len(names)} class names given for {k} classes/labels: {names}")
    scalars, info = weighted_metrics(problem, np.ones((1, problem.n)), n_bins=n_bins, detail=True)
    result: dict[str, Any] = {
        "task": problem.task,
        "n": problem.n,
        "classes": names,
        "positive_class": problem.positive_class,
        "threshold": problem.threshold,
    }
    result.update({m: float(v[0]) for m, v in scalars.items()})
    result["confusion_matrix"] = info["confusion"][0].astype(int)
    rows = _label_rows if problem.task == "multilabel" else _class_rows
    result["per_class"] = rows(info, names)
    result["notes"] = _notes(problem, result, info, names)
    if n_boot:
        result["ci"] = metrics_with_ci(
            y_true, proba, task, positive_class=positive_class, threshold=threshold,
            names=list(scalars), n_boot=n_boot, alpha=alpha, seed=seed, groups=groups,
            n_bins=n_bins,
        )
    return jsonable(result)


def higher_is_better(metric: str) -> bool:
    """Whether a larger value of `metric` is better (False for the errors in `LOWER_IS_BETTER`)."""
    return metric not in LOWER_IS_BETTER


def _class_rows(info: dict, names: list[str]) -> list[dict[str, Any]]:
    r = {key: v[0] for key, v in info["rates"].items()}
    auc = info["auc"][0] if "auc" in info else np.full(len(names), np.nan)
    return [
        {
            "class": name,
            "support": int(r["support"][c]),
            "precision": r["precision"][c],
            "recall": r["recall"][c],
            "specificity": r["specificity"][c],
            "npv": r["npv"][c],
            "f1": r["f1"][c],
            "auc": auc[c],
        }
        for c, name in enumerate(names)
    ]


def _label_rows(info: dict, names: list[str]) -> list[dict[str, Any]]:
    per = {key: v[0] for key, v in info["per_label"].items()}
    r = {key: v[0] for key, v in info["rates"].items()}
    rows = []
    for j, name in enumerate(names):
        row: dict[str, Any] = {"class": name, "support": int(r["support"][j])}
        row.update({c: int(r[c][j]) for c in ("tp", "fp", "fn", "tn")})
        row.update({"acc": per["acc"][j], "precision": per["ppv"][j],
                    "recall": per["sensitivity"][j], "specificity": per["specificity"][j],
                    "npv": per["npv"][j], "f1": per["f1"][j]})
        row["auc"] = per["auc"][j] if "auc" in per else None
        rows.append(row)
    return rows


def _binary_reasons(problem: Problem, names: list[str]) -> dict[str, str]:
    pos = problem.positive_class
    pos_name, neg_name = names[pos], names[1 - pos]
    n_pos = int(problem.y_pos.sum())
    n_neg = problem.n - n_pos
    pred_pos = int((problem.pred == pos).sum())
    only = pos_name if n_neg == 0 else neg_name
    thr = f"{problem.threshold:g}"
    reasons = {
        "auc": f"y_true holds only class {only!r}; AUC needs both classes",
        "sensitivity": f"no positive ({pos_name!r}) samples in y_true",
        "specificity": f"no negative ({neg_name!r}) samples in y_true",
        "ppv": f"no sample predicted positive ({pos_name!r}) at threshold {thr}",
        "npv": f"no sample predicted negative ({neg_name!r}) at threshold {thr}",
        "f1": f"no positive ({pos_name!r}) samples in y_true and none predicted",
        "kappa": SINGLE_CLASS,
    }
    if n_pos and n_neg:
        reasons.pop("auc")
    if pred_pos and n_pos:
        reasons.pop("f1")
    return reasons


def _notes(problem: Problem, result: dict, info: dict, names: list[str]) -> dict[str, str]:
    """Why each None metric is undefined, and which classes a partial macro mean left out."""
    metrics = METRICS[problem.task]
    notes: dict[str, str] = {}
    if problem.task == "binary":
        reasons = _binary_reasons(problem, names)
        for m in metrics:
            if not np.isfinite(result.get(m, 0.0)):
                notes[m] = reasons.get(m, "undefined for these samples")
        return notes
    per_item = info["per_label"] if problem.task == "multilabel" else {"auc": info.get("auc")}
    kind = "labels" if problem.task == "multilabel" else "classes"
    for m in metrics:
        values = per_item.get(m)
        if values is None:
            if not np.isfinite(result.get(m, 0.0)):
                notes[m] = SINGLE_CLASS if m == "kappa" else "undefined for these samples"
            continue
        missing = [names[j] for j in np.flatnonzero(np.isnan(values[0]))]
        if not missing:
            continue
        if len(missing) == len(names):
            notes[m] = f"undefined for every one of the {kind}"
        else:
            what = "one-vs-rest AUC" if m == "auc" and kind == "classes" else m
            notes[m] = f"macro mean over {len(names) - len(missing)} of {len(names)} {kind}; " \
                       f"{what} undefined for {missing}"
    return notes
