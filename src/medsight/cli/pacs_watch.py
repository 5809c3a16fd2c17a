"""`medsight pacs watch CONFIG --bundle B --data-dir D [--once]`: run the PACS watcher outside the
web service (same prediction path and database), and `medsight pacs jobs`: what it has done."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medsight.cli.app import console
from medsight.cli.pacs import pacs_app

DataDirOpt = Annotated[Path, typer.Option(help="the service's data folder (database, images)")]
DatabaseOpt = Annotated[str | None, typer.Option(
    help="database URL (default $MEDSIGHT_DATABASE_URL, else SQLite in --data-dir)")]


@pacs_app.command("watch")
def watch(
    config: Annotated[Path, typer.Argument(help="the watcher's YAML (pacs, watch, models)")],
    bundle: Annotated[list[Path], typer.Option("--bundle", "-b", help="model bundle(s) the rules name")],
    data_dir: DataDirOpt = Path("medsight-data"),
    database_url: DatabaseOpt = None,
    once: Annotated[bool, typer.Option(help="poll once, print a summary and exit (1 if any failed)")]
    = False,
    workers: Annotated[int, typer.Option(help="decode worker processes")] = 1,
) -> None:
    """Poll the PACS; run each matching model once per new series; write SR and SC results back."""
    from medsight.pacs.watch_config import WatchConfig
    from medsight.serve.pacs_watch import service_watcher
    from medsight.serve.service import Service
    from medsight.serve.settings import ServeSettings

    logging.basicConfig(level="INFO", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = WatchConfig.from_yaml(config)
    service = Service(ServeSettings(bundles=bundle, data_dir=data_dir, database_url=database_url,
                                    decode_workers=workers, max_wait_ms=0.0))
    try:
        watcher = service_watcher(service, cfg)
        try:
            if not once:
                console.print(f"watching {watcher.name} every {cfg.watch.poll_s:g} s; Ctrl-C stops")
                try:
                    watcher.run_forever(threading.Event())
                except KeyboardInterrupt:
                    pass
                return
            report = watcher.poll_once()
        finally:
            watcher.pacs.close()
        table = Table("series", "model", "status", "attempts", "written", "reason")
        for o in report.outcomes:
            table.add_row(o.series_uid, o.model, o.status, str(o.attempts), str(o.written), o.reason)
        console.print(table)
        console.print(report.summary())
    finally:
        service.close()
    if report.failed:
        raise typer.Exit(1)


@pacs_app.command("jobs")
def jobs(data_dir: DataDirOpt = Path("medsight-data"), database_url: DatabaseOpt = None,
         status: Annotated[str | None, typer.Option(
             help="only jobs in this status (pending, running, done, failed, skipped)")] = None) -> None:
    """The watcher's jobs: one per PACS, series and model, with status, attempts and error."""
    from medsight.serve.db.pacs_state import PacsState
    from medsight.serve.db.store import Store

    with Store.open(data_dir, database_url) as store:
        found = PacsState(store).jobs(status)
    table = Table("series", "model", "status", "attempts", "instances", "written", "error / reason")
    for j in found:
        table.add_row(j.series_uid, j.model_name, j.status, str(j.attempts), str(j.instances or 0),
                      str(len(j.results)), j.last_error or "")
    console.print(table)
    console.print(f"{len(found)} job(s)")
