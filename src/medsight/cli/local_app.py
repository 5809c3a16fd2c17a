"""`medsight app --bundle B`: the service's web page on 127.0.0.1 for one person and no network:
no accounts (the licence is the entitlement), results and reports kept in a local folder, the
browser opened on a secret link when there is one."""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console, err_console


def _has_browser() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def _default_folder() -> Path:
    from platformdirs import user_documents_dir

    return Path(user_documents_dir()) / "medsight results"


@app.command("app")
def local_app(
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="the bundle (.msb or folder)")],
    folder: Annotated[Path | None, typer.Option(
        "--folder", help="where results, reports and images are kept "
                         "(default: 'medsight results' in your documents folder)")] = None,
    port: Annotated[int, typer.Option(help="port on 127.0.0.1 (0: any free port)")] = 0,
    browser: Annotated[bool, typer.Option(help="open the page in the browser")] = True,
    allow_unsigned: Annotated[bool, typer.Option(
        help="run an unsigned bundle (a model you trained yourself); results say so")] = False,
) -> None:
    """Run a bundle in your browser on this machine, offline, with the service's page."""
    import uvicorn

    from medsight.deploy.entitlement import entitle
    from medsight.serve.app import create_app
    from medsight.serve.local_mode import LocalMode
    from medsight.serve.settings import ServeSettings

    local = LocalMode(entitle(bundle, allow_unsigned=allow_unsigned))  # refusals stop here
    folder = folder or _default_folder()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(("127.0.0.1", port))
    except OSError as exc:
        raise typer.BadParameter(f"cannot listen on 127.0.0.1:{port} ({exc}); try --port 0") from exc
    logging.basicConfig(level="WARNING", format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = ServeSettings(bundles=[bundle], data_dir=folder, decode_workers=1, local=local)
    application = create_app(settings)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}/local/enter?token={local.token}"
    console.print(local.entitlement.describe(), highlight=False)
    console.print(f"results, reports and images: {folder}", highlight=False)
    console.print(f"open {url}\n(this link lets a browser in; keep it to yourself). Ctrl-C stops.",
                  highlight=False, soft_wrap=True)
    if browser and _has_browser():
        import webbrowser

        if not webbrowser.open(url):
            err_console.print("no browser could be opened: open the link above yourself")
    server = uvicorn.Server(uvicorn.Config(application, log_level="warning", access_log=False,
                                           server_header=False, timeout_graceful_shutdown=5))
    server.run(sockets=[sock])
