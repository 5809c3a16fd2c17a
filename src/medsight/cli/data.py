"""`medsight data check | deid`: inspect, check and de-identify datasets."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console, err_console
from medsight.cli.progress import open_with_status, progress_bar
from medsight.cli.quality_report import render_quality

data_app = typer.Typer(help="Inspect, check and de-identify datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("check")
def data_check(
    source: Annotated[str, typer.Argument(
        help="Dataset: phantom, a .npz, a manifest, a folder, a VOC folder, a COCO .json or a box CSV.")],
    strict: Annotated[bool, typer.Option(help="Exit 1 on leakage or unreadable files.")] = False,
    classes: Annotated[str | None, typer.Option(
        help="Comma-separated class names in index order (e.g. RBC,WBC,Platelets), for sources "
             "that accept them.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                               help="Also write the JSON report here.")] = None,
) -> None:
    """Counts per split and class, unreadable files, duplicates, leakage, sizes and spacing; for
    detection data also box statistics and what importing the annotations found."""
    from medsight.data.quality import check_dataset

    options = {"classes": [c.strip() for c in classes.split(",") if c.strip()]} if classes else {}
    ds = open_with_status(source, **options)
    with progress_bar(f"checking {len(ds)} images", len(ds)) as update:
        report = check_dataset(ds, progress=update)
    payload = report.to_dict()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2))
    if as_json:
        console.print_json(json.dumps(payload))
    else:
        render_quality(report, console)
    if strict and (report.has_leakage or report.has_unreadable):
        err_console.print("[red]strict check failed:[/] leakage or unreadable files found")
        raise typer.Exit(1)


@data_app.command("deid")
def data_deid(
    input_path: Annotated[Path, typer.Argument(help="A DICOM file or folder (never modified).")],
    output_path: Annotated[Path, typer.Argument(help="Where de-identified copies are written.")],
    secret: Annotated[str | None, typer.Option(
        envvar="MEDSIGHT_DEID_SECRET",
        help="Secret that keys pseudonyms, UIDs and date shifts (same secret = same pseudonyms).")] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="Write original -> pseudonym ids to this CSV (keep it safe).")] = None,
    keep_private: Annotated[bool, typer.Option(help="Keep private tags.")] = False,
) -> None:
    """De-identify DICOM per the PS3.15 Annex E Basic Profile."""
    from medsight.data.deid import deidentify

    summary = deidentify(input_path, output_path, secret=secret, mapping_file=mapping,
                         keep_private=keep_private)
    console.print(f"[green]wrote[/] {len(summary.written)} files to {summary.output}  ·  "
                  f"skipped {len(summary.skipped)} (not DICOM)  ·  failed {len(summary.failed)}  ·  "
                  f"{summary.n_patients} patients, {summary.n_uids} UIDs")
    for path, reason in summary.failed:
        err_console.print(f"[red]failed[/] {path}: {reason}")
    for warning in summary.warnings:
        err_console.print(f"[yellow]warning[/] {warning}")
    if summary.secret_generated:
        err_console.print("[yellow]no --secret given: a random one was used, so pseudonyms will differ "
                          "on the next run[/]")
    if summary.mapping_file:
        console.print(f"mapping: {summary.mapping_file}")
