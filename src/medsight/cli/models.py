"""`medsight models list`: the registry of neural networks."""

from __future__ import annotations

import typer
from rich.table import Table

from medsight.cli.app import app, console

models_app = typer.Typer(help="The registry of neural networks.", no_args_is_help=True)
app.add_typer(models_app, name="models")


@models_app.command("list")
def models_list() -> None:
    """Print the registered networks."""
    from medsight.models.networks import list_networks

    table = Table("name", "task", "dims", "default input", "min size", "parameters",
                  "description")
    for info in list_networks():
        table.add_row(info.name, info.task, f"{info.dims}D", str(info.default_size),
                      f"{info.min_size} px",
                      f"{info.parameters:,}", info.description)
    console.print(table)
