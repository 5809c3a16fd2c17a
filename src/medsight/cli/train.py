"""`medsight train CONFIG` and `medsight compare RUN...`: fit, evaluate, and compare runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medsight.cli.app import app, console
from medsight.cli.metrics_table import num, print_metrics
from medsight.cli.progress import run_with_progress


@app.command("train")
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see examples/).")],
    data: Annotated[str | None, typer.Option(help="Override data.source.")] = None,
    out: Annotated[Path | None, typer.Option(help="Override the output run folder.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override any config key, dotted (model.params.epochs=1); VALUE is read as YAML. "
             "Repeatable.")] = None,
    nproc: Annotated[int, typer.Option(
        help="Train on N local processes (torchrun, DistributedDataParallel); batch_size is "
             "then the global batch.")] = 1,
    max_restarts: Annotated[int, typer.Option(
        help="With --nproc: torchrun restarts of a failed job, resuming from the last "
             "checkpoint (needs model.params.checkpoint_dir).")] = 0,
) -> None:
    """Train and evaluate the configured model(s); writes a run folder with report.html."""
    from medsight.cli.distributed import launch, worker_overrides
    from medsight.config import load_config
    from medsight.experiment import run_experiment
    from medsight.train import distributed

    if nproc > 1 and not distributed.launched():
        launch(nproc, max_restarts, ["train", str(config), *_passthrough(data, out, set_ or [])])
        return
    overrides = set_overrides(set_ or [])  # --data and --out win over --set
    if data is not None:
        overrides["data.source"] = data
    if out is not None:
        overrides["output"] = str(out)
    cfg = load_config(config, overrides)
    group = distributed.init_from_env()
    if group is not None:
        cfg = worker_overrides(cfg)
        distributed.rank_logging(group)
        distributed.exit_on_sigterm()
    try:
        if group is None or group.is_main:
            result = run_with_progress(cfg, run_experiment)
        else:
            result = run_experiment(cfg)
    finally:
        distributed.shutdown()
    if group is not None and not group.is_main:
        return
    if result.metrics.get("task") == "detection":
        print_detection_metrics(result.metrics, result.model_label)
    else:
        print_metrics(result.metrics, result.model_label)
    console.print(f"[green]run folder[/] {result.out_dir}  ·  report {result.report}  ·  "
                  f"{result.seconds:.0f} s")


def _passthrough(data: str | None, out: Path | None, pairs: list[str]) -> list[str]:
    """The options of this `train` call, for the workers torchrun starts."""
    args = [a for pair in pairs for a in ("--set", pair)]
    if data is not None:
        args += ["--data", data]
    if out is not None:
        args += ["--out", str(out)]
    return args


def print_detection_metrics(metrics: dict, model: str) -> None:
    """One row per evaluated split: mAP@0.5 (CI), mAP@0.5:0.95, and per class the share of
    images counted exactly."""
    splits = {k: v for k, v in metrics.items() if isinstance(v, dict) and "map50" in v}
    classes = list(next(iter(splits.values()))["count_exact"]) if splits else []
    table = Table("split", "images", "mAP@0.5 (95% CI)", "mAP@0.5:0.95",
                  *[f"{c} count exact" for c in classes], title=f"model: {model}")
    for name, m in splits.items():
        ci = m.get("ci", {}).get("map50", {})
        text = num(m.get("map50"))
        if ci.get("ci_low") is not None:
            text += f" ({num(ci['ci_low'])}-{num(ci['ci_high'])})"
        table.add_row(name, str(m.get("n", "")), text, num(m.get("map50_95")),
                      *[num(m["count_exact"].get(c)) for c in classes])
    console.print(table)


def set_overrides(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings -> {dotted key: YAML-parsed value} for `load_config`."""
    import yaml

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"{key}: the value is not valid YAML: {exc}",
                                     param_hint="--set") from exc
    return overrides


@app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `medsight train`.")],
    split: Annotated[str, typer.Option(help="Which evaluated split to compare.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One table of models on the same data, with CIs and paired tests (DeLong, bootstrap)."""
    from medsight.evaluate.compare_runs import TABLE_METRICS, compare_runs

    result = compare_runs(runs, split=split)
    if as_json:
        console.print_json(json.dumps(result))
        return
    table = Table("run", "model", "n", *TABLE_METRICS, title=f"{split} split")
    for row in result["table"]:
        cells = []
        for name in TABLE_METRICS:
            m = row.get(name)
            if not m:
                cells.append("-")
                continue
            text = num(m["value"])
            if m.get("ci_low") is not None:
                text += f"\n({num(m['ci_low'])}-{num(m['ci_high'])})"
            cells.append(text)
        table.add_row(row["run"], row["model"], str(row.get("n", "")), *cells)
    console.print(table)
    for pair in result["pairs"]:
        line = f"{pair['a']} vs {pair['b']} (n={pair['n']}): "
        if "delong" in pair:
            d = pair["delong"]
            line += f"AUC {d['auc_a']:.3f} vs {d['auc_b']:.3f}, DeLong p={d['p']:.3g}; "
        b = pair["bootstrap"]
        if b["diff"] is not None:
            line += (f"paired bootstrap {b['metric']} diff {b['diff']:+.3f} "
                     f"({num(b['ci_low'])}..{num(b['ci_high'])}), p={b['p']:.3g}")
        console.print(line)
