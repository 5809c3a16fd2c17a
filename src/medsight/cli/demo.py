"""`medsight demo`: the main job end to end (data, check, train, evaluate, report)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console
from medsight.cli.metrics_table import print_metrics
from medsight.cli.progress import open_with_status, progress_bar, run_with_progress
from medsight.cli.quality_report import render_quality


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("runs/demo"),
    data: Annotated[str | None, typer.Option(
        help="A MedMNIST .npz (or any source) instead of the built-in phantoms.")] = None,
) -> None:
    """The main job, end to end: build data, check it, train, evaluate and write the report."""
    from medsight.data.quality import check_dataset
    from medsight.experiment import demo_config, run_experiment

    cfg = demo_config(out, data)
    ds = open_with_status(cfg.data.source)
    console.rule(f"1. data: {ds.name}")
    with progress_bar(f"checking {len(ds)} images", len(ds)) as update:
        report = check_dataset(ds, progress=update)
    render_quality(report, console)
    console.rule("2. train and evaluate")
    result = run_with_progress(cfg, run_experiment)
    print_metrics(result.metrics, result.model_label)
    console.rule("3. outputs")
    console.print(f"report: {result.report.resolve()}")
    console.print(f"run folder: {result.out_dir.resolve()} ({result.seconds:.0f} s)")
