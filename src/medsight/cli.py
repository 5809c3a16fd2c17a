"""The `medsight` command line: parse arguments, call the library, show progress and results.

This is the only module that talks to the terminal. Exit codes: 0 ok, 1 failure (a
`MedsightError`, or a check that `--strict` turned into a failure), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from medsight.errors import MedsightError

console = Console()
err_console = Console(stderr=True)

app = typer.Typer(
    help="medsight: medical image classification and detection, from files to a validated model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Inspect, check and de-identify datasets.", no_args_is_help=True)
datasets_app = typer.Typer(help="Download public datasets (MedMNIST) into a local cache.",
                           no_args_is_help=True)
models_app = typer.Typer(help="The registry of neural networks.", no_args_is_help=True)
preprocess_app = typer.Typer(help="Look at preprocessing before training.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(preprocess_app, name="preprocess")


@contextmanager
def progress_bar(description: str, total: int | None = None) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar; yields a callback ``(done, total)`` for library functions."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as progress:
        task = progress.add_task(description, total=total)

        def update(done: int, total_now: int) -> None:
            progress.update(task, completed=done, total=total_now)

        yield update


def _open(source: str):
    from medsight.data.open import open_source

    with console.status(f"indexing {source} ..."):
        return open_source(source)


# --------------------------------------------------------------------------------------- data
@data_app.command("check")
def data_check(
    source: Annotated[str, typer.Argument(help="Dataset: phantom, a .npz, a manifest or a folder.")],
    strict: Annotated[bool, typer.Option(help="Exit 1 on leakage or unreadable files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                               help="Also write the JSON report here.")] = None,
) -> None:
    """Counts per split and class, unreadable files, duplicates, leakage, sizes and spacing."""
    from medsight.data.quality import check_dataset

    ds = _open(source)
    with progress_bar(f"checking {len(ds)} images", len(ds)) as update:
        report = check_dataset(ds, progress=update)
    payload = report.to_dict()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2))
    if as_json:
        console.print_json(json.dumps(payload))
    else:
        report.render(console)
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
    console.print(summary.to_text() if hasattr(summary, "to_text") else summary)


# ----------------------------------------------------------------------------------- datasets
@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="MedMNIST subset, e.g. breastmnist.")],
    size: Annotated[int, typer.Option(help="Image size: 28, 64, 128 or 224.")] = 28,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder ($MEDSIGHT_CACHE).")] = None,
) -> None:
    """Download a MedMNIST subset from its official source, verified by MD5."""
    from medsight.data.fetch import fetch_medmnist

    with progress_bar(f"downloading {name}") as update:
        path = fetch_medmnist(name, size=size, cache_dir=cache_dir, progress=update)
    console.print(f"[green]ok[/] {path}")


# ------------------------------------------------------------------------------------- models
@models_app.command("list")
def models_list() -> None:
    """Print the registered networks."""
    from medsight.models.networks import list_networks

    table = Table("name", "dims", "input", "parameters", "description")
    for info in list_networks():
        params = getattr(info, "parameters", None)
        table.add_row(info.name, str(info.dims), str(getattr(info, "default_size", "")),
                      f"{params:,}" if isinstance(params, int) else "", info.description)
    console.print(table)


# --------------------------------------------------------------------------------------- info
@app.command("info")
def info(path: Annotated[Path, typer.Argument(help="An image file: DICOM, NIfTI, PNG ...")]) -> None:
    """Read one image and show its shape, spacing, modality and ids."""
    from medsight.io import read_image

    img = read_image(path)
    table = Table(show_header=False)
    table.add_row("shape (C,[D,]H,W)", str(tuple(img.pixels.shape)))
    table.add_row("spacing (mm)", str(img.spacing))
    table.add_row("modality", str(img.modality))
    table.add_row("photometric", str(img.photometric))
    table.add_row("value range", f"{float(img.pixels.min()):g} .. {float(img.pixels.max()):g}")
    for key, value in vars(img.ids).items():
        table.add_row(key, str(value))
    for key, value in sorted(img.metadata.items()):
        if isinstance(value, (str, int, float, bool)) or value is None:
            table.add_row(key, str(value))
    console.print(table)


def main() -> None:
    """Entry point: a `MedsightError` becomes a one-line message and exit code 1.

    Usage errors exit with 2 and `typer.Exit(n)` with n, as Typer does in standalone mode.
    """
    try:
        app()
    except MedsightError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
