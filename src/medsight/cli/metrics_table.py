"""The metrics of a run as a terminal table (used by `train` and `demo`)."""

from __future__ import annotations

from rich.table import Table

from medsight.cli.app import console


def num(v: object) -> str:
    """A metric value for a table cell: 3 decimals, ``-`` for missing."""
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


def print_metrics(metrics: dict, model: str) -> None:
    """One row per evaluated split (AUC with its CI), plus the cross-validation mean ± sd."""
    table = Table("split", "n", "AUC (95% CI)", "ACC", "sensitivity", "specificity",
                  title=f"model: {model}")
    rows = {k: v for k, v in metrics.items() if isinstance(v, dict) and "auc" in v}
    if "cv" in metrics:
        rows["cv (pooled)"] = metrics["cv"]["pooled"]
    for name, m in rows.items():
        ci = m.get("ci", {}).get("auc", {})
        auc = num(m.get("auc"))
        if ci.get("ci_low") is not None:
            auc += f" ({num(ci['ci_low'])}-{num(ci['ci_high'])})"
        table.add_row(name, str(m.get("n", "")), auc, num(m.get("acc")),
                      num(m.get("sensitivity")), num(m.get("specificity")))
    console.print(table)
    if "cv" in metrics:
        cv = metrics["cv"]
        console.print("cross-validation, mean ± sd over folds: " + ", ".join(
            f"{k} {num(cv['mean'][k])} ± {num(cv['sd'].get(k))}"
            for k in ("auc", "acc", "sensitivity", "specificity") if k in cv["mean"]))
