"""`medsight preprocess preview`: look at preprocessing before training."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console
from medsight.cli.progress import open_with_status

preprocess_app = typer.Typer(help="Look at preprocessing before training.", no_args_is_help=True)
app.add_typer(preprocess_app, name="preprocess")


@preprocess_app.command("preview")
def preprocess_preview(
    source: Annotated[str, typer.Argument(help="Dataset: phantom, a .npz, a manifest or a folder.")],
    config: Annotated[Path, typer.Option("--config", "-c",
                                         help="YAML: a list of steps, or an experiment config.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path(
        "preview.png"),
    n: Annotated[int, typer.Option(help="How many samples to show.")] = 6,
    seed: Annotated[int, typer.Option(help="Which samples: a seeded random pick.")] = 0,
) -> None:
    """Before/after grid of a few samples, to look at preprocessing before training."""
    from medsight.experiment import preprocess_preview as preview

    ds = open_with_status(source)
    fig, chain = preview(ds, config, n=n, seed=seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    console.print(chain.describe())
    console.print(f"[green]wrote[/] {output}")
