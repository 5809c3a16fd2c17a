"""`medsight datasets fetch`: download public datasets (MedMNIST) into a local cache."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console
from medsight.cli.progress import progress_bar

datasets_app = typer.Typer(help="Download public datasets (MedMNIST) into a local cache.",
                           no_args_is_help=True)
app.add_typer(datasets_app, name="datasets")


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
