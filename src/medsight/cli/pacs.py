"""`medsight pacs ...`: talk to a PACS (DICOMweb or DIMSE). Every command takes the connection from
`--config FILE` (its `pacs:` mapping) and/or flags; a flag overrides the file's value."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from medsight.cli.app import app, console

if TYPE_CHECKING:  # the library loads when a pacs command runs, not with every `medsight` command
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
    from medsight.pacs.config import PacsConfig

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


LimitOpt = Annotated[int | None, typer.Option(min=1, help="at most this many studies")]
QueryOpt = Annotated[str | None, typer.Option(
    "--query", "-q", help="KEY=VALUE&... DICOM keywords, e.g. 'Modality=CT&StudyDate=2020-2021' "
                          "(dates: YYYY, YYYYMM, YYYY-MM-DD, ranges FROM-TO, FROM-, -TO)")]


def _open(cfg: PacsConfig):
    from medsight.pacs import open_pacs

    return open_pacs(cfg)


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


@pacs_app.command("pull")
def pull_cmd(out: Annotated[Path, typer.Option("--out", "-o", help="folder to write (created)")],
             query: QueryOpt = None,
             study: Annotated[str | None, typer.Option(help="one StudyInstanceUID")] = None,
             limit: LimitOpt = None,
             deidentify: Annotated[bool, typer.Option(
                 help="also write PS3.15 de-identified copies into OUT/deid/ (originals stay in "
                      "OUT/dicom/)")] = False,
             deidentify_only: Annotated[bool, typer.Option(
                 help="write only the de-identified copies (no originals on disk)")] = False,
             secret: Annotated[str | None, typer.Option(
                 help="secret keying the pseudonyms (default: one kept 0600 in OUT/.deid-secret)",
                 envvar="MEDSIGHT_DEID_SECRET")] = None,
             config: ConfigOpt = None, url: UrlOpt = None, user: UserOpt = None,
             password_file: PasswordFileOpt = None, ae_title: AeOpt = None, host: HostOpt = None,
             port: PortOpt = None, calling_ae: CallingAeOpt = None,
             scp_port: ScpPortOpt = None) -> None:
    """Copy the studies matching --query (or the one --study) into OUT/dicom/ with OUT/manifest.csv;
    run it again to resume: files already there (and whole) are not fetched again."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from rich.table import Table

    from medsight.pacs.pull import pull
    from medsight.pacs.query import parse_query

    if (query is None) == (study is None):
        raise typer.BadParameter("give --query or --study (one of them)")
    parsed = parse_query(query) if query is not None else None
    cfg = pacs_config(config, url, user, password_file, ae_title, host, port, calling_ae, scp_port)
    pacs = _open(cfg)
    try:
        with Progress("[progress.description]{task.description}", BarColumn(),
                      MofNCompleteColumn(), TimeRemainingColumn(), console=console,
                      transient=not console.is_terminal) as bar:
            task = bar.add_task("instances", total=None)
            report = pull(pacs, out, query=parsed, study=study, limit=limit, deidentify=deidentify,
                          deidentify_only=deidentify_only, secret=secret,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))
    finally:
        pacs.close()
    table = Table(show_header=False, title=f"pulled from {cfg.display}")
    for name, value in [("studies", report.studies), ("series", report.series),
                        ("instances fetched", report.fetched),
                        ("already present", report.present), ("failed", len(report.failed)),
                        ("series or studies not listed", len(report.unlisted)),
                        ("written", _size(report.bytes)),
                        ("de-identified copies", report.deidentified),
                        ("manifest", report.manifest or "-"),
                        ("de-identified manifest", report.deid_manifest or "-")]:
        table.add_row(name, str(value))
    console.print(table)
    if report.instances == 0:
        console.print("[yellow]nothing matched[/]: check the query with `medsight pacs find`")
    for sop, reason in report.failed[:20]:
        console.print(f"[red]failed[/] {sop}: {reason}")
    for uid, reason in report.unlisted[:20]:
        console.print(f"[red]not listed[/] {uid}: {reason}")
    if not report.ok:
        what = [f"{len(report.failed)} instance(s) failed"] if report.failed else []
        what += [f"{len(report.unlisted)} series or studies not listed"] if report.unlisted else []
        console.print(f"[red]{', '.join(what)}[/]; run the same command again to retry them")
        raise typer.Exit(1)


@pacs_app.command("push")
def push_cmd(files: Annotated[list[Path], typer.Argument(help="DICOM files (e.g. an SR, a SC)")],
             config: ConfigOpt = None, url: UrlOpt = None, user: UserOpt = None,
             password_file: PasswordFileOpt = None, ae_title: AeOpt = None, host: HostOpt = None,
             port: PortOpt = None, calling_ae: CallingAeOpt = None,
             scp_port: ScpPortOpt = None) -> None:
    """Store DICOM files in the PACS (STOW-RS or C-STORE); every file must be accepted."""
    from rich.table import Table

    from medsight.pacs.push import push

    cfg = pacs_config(config, url, user, password_file, ae_title, host, port, calling_ae, scp_port)
    pacs = _open(cfg)
    try:
        report = push(pacs, files)
    finally:
        pacs.close()
    table = Table("file", "SOP class", "SOPInstanceUID", title=f"stored in {cfg.display}")
    for row in report.stored:
        table.add_row(Path(row["path"]).name, row["sop_class"], row["sop_uid"])
    console.print(table)


_FIND_COLUMNS = {
    "study": ("StudyInstanceUID", "StudyDate", "ModalitiesInStudy", "StudyDescription",
              "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances"),
    "series": ("SeriesInstanceUID", "StudyDate", "Modality", "BodyPartExamined",
               "SeriesDescription", "NumberOfSeriesRelatedInstances"),
}


@pacs_app.command("find")
def find_cmd(query: QueryOpt = None,
             level: Annotated[str, typer.Option(help="study or series")] = "study",
             limit: LimitOpt = None,
             show_patient: Annotated[bool, typer.Option(
                 help="also show PatientID and PatientName (identifying)")] = False,
             config: ConfigOpt = None, url: UrlOpt = None, user: UserOpt = None,
             password_file: PasswordFileOpt = None, ae_title: AeOpt = None, host: HostOpt = None,
             port: PortOpt = None, calling_ae: CallingAeOpt = None,
             scp_port: ScpPortOpt = None) -> None:
    """List the studies or series matching --query (no patient names unless --show-patient)."""
    from rich.table import Table

    from medsight.pacs.query import at_level, parse_query

    if level not in _FIND_COLUMNS:
        raise typer.BadParameter(f"--level {level!r}: use study or series")
    columns = _FIND_COLUMNS[level] + (("PatientID", "PatientName") if show_patient else ())
    cfg = pacs_config(config, url, user, password_file, ae_title, host, port, calling_ae, scp_port)
    pacs = _open(cfg)
    try:
        answers = pacs.search(level, at_level(parse_query(query), level),  # type: ignore[arg-type]
                              fields=columns, limit=limit)
    finally:
        pacs.close()
    table = Table(title=f"{len(answers)} {level} match(es) in {cfg.display}")
    for column in columns:
        short = column.replace("NumberOf", "").replace("RelatedInstances", " instances").replace(
            "RelatedSeries", " series")
        table.add_column(short, overflow="fold")
    for answer in answers:
        table.add_row(*("" if answer.get(c) is None else str(answer.get(c)) for c in columns))
    console.print(table)
