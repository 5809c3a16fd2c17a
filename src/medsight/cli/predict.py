"""`medsight predict --bundle B SOURCE... --out results.json`: predict files, folders, DICOM series,
manifests (an explicitly named ``.csv``) or what a PACS query pulls (``--pacs``) with a bundle, in
this process's decode pool or (``--engine ray``) on a Ray cluster; unreadable inputs are reported
with their reason and make the exit code 1."""

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
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="model bundle (.msb or folder)")],
    paths: Annotated[list[Path] | None, typer.Argument(help=(
        "image files, folders (recursive; .csv/.txt documents inside are skipped), DICOM series, "
        "or manifests: a .csv file named here is read as a manifest, its 'path' column listing "
        "one input per row (relative to the manifest's folder), predicted in row order"),
        show_default=False)] = None,
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
    pacs: Annotated[Path | None, typer.Option(
        "--pacs", help="predict what --query selects in this PACS: a YAML file with a `pacs:` "
                       "mapping, as for `medsight pacs pull --config`")] = None,
    query: Annotated[list[str] | None, typer.Option(
        "--query", "-q", help="--pacs: KEY=VALUE DICOM keywords, all matched (repeat it, or "
                              "join with &), e.g. --query Modality=CT --query StudyDate=2020")
    ] = None,
    pull_dir: Annotated[Path | None, typer.Option(
        help="--pacs: folder the instances are pulled into and kept, so a rerun fetches only "
             "what is missing (default: OUT.pacs/ beside --out); one folder per query")] = None,
) -> None:
    """Predict with a bundle, offline: the bundle's signature and every hash, and your licence
    (`medsight activate`), are checked first. Files are decoded in worker processes. With --pacs,
    the studies --query matches are pulled first (`medsight pacs pull`) and their manifest is
    predicted; the results rows of a manifest's inputs say in `source` its row number (and the
    row's DICOM UIDs)."""
    from medsight.deploy.licence_store import LicenceStore

    pulled_failures: list[str] = []
    if pacs is not None:
        from medsight.cli.predict_pacs import default_pull_dir, pull_query

        if paths:
            raise typer.BadParameter("give SOURCE paths or --pacs, not both")
        manifest, pulled_failures = pull_query(pacs, query or [], pull_dir or default_pull_dir(out))
        paths = [manifest]
    elif query or pull_dir is not None:
        raise typer.BadParameter("--query and --pull-dir go with --pacs CONN.yaml")
    elif not paths:
        raise typer.BadParameter("give what to predict: files, folders, a manifest .csv, or "
                                 "--pacs CONN.yaml --query KEY=VALUE")

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
    if pulled_failures:
        from medsight.cli.predict_pacs import show_pull_failures

        show_pull_failures(pulled_failures)
    if summary.failures or pulled_failures:
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
