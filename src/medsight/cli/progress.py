"""Progress shown while the library works: a bar for callbacks, a spinner while indexing, epoch bars."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from medsight.cli.app import console, err_console


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


def open_with_status(source: str, **options):
    """`open_source` (with `options` for the source) and a spinner while a large folder is indexed."""
    from medsight.data.open import open_source

    with console.status(f"indexing {source} ..."):
        return open_source(source, **options)


def run_with_progress(cfg, run_experiment):
    """Run an experiment with a stage line and, for networks, a bar per epoch of training."""
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[info]}"), TimeRemainingColumn()]
    with Progress(*columns, console=err_console, transient=True) as bars:
        stage = bars.add_task("starting", total=None, info="")
        epoch_task: dict[str, int] = {}

        def on_status(message: str) -> None:
            bars.update(stage, description=message)

        def on_train(event) -> None:
            if event.stage == "batch":
                if "bar" not in epoch_task:
                    epoch_task["bar"] = bars.add_task("", total=event.batches, info="")
                info = f"loss {event.loss:.4f}"
                bars.update(epoch_task["bar"], completed=event.batch, total=event.batches,
                            description=f"epoch {event.epoch}/{event.epochs}", info=info)
            elif event.stage == "epoch":
                val = "" if event.val_metric is None else f" · val {event.val_metric:.4f}"
                err_console.print(f"epoch {event.epoch}/{event.epochs}: loss {event.loss:.4f}{val}",
                                  highlight=False)

        return run_experiment(cfg, status=on_status, progress=on_train)
