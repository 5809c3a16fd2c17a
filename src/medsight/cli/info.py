"""`medsight info PATH`: read one image and show what medsight sees in it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medsight.cli.app import app, console


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
