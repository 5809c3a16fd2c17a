"""Compare finished runs on the same test data: one table with CIs plus paired tests.

Reads what `medsight train` wrote (``metrics.json``, ``predictions.csv``, ``model/estimator.json``).
Predictions are matched by image reference, so a paired test is only run on the records both runs
scored; runs evaluated on different data are refused with a message saying so.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from medsight.errors import InvalidDataset
from medsight.evaluate.compare import delong_test, paired_bootstrap

TABLE_METRICS = ("auc", "acc", "balanced_acc", "sensitivity", "specificity", "f1")


@dataclass
class RunSummary:
    """The parts of a run folder a comparison needs."""

    path: Path
    model: str
    task: str
    classes: list[str]
    positive_class: int | None
    threshold: float
    metrics: dict[str, Any]
    predictions: pd.DataFrame

    def split(self, name: str) -> pd.DataFrame:
        return self.predictions[self.predictions["split"] == name].set_index("ref")


def load_run(directory: str | Path) -> RunSummary:
    """Read a run folder written by `medsight train`; names the missing file otherwise."""
    d = Path(directory)
    needed = [d / "metrics.json", d / "predictions.csv", d / "model" / "estimator.json"]
    missing = [str(p) for p in needed if not p.is_file()]
    if missing:
        raise InvalidDataset(f"{d} is not a complete medsight run folder: missing {missing}")
    metrics = json.loads(needed[0].read_text())
    est = json.loads(needed[2].read_text())
    return RunSummary(d, metrics.get("model", d.name), est["task"], est["classes"],
                      est.get("positive_class"), float(est.get("threshold", 0.5)), metrics,
                      pd.read_csv(needed[1]))


def _proba(frame: pd.DataFrame) -> np.ndarray:
    cols = sorted((c for c in frame.columns if c.startswith("proba_")),
                  key=lambda c: int(c.split("_")[1]))
    return frame[cols].to_numpy(float)


def compare_runs(directories: list[str | Path], split: str = "test", n_boot: int = 1000,
                 seed: int = 0) -> dict[str, Any]:
    """Table of models (metrics with CIs) on `split` and paired tests for every pair of runs."""
    runs = [load_run(d) for d in directories]
    if len(runs) < 1:
        raise InvalidDataset("give at least one run folder")
    tasks = {(r.task, tuple(r.classes)) for r in runs}
    if len(tasks) > 1:
        raise InvalidDataset(f"runs solve different tasks or classes: {sorted(tasks)}")
    if runs[0].task == "detection":
        raise InvalidDataset("medsight compare pairs probabilities; detector runs have boxes: "
                             "compare their metrics.json (test map50, map50_95 with CIs)")
    table = []
    for r in runs:
        m = r.metrics.get(split) or (r.metrics.get("cv", {}).get("pooled") if split == "cv" else None)
        if m is None:
            raise InvalidDataset(f"{r.path} has no '{split}' metrics (has {sorted(r.metrics)})")
        row: dict[str, Any] = {"run": r.path.name, "model": r.model, "n": m.get("n")}
        for name in TABLE_METRICS:
            if name in m:
                ci = m.get("ci", {}).get(name, {})
                row[name] = {"value": m[name], "ci_low": ci.get("ci_low"),
                             "ci_high": ci.get("ci_high")}
        table.append(row)
    pairs = []
    for a, b in combinations(runs, 2):
        pairs.append(_paired(a, b, split, n_boot, seed))
    return {"split": split, "table": table, "pairs": pairs}


def _paired(a: RunSummary, b: RunSummary, split: str, n_boot: int, seed: int) -> dict[str, Any]:
    fa, fb = a.split(split), b.split(split)
    common = fa.index.intersection(fb.index)
    if len(common) == 0:
        raise InvalidDataset(f"{a.path.name} and {b.path.name} share no {split} images: "
                             "a paired comparison needs the same test set")
    fa, fb = fa.loc[common], fb.loc[common]
    y = fa["y_true"].to_numpy()
    if not np.array_equal(y, fb["y_true"].to_numpy()):
        raise InvalidDataset(f"{a.path.name} and {b.path.name} disagree on the true labels")
    pa, pb = _proba(fa), _proba(fb)
    out: dict[str, Any] = {"a": a.path.name, "b": b.path.name, "n": int(len(common))}
    if a.task == "binary":
        pos = int(a.positive_class if a.positive_class is not None else 1)
        d = delong_test(y, pa[:, pos], pb[:, pos], positive_class=pos)
        out["delong"] = {"auc_a": d.auc_a, "auc_b": d.auc_b, "diff": d.diff, "z": d.z, "p": d.p}
        pb_res = paired_bootstrap(y, pa, pb, "auc", n_boot, seed, task=a.task, positive_class=pos)
    else:
        pb_res = paired_bootstrap(y, pa, pb, "auc", n_boot, seed, task=a.task)
    out["bootstrap"] = pb_res._asdict()
    return out
