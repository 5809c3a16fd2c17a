"""The Typer `app`, the two consoles and `main`; command-group modules register themselves on `app`.

The cli package is the only layer that talks to the terminal. Exit codes: 0 ok, 1 failure (a
`MedsightError`, or a check that `--strict` turned into a failure), 2 usage error.
"""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from medsight.errors import MedsightError

# Piped or captured output (CI logs, `| less`) gets 120 columns instead of rich's 80, so tables
# of file references stay readable; a real terminal keeps its own width.
console = Console(width=None if sys.stdout.isatty() else 120)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 120)

app = typer.Typer(
    help="medsight: medical image classification and detection, from files to a validated model.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Entry point: a `MedsightError` becomes a one-line message and exit code 1.

    Usage errors exit with 2 and `typer.Exit(n)` with n, as Typer does in standalone mode.
    """
    try:
        app()
    except MedsightError as exc:
        err_console.print(f"[bold red]error:[/] {escape(str(exc))}")
        sys.exit(1)
