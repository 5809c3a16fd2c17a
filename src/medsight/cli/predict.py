"""`medsight predict --bundle B PATH... --out results.json`: predict files, folders and DICOM series
with a bundle, in this process's decode pool or (``--engine ray``) on a Ray cluster; unreadable
inputs are reported with their reason and make the exit code 1."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from medsight.cli.app import app, console, err_console
from medsight.cli.progress import progress_bar


class Engine(StrEnum):
    local = "local"
    ray = "ray"


@app.command("predict")
def predict(
    paths: Annotated[list[Path], typer.Argument(help="image files, folders (recursive), DICOM series")],
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="model bundle (.msb or folder)")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help=(
        "results file: .json, .csv or .parquet (--engine ray: .parquet); with --engine local a "
        "detector also writes X.coco.json and X_annotated/*.png beside it"))] = None,
    report_dir: Annotated[Path | None, typer.Option(
        help="write one printable HTML report per input and an index.html here")] = None,
    heatmaps: Annotated[bool | None, typer.Option(
        "--heatmaps/--no-heatmaps", help="draw heatmaps (default: with --report-dir)")] = None,
    workers: Annotated[int, typer.Option(
        help="decoder worker processes (--engine ray: one per actor)")] = 1,
    timeout: Annotated[float, typer.Option(help="seconds allowed to decode one input")] = 30.0,
    memory_mb: Annotated[int, typer.Option(help="memory limit of a decoder worker (MB)")] = 4096,
    batch_size: Annotated[int, typer.Option(help="images per runtime call")] = 32,
    allow_unsigned: Annotated[bool, typer.Option(
        help="run an unsigned bundle (a model you trained yourself); results say so")] = False,
    engine: Annotated[Engine, typer.Option(
        help="local: this machine; ray: a pool of Ray actors (pip install 'medsight\\[ray]')")
    ] = Engine.local,
    address: Annotated[str | None, typer.Option(
        help="--engine ray: the Ray cluster to join (host:port); default: start a local one")
    ] = None,
    actors: Annotated[int | None, typer.Option(
        help="--engine ray: predicting actors (default: one per CPU of the cluster)")] = None,
) -> None:
    """Predict with a bundle, offline: the bundle's signature and every hash, and your licence
    (`medsight activate`), are checked first. Files are decoded in worker processes."""
    from medsight.deploy.licence_store import LicenceStore

    if engine is Engine.ray:
        if out is None or report_dir is not None or heatmaps:
            raise typer.BadParameter("--engine ray writes one results file: give --out "
                                     "results.parquet (reports and heatmaps: --engine local)")
        from medsight.deploy.batch_ray import predict_paths_ray

        with progress_bar("predicting on Ray") as update:
            summary = predict_paths_ray(bundle, paths, out, address=address, actors=actors,
                                        timeout_s=timeout, memory_mb=memory_mb,
                                        batch_size=batch_size, progress=lambda d, t: update(d, t),
                                        licences=LicenceStore(), allow_unsigned=allow_unsigned)
    else:
        from medsight.deploy.batch import predict_paths

        with progress_bar("predicting") as update:
            summary = predict_paths(bundle, paths, out=out, report_dir=report_dir,
                                    heatmaps=heatmaps, workers=workers, timeout_s=timeout,
                                    memory_mb=memory_mb, batch_size=batch_size,
                                    progress=lambda d, t: update(d, t), licences=LicenceStore(),
                                    allow_unsigned=allow_unsigned)
    if summary.entitlement:
        console.print(summary.entitlement, highlight=False)
    show_results(summary)
    if summary.failures:
        raise typer.Exit(1)


def show_results(summary) -> None:
    """The first results as a table, every failure with its reason, and where outputs went."""
    if summary.first:
        table = Table(title=f"first {len(summary.first)} of {summary.ok} predictions"
                      if summary.ok > len(summary.first) else None)
        for col in ("input", "result", "confidence", "warnings"):
            table.add_column(col)
        for p in summary.first:
            table.add_row(escape(p.source), escape(p.label), f"{p.confidence:.3f}",
                          escape("\n".join(p.warnings)))
        console.print(table)
    skipped = f", {summary.skipped} documents (.csv, .txt ...) skipped" if summary.skipped else ""
    console.print(f"{summary.ok} predicted, {len(summary.failures)} failed, {summary.warned} with "
                  f"warnings{skipped}")
    for source, reason in summary.failures[:50]:
        err_console.print(f"[bold red]not predicted:[/] {escape(source)}: {escape(reason)}")
    if len(summary.failures) > 50:
        err_console.print(f"... and {len(summary.failures) - 50} more (see the results file)")
    if summary.out is not None:
        console.print(f"results: {summary.out.resolve()}")
    if summary.coco is not None:
        console.print(f"boxes (COCO): {summary.coco.resolve()}")
        console.print(f"annotated images: {summary.annotated.resolve()}")
    if summary.index is not None:
        console.print(f"reports: {summary.index.resolve()}")
