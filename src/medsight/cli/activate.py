"""`medsight activate --server URL --bundle B [--api-key KEY] [--renew]`: sign in once, online,
and keep a signed licence to run the bundle offline (in the user's config folder, mode 0600)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from medsight.cli.app import app, console


@app.command("activate")
def activate(
    server: Annotated[str, typer.Option(help="the medsight service that gives out the bundle")],
    bundle: Annotated[Path, typer.Option("--bundle", "-b", help="the signed bundle (.msb or folder)")],
    api_key: Annotated[str | None, typer.Option(
        envvar="MEDSIGHT_API_KEY", help="API key (else the user name and password are asked for)")] = None,
    user: Annotated[str | None, typer.Option(help="user name (asked for when missing)")] = None,
    renew: Annotated[bool, typer.Option(
        help="renew the licence kept for this bundle before it expires")] = False,
    bind_machine: Annotated[bool, typer.Option(
        "--bind-machine/--any-machine", help="bind the licence to this machine")] = True,
) -> None:
    """Get (or renew) a licence to run a bundle with no network; the only step that needs one."""
    from medsight.deploy.activation import activate as run

    password = None
    if not api_key:
        user = user or typer.prompt("User name")
        password = typer.prompt("Password", hide_input=True)
    done = run(server, bundle, api_key=api_key, username=user, password=password, renew=renew,
               bind_machine=bind_machine)
    lic = done.licence
    what = "renewed" if done.renewed_from else "activated"
    console.print(f"[green]{what}[/] {bundle} for {lic.user} ({lic.role}); licence {lic.licence_id} "
                  f"valid until {lic.expires:%Y-%m-%d %H:%M} UTC"
                  f"{', bound to this machine' if lic.machine else ''}", highlight=False)
    console.print(f"licence kept in {done.path}; `medsight predict --bundle {bundle} ...` now runs "
                  "offline", highlight=False)
