"""`medsight serve --bundle B [--bundle B2 ...] --host H --port P --data-dir D`: the online
diagnostic service (FastAPI on uvicorn), bound to loopback unless told otherwise.

Scaling out: `--processes N` runs N service processes on the one port (uvicorn workers, a crashed
one replaced); on several machines, run one `medsight serve` per machine behind a load balancer.
Either way, more than one process needs PostgreSQL (`--database-url`) and one shared data folder.
"""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from medsight.cli.app import app, console, err_console
from medsight.errors import InvalidConfig

if TYPE_CHECKING:
    from medsight.serve.settings import ServeSettings


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.command("serve")
def serve(
    bundle: Annotated[list[Path], typer.Option("--bundle", "-b", help="model bundle(s) to serve; "
                                               "the first is the default model")],
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    data_dir: Annotated[Path, typer.Option(help="database, stored images, secret key, audit log")]
    = Path("medsight-data"),
    database_url: Annotated[str | None, typer.Option(
        envvar="MEDSIGHT_DATABASE_URL", help="SQLAlchemy URL (default: SQLite in --data-dir)")] = None,
    max_batch: Annotated[int, typer.Option(help="largest inference batch")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="longest a request waits for a batch to fill")] = 5.0,
    queue_size: Annotated[int, typer.Option(help="predictions in flight before 503")] = 256,
    workers: Annotated[int, typer.Option(help="decode worker processes")] = 2,
    decode_timeout: Annotated[float, typer.Option(help="seconds allowed to decode one upload")] = 30.0,
    decode_memory_mb: Annotated[int, typer.Option(help="memory limit of a decode worker (MB)")] = 4096,
    max_upload_mb: Annotated[float, typer.Option(help="largest request body (MB)")] = 64.0,
    max_pixels: Annotated[int, typer.Option(help="largest image (pixels or voxels)")] = 100_000_000,
    rate_limit: Annotated[int, typer.Option(help="requests per minute per API key or user")] = 600,
    licence_days: Annotated[float, typer.Option(
        help="days an offline licence lasts before it must be renewed online")] = 30.0,
    log_level: Annotated[str, typer.Option(help="debug, info, warning, error")] = "info",
    watch_pacs: Annotated[Path | None, typer.Option(
        help="run the PACS watcher of this YAML in the service (see medsight pacs watch)")] = None,
    processes: Annotated[int, typer.Option(
        min=1, help="service processes sharing the port (more than 1 needs PostgreSQL)")] = 1,
) -> None:
    """Serve bundles over HTTP: upload an image, get a report (API, OpenAPI page at /docs, web page at /)."""
    import uvicorn

    from medsight.serve.app import create_app
    from medsight.serve.settings import ServeSettings

    logging.basicConfig(level=log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not _is_loopback(host):
        err_console.print(f"[yellow]warning:[/] binding {host}: the service is reachable from other "
                          "machines. Put it behind a TLS-terminating reverse proxy; API keys and "
                          "session cookies must not travel in clear text.")
    settings = ServeSettings(bundles=bundle, data_dir=data_dir, database_url=database_url,
                             max_batch=max_batch, max_wait_ms=max_wait_ms, queue_size=queue_size,
                             decode_workers=workers, decode_timeout_s=decode_timeout,
                             decode_memory_mb=decode_memory_mb, max_upload_mb=max_upload_mb,
                             max_pixels=max_pixels, rate_per_minute=rate_limit,
                             licence_days=licence_days, watch_pacs=watch_pacs)
    if processes > 1:
        _serve_processes(settings, processes, host, port, log_level)
        return
    application = create_app(settings)
    svc = application.state.service
    for model in svc.models.values():
        console.print(f"serving {model.key} {model.version} ({model.predictor.task}, "
                      f"classes {', '.join(model.predictor.classes)})")
    console.print(f"database: {svc.store.url_for_display}; data: {data_dir}")
    console.print(f"listening on http://{host}:{port} (web page /, API docs /docs); Ctrl-C stops",
                  highlight=False)
    uvicorn.run(application, host=host, port=port, log_level=log_level.lower(), access_log=False,
                server_header=False, timeout_graceful_shutdown=10)


def _serve_processes(settings: ServeSettings, processes: int, host: str, port: int, log_level: str) -> None:
    """N uvicorn workers, each its own `Service`, sharing the PostgreSQL database (records, audit
    chain, rate limits) and the data folder; the schema is migrated once here, before they start."""
    import os
    import shutil
    import tempfile

    import uvicorn

    from medsight.serve.db import Store
    from medsight.serve.db.engine import resolve_url
    from medsight.serve.metrics import MULTIPROC_ENV
    from medsight.serve.settings import SETTINGS_ENV

    if resolve_url(settings.data_dir, settings.database_url).get_backend_name() != "postgresql":
        raise InvalidConfig(f"--processes {processes} needs PostgreSQL (--database-url or "
                            "MEDSIGHT_DATABASE_URL): the processes share rate limits and the audit "
                            "chain through it. With SQLite, serve one process")
    if settings.watch_pacs is not None:
        raise InvalidConfig("--watch-pacs runs the PACS watcher in one process only: serve it with "
                            "--processes 1 (other replicas of the same database may have "
                            "--watch-pacs too: one of them watches at a time), or run "
                            "`medsight pacs watch` beside the service")
    with Store.open(settings.data_dir, settings.database_url) as store:
        shown = store.url_for_display
    os.environ[SETTINGS_ENV] = settings.to_json()
    metrics_dir = tempfile.mkdtemp(prefix="medsight-metrics-")  # 0700: the workers' metric files
    os.environ[MULTIPROC_ENV] = metrics_dir
    console.print(f"database: {shown}; data: {settings.data_dir}")
    console.print(f"listening on http://{host}:{port} with {processes} processes (web page /, "
                  "API docs /docs); Ctrl-C stops", highlight=False)
    try:
        uvicorn.run("medsight.serve.app:app_from_environment", factory=True, workers=processes,
                    host=host, port=port, log_level=log_level.lower(), access_log=False,
                    server_header=False, timeout_graceful_shutdown=10)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
