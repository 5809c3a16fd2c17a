"""`medsight bundle create | sign | verify | inspect`: make, sign, check and read deployment
bundles."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from medsight.cli.app import app, console

bundle_app = typer.Typer(help="Deployment bundles (.msb): create, verify, inspect.",
                         no_args_is_help=True)
app.add_typer(bundle_app, name="bundle")


@bundle_app.command("create")
def bundle_create(
    run_dir: Annotated[Path, typer.Argument(help="run folder written by `medsight train`")],
    out: Annotated[Path, typer.Option("--out", "-o", help="bundle to write (.msb; other paths: a folder)")],
    name: Annotated[str | None, typer.Option(help="model name (default: the run's name)")] = None,
    version: Annotated[str, typer.Option(help="model version")] = "1.0.0",
    modality: Annotated[str | None, typer.Option(help="input modality, e.g. US, CT, CR")] = None,
    intended_use: Annotated[str | None, typer.Option(help="intended-use statement")] = None,
    limitation: Annotated[list[str] | None, typer.Option(help="a limitation (repeatable)")] = None,
    force: Annotated[bool, typer.Option("--force", help="replace an existing bundle")] = False,
) -> None:
    """Bundle a run's model: ONNX graph, preprocessing, manifest with hashes, model card."""
    from medsight.deploy import create_bundle, open_bundle

    with console.status(f"bundling {run_dir}"):
        path = create_bundle(run_dir, out, name=name, version=version, modality=modality,
                             intended_use=intended_use, limitations=limitation or None,
                             overwrite=force)
    bundle = open_bundle(path)
    parity = bundle.manifest["runtime"]["parity"]
    console.print(f"[green]wrote[/] {path}")
    for line in bundle.summary():
        console.print(f"  {line}")
    if "max_abs_box_diff_px" in parity:  # a detector: its boxes, not probabilities
        console.print(f"  parity with predict_detections on {parity['n']} images "
                      f"({parity['split']} split): {parity['boxes']} boxes, max box difference "
                      f"{parity['max_abs_box_diff_px']:.1e} px, identical labels")
    else:
        console.print(f"  parity with predict_proba on {parity['n']} images ({parity['split']} "
                      f"split): max |diff| {parity['max_abs_diff']:.1e}, identical decisions")


@bundle_app.command("sign")
def bundle_sign(
    bundle: Annotated[Path, typer.Argument(help="bundle (.msb or folder) to sign in place")],
    data_dir: Annotated[Path, typer.Option(help="the service's data folder (its signing key)")],
) -> None:
    """Sign a bundle's manifest with the service's Ed25519 key (created on first use)."""
    from medsight.deploy.bundle import open_bundle
    from medsight.deploy.bundle_archive import read_bundle, write_bundle
    from medsight.deploy.signing import sign_files
    from medsight.serve.signing_keys import SigningKeys, public_key_text

    open_bundle(bundle)  # every hash first: never sign a damaged bundle
    key = SigningKeys(data_dir).current()
    write_bundle(sign_files(read_bundle(bundle), key), bundle, overwrite=True)
    signer = open_bundle(bundle).signature
    console.print(f"[green]signed[/] {bundle} with Ed25519 key {signer.key_id}")
    console.print(f"public key: {public_key_text(key)}", highlight=False)


@bundle_app.command("verify")
def bundle_verify(
    bundle: Annotated[Path, typer.Argument(help="bundle (.msb or folder)")],
    public_key: Annotated[str | None, typer.Option(
        help="the signer's public key (base64 or PEM, or a file holding it): the bundle must be "
             "signed by it")] = None,
) -> None:
    """Check every hash and file of a bundle (and its signature) and print its summary; exit 1 on
    any failure."""
    from medsight.deploy import verify_bundle
    from medsight.deploy.signing import parse_public_key

    trusted = None
    if public_key is not None:
        text = Path(public_key).read_text() if Path(public_key).is_file() else public_key
        trusted = [parse_public_key(text)]
    lines = verify_bundle(bundle, trusted)
    console.print(f"[green]OK[/] {bundle}")
    for line in lines:
        console.print(f"  {line}")


@bundle_app.command("inspect")
def bundle_inspect(
    bundle: Annotated[Path, typer.Argument(help="bundle (.msb or folder)")],
    html: Annotated[Path | None, typer.Option(help="also write the HTML model card here")] = None,
) -> None:
    """Print the model card of a (verified) bundle."""
    from medsight.deploy import open_bundle
    from medsight.deploy.model_card import evaluated_splits, metric_rows

    b = open_bundle(bundle)
    m = b.manifest
    model = m["model"]
    console.print(f"[bold]{model['name']}[/] {model['version']}  ({model['kind']}, uuid {model['uuid']})")
    console.print(f"created {m['created']} with medsight {m['medsight_version']}")
    console.print(f"[bold]Intended use:[/] {m['intended_use']}")
    facts = Table(show_header=False)
    thr = m["threshold"]
    rows = [("task", m["task"]), ("classes", ", ".join(m["classes"])),
            ("positive class", str(m.get("positive_class_name"))),
            ("decision", f"{thr.get('applies_to')} >= {thr['value']:.4f} ({thr.get('how_chosen')})"
             if thr.get("value") is not None else str(thr.get("applies_to"))),
            ("calibration", m["calibration"]["description"]),
            ("input", f"{m['input']['modality']}, tensor {m['input']['shape']}"),
            ("preprocessing", m["preprocess"]["steps"]),
            ("runtime", f"{m['runtime']['format']} ({m['runtime']['kind']}); heatmaps "
                        f"{m['heatmap']['method']}")]
    for key, value in rows:
        facts.add_row(key, value)
    console.print(facts)
    for _, label, split in evaluated_splits(m):
        if split:
            table = Table("metric", "value", "95% CI", title=label)
            for r in metric_rows(split):
                ci = f"{r['low']:.3f} - {r['high']:.3f}" if r["low"] is not None else "-"
                table.add_row(r["metric"], f"{r['value']:.3f}", ci)
            console.print(table)
    card = m["data_card"]
    data = Table("split", "images", *m["classes"], "patients", title=f"data: {card['source']}")
    for split, counts in card["counts"].items():
        data.add_row(split, str(counts["total"]), *(str(counts.get(c, 0)) for c in m["classes"]),
                     str(card["patients"].get(split) or "-"))
    console.print(data)
    console.print(f"patient grouping: {card['patient_grouping']['statement']}")
    console.print("[bold]Limitations:[/]")
    for item in [*m["limitations"], *m.get("notes", [])]:
        console.print(f"  - {item}")
    if html is not None:
        html.write_text(b.model_card_html)
        console.print(f"model card written to {html}")
