"""`medsight pacs ...`: talk to a PACS (DICOMweb or DIMSE). Every command takes the connection from
`--config FILE` (its `pacs:` mapping) and/or flags; a flag overrides the file's value."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from medsight.cli.app import app, console
from medsight.pacs.config import PacsConfig

pacs_app = typer.Typer(help="PACS: check the connection, pull studies into a local dataset, push "
                            "results back, watch for new series.", no_args_is_help=True)
app.add_typer(pacs_app, name="pacs")

ConfigOpt = Annotated[Path | None, typer.Option(
    "--config", "-c", help="YAML file with a `pacs:` mapping (url or ae_title/host/port, username, "
                           "password_file, ...)")]
UrlOpt = Annotated[str | None, typer.Option(help="DICOMweb root URL, e.g. http://pacs:8042/dicom-web")]
UserOpt = Annotated[str | None, typer.Option("--user", help="HTTP basic-auth user")]
PasswordFileOpt = Annotated[Path | None, typer.Option(
    help="file holding the password (mode 0600); else $MEDSIGHT_PACS_PASSWORD")]
AeOpt = Annotated[str | None, typer.Option(help="the PACS's AE title (DIMSE)")]
HostOpt = Annotated[str | None, typer.Option(help="the PACS's host (DIMSE)")]
PortOpt = Annotated[int | None, typer.Option(help="the PACS's DICOM port (DIMSE)")]
CallingAeOpt = Annotated[str | None, typer.Option(help="medsight's own AE title (default MEDSIGHT)")]
ScpPortOpt = Annotated[int | None, typer.Option(
    help="port of medsight's storage SCP, where C-MOVE sends (the PACS must know it)")]


def pacs_config(config: Path | None, url: str | None, user: str | None,
                password_file: Path | None, ae_title: str | None, host: str | None,
                port: int | None, calling_ae: str | None, scp_port: int | None) -> PacsConfig:
    """The connection from the YAML file (when given) with every given flag laid over it."""
    values: dict[str, Any] = {}
    if config is not None:
        values = PacsConfig.from_yaml(config).model_dump(exclude_unset=True)
    flags = {"url": url, "username": user, "password_file": password_file, "ae_title": ae_title,
             "host": host, "port": port, "calling_ae": calling_ae, "scp_port": scp_port}
    values.update({k: v for k, v in flags.items() if v is not None})
    return PacsConfig.of(values, where=str(config) if config else "PACS flags")


@pacs_app.command("echo")
def echo(config: ConfigOpt = None, url: UrlOpt = None, user: UserOpt = None,
         password_file: PasswordFileOpt = None, ae_title: AeOpt = None, host: HostOpt = None,
         port: PortOpt = None, calling_ae: CallingAeOpt = None, scp_port: ScpPortOpt = None) -> None:
    """Check that the PACS answers (C-ECHO over DIMSE, a QIDO request over DICOMweb)."""
    from medsight.pacs import open_pacs

    cfg = pacs_config(config, url, user, password_file, ae_title, host, port, calling_ae, scp_port)
    pacs = open_pacs(cfg)
    try:
        pacs.echo()
    finally:
        pacs.close()
    console.print(f"[green]ok[/]: {cfg.display} answers ({cfg.transport})")
