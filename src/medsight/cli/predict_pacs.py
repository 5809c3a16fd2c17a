"""`medsight predict --pacs CONN.yaml --query ...`: pull the studies a query matches into a local
folder with the existing pull (resumable: what is already there is not fetched again), then
predict that folder's manifest. The composition lives here, in cli/: deploy never imports pacs."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.markup import escape

from medsight.cli.app import console, err_console
from medsight.cli.pacs import pacs_config
from medsight.cli.progress import progress_bar

QUERY_FILE = ".medsight-predict-query.json"  # the query that filled a pull folder


def default_pull_dir(out: Path | None) -> Path:
    """Where a query's instances go by default: ``R.pacs/`` beside the results file ``R.ext``."""
    if out is None:
        raise typer.BadParameter("--pacs needs --out (the pulled instances go beside it, or give "
                                 "--pull-dir)")
    return out.with_name(out.stem + ".pacs")


def pull_query(connection: Path, queries: list[str], pull_dir: Path) -> tuple[Path, list[str]]:
    """Pull what `queries` (``KEY=VALUE``, each maybe ``A=1&B=2``; all must match) select from
    the PACS of the YAML file `connection` into `pull_dir`; the manifest to predict and, for
    each instance that could not be fetched, ``"SOP UID: reason"`` (a series or study the PACS
    would not list: ``"UID not listed: reason"``). A pull folder serves one
    query: reusing it for another is refused, so the results never mix two queries."""
    from medsight.pacs import open_pacs
    from medsight.pacs.pull import pull
    from medsight.pacs.query import parse_query

    query = parse_query("&".join(queries))
    if not query:
        raise typer.BadParameter("--pacs needs --query KEY=VALUE (e.g. --query Modality=CT "
                                 "--query StudyDate=2020-2021)")
    _claim(pull_dir, query)
    cfg = pacs_config(connection, None, None, None, None, None, None, None, None)
    pacs = open_pacs(cfg)
    try:
        with progress_bar(f"pulling from {cfg.display}") as update:
            report = pull(pacs, pull_dir, query=query, progress=lambda d, t: update(d, t))
    finally:
        pacs.close()
    console.print(f"{cfg.display}: {report.studies} studies, {report.series} series, "
                  f"{report.fetched} instances fetched, {report.present} already in {pull_dir}, "
                  f"{len(report.failed)} failed, {len(report.unlisted)} series or studies not "
                  "listed", highlight=False)
    problems = [f"{sop}: {reason}" for sop, reason in report.failed]
    problems += [f"{uid} not listed: {reason}" for uid, reason in report.unlisted]
    if report.manifest is None:
        if problems:
            raise typer.BadParameter(f"no instance could be pulled from {cfg.display}; first "
                                     f"failure: {problems[0]}")
        raise typer.BadParameter(f"nothing in {cfg.display} matches the query on "
                                 f"{', '.join(sorted(query))}: check it with `medsight pacs find`")
    return Path(report.manifest), problems


def show_pull_failures(failed: list[str]) -> None:
    """The instances the pull could not fetch (not in the results): rerun to retry them."""
    for line in failed[:20]:
        err_console.print(f"[bold red]not pulled:[/] {escape(line)}")
    if failed:
        err_console.print(f"{len(failed)} instance(s) could not be pulled and are not in the "
                          "results; run the same command again to retry them (what was pulled "
                          "is not fetched again)")


def _claim(pull_dir: Path, query: dict[str, str]) -> None:
    record = pull_dir / QUERY_FILE
    wanted = json.dumps(query, sort_keys=True)
    if record.is_file():
        held = record.read_text(encoding="utf-8").strip()
        if held != wanted:
            raise typer.BadParameter(f"{pull_dir} holds the instances of another query (see "
                                     f"{record}); give another --pull-dir (or --out) for this one")
        return
    pull_dir.mkdir(parents=True, exist_ok=True)
    record.write_text(wanted + "\n", encoding="utf-8")
