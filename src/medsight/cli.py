"""The `medsight` command line: parse arguments, call the library, show progress and results.

This is the only module that talks to the terminal. Exit codes: 0 ok, 1 failure (a
`MedsightError`, or a check that `--strict` turned into a failure), 2 usage error.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

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
data_app = typer.Typer(help="Inspect, check and de-identify datasets.", no_args_is_help=True)
datasets_app = typer.Typer(help="Download public datasets (MedMNIST) into a local cache.",
                           no_args_is_help=True)
models_app = typer.Typer(help="The registry of neural networks.", no_args_is_help=True)
preprocess_app = typer.Typer(help="Look at preprocessing before training.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(datasets_app, name="datasets")
app.add_typer(models_app, name="models")
app.add_typer(preprocess_app, name="preprocess")


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


def _open(source: str):
    from medsight.data.open import open_source

    with console.status(f"indexing {source} ..."):
        return open_source(source)


# --------------------------------------------------------------------------------------- data
@data_app.command("check")
def data_check(
    source: Annotated[str, typer.Argument(help="Dataset: phantom, a .npz, a manifest or a folder.")],
    strict: Annotated[bool, typer.Option(help="Exit 1 on leakage or unreadable files.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
    output: Annotated[Path | None, typer.Option("--output", "-o",
                                               help="Also write the JSON report here.")] = None,
) -> None:
    """Counts per split and class, unreadable files, duplicates, leakage, sizes and spacing."""
    from medsight.data.quality import check_dataset

    ds = _open(source)
    with progress_bar(f"checking {len(ds)} images", len(ds)) as update:
        report = check_dataset(ds, progress=update)
    payload = report.to_dict()
    if output:
        output.parent.mkdir(parents=True, exist_ok=True)
        output.write_text(json.dumps(payload, indent=2))
    if as_json:
        console.print_json(json.dumps(payload))
    else:
        report.render(console)
    if strict and (report.has_leakage or report.has_unreadable):
        err_console.print("[red]strict check failed:[/] leakage or unreadable files found")
        raise typer.Exit(1)


@data_app.command("deid")
def data_deid(
    input_path: Annotated[Path, typer.Argument(help="A DICOM file or folder (never modified).")],
    output_path: Annotated[Path, typer.Argument(help="Where de-identified copies are written.")],
    secret: Annotated[str | None, typer.Option(
        envvar="MEDSIGHT_DEID_SECRET",
        help="Secret that keys pseudonyms, UIDs and date shifts (same secret = same pseudonyms).")] = None,
    mapping: Annotated[Path | None, typer.Option(
        help="Write original -> pseudonym ids to this CSV (keep it safe).")] = None,
    keep_private: Annotated[bool, typer.Option(help="Keep private tags.")] = False,
) -> None:
    """De-identify DICOM per the PS3.15 Annex E Basic Profile."""
    from medsight.data.deid import deidentify

    summary = deidentify(input_path, output_path, secret=secret, mapping_file=mapping,
                         keep_private=keep_private)
    console.print(summary.to_text() if hasattr(summary, "to_text") else summary)


# ----------------------------------------------------------------------------------- datasets
@datasets_app.command("fetch")
def datasets_fetch(
    name: Annotated[str, typer.Argument(help="MedMNIST subset, e.g. breastmnist.")],
    size: Annotated[int, typer.Option(help="Image size: 28, 64, 128 or 224.")] = 28,
    cache_dir: Annotated[Path | None, typer.Option(help="Cache folder ($MEDSIGHT_CACHE).")] = None,
) -> None:
    """Download a MedMNIST subset from its official source, verified by MD5."""
    from medsight.data.fetch import fetch_medmnist

    with progress_bar(f"downloading {name}") as update:
        path = fetch_medmnist(name, size=size, cache_dir=cache_dir, progress=update)
    console.print(f"[green]ok[/] {path}")


# ------------------------------------------------------------------------------------- models
@models_app.command("list")
def models_list() -> None:
    """Print the registered networks."""
    from medsight.models.networks import list_networks

    table = Table("name", "dims", "default input", "min size", "parameters", "description")
    for info in list_networks():
        table.add_row(info.name, f"{info.dims}D", str(info.default_size), f"{info.min_size} px",
                      f"{info.parameters:,}", info.description)
    console.print(table)


# --------------------------------------------------------------------------------------- info
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


# ---------------------------------------------------------------------------------- preprocess
@preprocess_app.command("preview")
def preprocess_preview(
    source: Annotated[str, typer.Argument(help="Dataset: phantom, a .npz, a manifest or a folder.")],
    config: Annotated[Path, typer.Option("--config", "-c",
                                         help="YAML: a list of steps, or an experiment config.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="PNG file to write.")] = Path(
        "preview.png"),
    n: Annotated[int, typer.Option(help="How many samples to show.")] = 6,
    seed: Annotated[int, typer.Option(help="Which samples: a seeded random pick.")] = 0,
) -> None:
    """Before/after grid of a few samples, to look at preprocessing before training."""
    from medsight.experiment import preprocess_preview as preview

    ds = _open(source)
    fig, chain = preview(ds, config, n=n, seed=seed)
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=100)
    console.print(chain.describe())
    console.print(f"[green]wrote[/] {output}")


# -------------------------------------------------------------------------------- train/compare
@app.command("train")
def train(
    config: Annotated[Path, typer.Argument(help="Experiment YAML (see examples/).")],
    data: Annotated[str | None, typer.Option(help="Override data.source.")] = None,
    out: Annotated[Path | None, typer.Option(help="Override the output run folder.")] = None,
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="KEY=VALUE",
        help="Override any config key, dotted (model.params.epochs=1); VALUE is read as YAML. "
             "Repeatable.")] = None,
) -> None:
    """Train and evaluate the configured model(s); writes a run folder with report.html."""
    from medsight.config import load_config
    from medsight.experiment import run_experiment

    overrides = _set_overrides(set_ or [])  # --data and --out win over --set
    if data is not None:
        overrides["data.source"] = data
    if out is not None:
        overrides["output"] = str(out)
    cfg = load_config(config, overrides)
    result = _run_with_progress(cfg, run_experiment)
    _print_metrics(result.metrics, result.model_label)
    console.print(f"[green]run folder[/] {result.out_dir}  ·  report {result.report}  ·  "
                  f"{result.seconds:.0f} s")


def _run_with_progress(cfg, run_experiment):
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


def _set_overrides(pairs: list[str]) -> dict[str, object]:
    """``KEY=VALUE`` strings -> {dotted key: YAML-parsed value} for `load_config`."""
    import yaml

    overrides: dict[str, object] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}", param_hint="--set")
        try:
            overrides[key.strip()] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise typer.BadParameter(f"{key}: the value is not valid YAML: {exc}",
                                     param_hint="--set") from exc
    return overrides


def _print_metrics(metrics: dict, model: str) -> None:
    table = Table("split", "n", "AUC (95% CI)", "ACC", "sensitivity", "specificity",
                  title=f"model: {model}")
    rows = {k: v for k, v in metrics.items() if isinstance(v, dict) and "auc" in v}
    if "cv" in metrics:
        rows["cv (pooled)"] = metrics["cv"]["pooled"]
    for name, m in rows.items():
        ci = m.get("ci", {}).get("auc", {})
        auc = _num(m.get("auc"))
        if ci.get("ci_low") is not None:
            auc += f" ({_num(ci['ci_low'])}-{_num(ci['ci_high'])})"
        table.add_row(name, str(m.get("n", "")), auc, _num(m.get("acc")),
                      _num(m.get("sensitivity")), _num(m.get("specificity")))
    console.print(table)
    if "cv" in metrics:
        cv = metrics["cv"]
        console.print("cross-validation, mean ± sd over folds: " + ", ".join(
            f"{k} {_num(cv['mean'][k])} ± {_num(cv['sd'].get(k))}"
            for k in ("auc", "acc", "sensitivity", "specificity") if k in cv["mean"]))


def _num(v: object) -> str:
    return f"{v:.3f}" if isinstance(v, float) else ("-" if v is None else str(v))


@app.command("compare")
def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run folders written by `medsight train`.")],
    split: Annotated[str, typer.Option(help="Which evaluated split to compare.")] = "test",
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """One table of models on the same data, with CIs and paired tests (DeLong, bootstrap)."""
    from medsight.evaluate.compare_runs import TABLE_METRICS, compare_runs

    result = compare_runs(runs, split=split)
    if as_json:
        console.print_json(json.dumps(result))
        return
    table = Table("run", "model", "n", *TABLE_METRICS, title=f"{split} split")
    for row in result["table"]:
        cells = []
        for name in TABLE_METRICS:
            m = row.get(name)
            if not m:
                cells.append("-")
                continue
            text = _num(m["value"])
            if m.get("ci_low") is not None:
                text += f"\n({_num(m['ci_low'])}-{_num(m['ci_high'])})"
            cells.append(text)
        table.add_row(row["run"], row["model"], str(row.get("n", "")), *cells)
    console.print(table)
    for pair in result["pairs"]:
        line = f"{pair['a']} vs {pair['b']} (n={pair['n']}): "
        if "delong" in pair:
            d = pair["delong"]
            line += f"AUC {d['auc_a']:.3f} vs {d['auc_b']:.3f}, DeLong p={d['p']:.3g}; "
        b = pair["bootstrap"]
        if b["diff"] is not None:
            line += (f"paired bootstrap {b['metric']} diff {b['diff']:+.3f} "
                     f"({_num(b['ci_low'])}..{_num(b['ci_high'])}), p={b['p']:.3g}")
        console.print(line)


# --------------------------------------------------------------------------------------- demo
@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the demo's outputs.")] = Path("runs/demo"),
    data: Annotated[str | None, typer.Option(
        help="A MedMNIST .npz (or any source) instead of the built-in phantoms.")] = None,
) -> None:
    """The main job, end to end: build data, check it, train, evaluate and write the report."""
    from medsight.data.quality import check_dataset
    from medsight.experiment import demo_config, run_experiment

    cfg = demo_config(out, data)
    ds = _open(cfg.data.source)
    console.rule(f"1. data: {ds.name}")
    with progress_bar(f"checking {len(ds)} images", len(ds)) as update:
        report = check_dataset(ds, progress=update)
    report.render(console)
    console.rule("2. train and evaluate")
    result = _run_with_progress(cfg, run_experiment)
    _print_metrics(result.metrics, result.model_label)
    console.rule("3. outputs")
    console.print(f"report: {result.report.resolve()}")
    console.print(f"run folder: {result.out_dir.resolve()} ({result.seconds:.0f} s)")


def main() -> None:
    """Entry point: a `MedsightError` becomes a one-line message and exit code 1.

    Usage errors exit with 2 and `typer.Exit(n)` with n, as Typer does in standalone mode.
    """
    try:
        app()
    except MedsightError as exc:
        err_console.print(f"[bold red]error:[/] {exc}")
        sys.exit(1)


if __name__ == "__main__":
    main()
