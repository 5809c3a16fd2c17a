"""`medsight demo`: the main job end to end (data, check, train, evaluate, report, then bundle the
chosen model, predict a few images with it, and serve it with a demo account when asked to or
when run from a terminal)."""

from __future__ import annotations

import os
import secrets
import sys
from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console
from medsight.cli.metrics_table import print_metrics
from medsight.cli.predict import show_results
from medsight.cli.progress import open_with_status, progress_bar, run_with_progress
from medsight.cli.quality_report import render_quality


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("runs/demo"),
    data: Annotated[str | None, typer.Option(
        help="A MedMNIST .npz (or any source) instead of the built-in phantoms.")] = None,
    serve: Annotated[bool | None, typer.Option(
        "--serve/--no-serve", help="end by serving the bundle at http://127.0.0.1:PORT (default: "
        "when stdin is a terminal, or SERVE=1)")] = None,
    port: Annotated[int, typer.Option(help="port of the demo service")] = 8000,
) -> None:
    """The main job, end to end: build data, check it, train, evaluate, write the report, bundle
    the chosen model and predict a few test images from files with it."""
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
    console.rule("4. deploy: bundle the chosen model, predict a few images")
    from medsight.deploy import create_bundle
    from medsight.deploy.batch import predict_paths
    from medsight.deploy.sample_inputs import write_split_pngs

    with console.status("bundling the chosen model"):
        bundle = create_bundle(result.out_dir, result.out_dir / "model.msb", overwrite=True)
    console.print(f"bundle: {bundle.resolve()}")
    inputs = write_split_pngs(result.out_dir, result.out_dir / "predict" / "inputs", n=6)
    with progress_bar(f"predicting {len(inputs)} images", len(inputs)) as update:
        summary = predict_paths(bundle, [inputs[0].parent], out=result.out_dir / "predict" / "results.json",
                                report_dir=result.out_dir / "predict" / "reports", progress=update)
    console.print(f"(the same as: medsight predict --bundle {bundle} {inputs[0].parent} --out "
                  f"{summary.out} --report-dir {summary.index.parent})")
    show_results(summary)
    if serve is None:
        serve = os.environ.get("SERVE", "") not in ("", "0") or sys.stdin.isatty()
    if serve:
        serve_demo(bundle, result.out_dir / "service", port)


def serve_demo(bundle: Path, data_dir: Path, port: int) -> None:
    """Serve `bundle` on loopback with a demo clinician (a new password and API key each time)."""
    from medsight.cli.serve import serve as serve_command
    from medsight.serve.db.store import Store

    password = secrets.token_urlsafe(12)
    with Store.open(data_dir) as store:
        if store.get_user("demo") is None:
            store.add_user("demo", "clinician", password)
        else:
            store.set_password("demo", password)
        key = store.create_key("demo")[1]
    console.rule("5. serve: upload an image in the browser or over the API")
    console.print(f"web page: http://127.0.0.1:{port}   user: demo   password: {password}",
                  highlight=False)
    console.print(f"API key:  {key}", highlight=False)
    console.print(f"try: curl -H 'Authorization: Bearer {key}' -F file=@IMAGE "
                  f"http://127.0.0.1:{port}/v1/predictions", highlight=False)
    serve_command(bundle=[bundle], data_dir=data_dir, port=port)
