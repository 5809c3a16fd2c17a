"""Prediction speed: the `Predictor` against bare ONNX Runtime on the same graph, cold start of
`medsight predict`, and its peak memory over a folder of many small images.

1. Throughput. Two bundles are made from tiny runs on BreastMNIST (1 epoch on 24 images, so the
   weights are as good as random, which is all a throughput figure needs): ``resnet18_28`` at
   28 px and torchvision ``resnet18`` at 224 px. For batch 1 and 32, rounds alternate between a
   bare ``onnxruntime.InferenceSession`` built from the bundle's graph bytes with the runtime's
   session options (``session.run`` on already preprocessed tensors, probabilities output
   only) and ``Predictor.predict_batch`` on the same images as read (28x28 `Image`s); the
   Predictor's figure excludes the preprocessing (resize + minmax) it also runs, which is
   reported separately per image. Median over rounds, and the median of the per-round ratio
   (robust on a busy machine). A session with ORT's default options is timed afterwards, on
   its own (its spinning threads would slow whatever ran next).
2. Cold start: ``medsight predict --bundle resnet18_28.msb one.png --out r.json`` in a new
   process, wall time, in alternating runs (median of 7 each) of (A) the unsigned bundle with
   ``--allow-unsigned`` and (B) a signed copy (a throwaway service key) with a valid licence
   for this machine in a config folder of its own (``MEDSIGHT_CONFIG_DIR``), so the signature
   and licence checks are included; every run must exit 0 with (A)'s probabilities. Also:
   whether (B) imports torch (it must not), and the checks alone (``entitle`` on the signed
   bundle, its first call in a fresh process, median of 5).
3. Peak memory: ``medsight predict`` over a folder of N tiny PNGs (generated under /tmp, default
   20,000), the largest resident set summed over the CLI process and its decode workers, polled
   from /proc, for N/10 and N images (bounded memory: the two should be close).

    .venv/bin/python bench/predict.py --write             # measure, save JSON, write the section
    .venv/bin/python bench/predict.py --write --no-run    # re-render from bench/results/
    .venv/bin/python bench/predict.py --write --cold-start-only   # rerun part 2, keep the rest
    .venv/bin/python bench/predict.py --write --throughput-only   # rerun part 1, keep the rest
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_model, load_average, replace_section, write_json  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"
RESULT = ROOT / "bench" / "results" / "predict.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
HEADING = "## Prediction speed"
MODELS = {"resnet18_28": 28, "resnet18": 224}
MEDSIGHT = [sys.executable, "-m", "medsight.cli"]


# -- bundles ----------------------------------------------------------------------------------
def make_bundle(network: str, size: int, root: Path) -> Path:
    """A bundle of `network` trained for one epoch on 24 BreastMNIST images at `size` px."""
    from medsight.config import parse_config
    from medsight.deploy import create_bundle
    from medsight.experiment import run_experiment

    out = root / f"run_{network}"
    cfg = parse_config({
        "name": f"bench {network}", "output": str(out),
        "data": {"source": str(DATA), "limit": 24},
        "preprocess": [{"resize": {"size": [size, size]}}, {"minmax": {}}],
        "model": {"kind": "torch", "params": {"network": network, "epochs": 1, "batch_size": 8,
                                              "seed": 0, "threads": 1}},
        "evaluation": {"n_boot": 100},
    })
    run_experiment(cfg)
    return create_bundle(out, root / f"{network}.msb", overwrite=True)


def test_images(n: int) -> list[Any]:
    from medsight.data.open import open_source

    data = open_source(str(DATA)).split("test")
    return [data.image(i) for i in range(n)]


# -- 1. throughput ------------------------------------------------------------------------------
def throughput(bundle_path: Path, batch: int, rounds: int, n_images: int) -> dict[str, Any]:
    """Bare ORT vs Predictor (inference part and end to end) in alternating rounds."""
    import onnxruntime as ort

    from medsight.deploy.bundle_archive import read_bundle
    from medsight.deploy.predictor import Predictor
    from medsight.deploy.runtime import session_options

    predictor = Predictor(bundle_path, batch_size=batch)
    spec = predictor.bundle.manifest["runtime"]
    graph = read_bundle(bundle_path)[spec["graph"]]
    session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    default = ort.InferenceSession(graph, providers=["CPUExecutionProvider"])
    images = test_images(n_images)
    x = np.stack([predictor.bundle.preprocess(im).pixels for im in images]).astype(np.float32)

    def run_bare(sess: Any) -> float:
        t0 = time.perf_counter()
        for s in range(0, len(x), batch):
            sess.run([spec["probabilities_output"]], {spec["input_name"]: x[s:s + batch]})
        return time.perf_counter() - t0

    def bare() -> float:
        return run_bare(session)

    def bare_default() -> float:
        return run_bare(default)

    def ours() -> tuple[float, float]:
        t0 = time.perf_counter()
        preds = predictor.predict_batch(images)
        wall = time.perf_counter() - t0
        pre = sum(p.timings_ms["preprocess"] for p in preds) / 1e3
        return wall - pre, pre

    bare(), ours()  # warm up: first-call allocations of each
    rows = []
    for r in range(rounds):
        order = [bare, ours] if r % 2 == 0 else [ours, bare]
        got = {f.__name__: f() for f in order}
        b, (o, pre) = got["bare"], got["ours"]
        rows.append({"bare_s": b, "predictor_s": o, "preprocess_s": pre, "ratio": b / o})
    # ORT's default session keeps spare threads spinning after each run, which would slow
    # whatever runs next: it is timed on its own, after the side-by-side rounds
    bare_default()
    for row in rows:
        row["bare_default_s"] = bare_default()
    n = len(x)
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    return {"batch": batch, "images": n, "rounds": rounds,
            "bare_images_per_s": n / med["bare_s"], "predictor_images_per_s": n / med["predictor_s"],
            "bare_default_images_per_s": n / med["bare_default_s"],
            "predictor_end_to_end_images_per_s": n / (med["predictor_s"] + med["preprocess_s"]),
            "ratio": med["ratio"], "preprocess_ms_per_image": 1e3 * med["preprocess_s"] / n}


# -- 2. cold start --------------------------------------------------------------------------------
def sign_and_license(bundle_path: Path, tmp: Path) -> tuple[Path, Path]:
    """A copy of `bundle_path` signed with a throwaway service key, and a config folder holding a
    valid licence for it on this machine (what `medsight activate` would have kept)."""
    import shutil

    from medsight.deploy.bundle import open_bundle
    from medsight.deploy.bundle_archive import read_bundle, write_bundle
    from medsight.deploy.licence import issue_licence, machine_fingerprint
    from medsight.deploy.licence_store import LicenceStore
    from medsight.deploy.signing import sign_files
    from medsight.serve.signing_keys import SigningKeys

    signed = tmp / f"{bundle_path.stem}_signed{bundle_path.suffix}"
    shutil.copyfile(bundle_path, signed)
    keys = SigningKeys(tmp / "service")
    key = keys.current()
    write_bundle(sign_files(read_bundle(signed), key), signed, overwrite=True)
    manifest = open_bundle(signed).manifest
    licence = issue_licence(key, user="bench", role="clinician", manifest=manifest,
                            machine=machine_fingerprint())
    config = tmp / "config"
    LicenceStore(config / "licences").save(str(manifest["model"]["uuid"]), "http://bench.invalid",
                                           json.loads(licence), keys.ring())
    return signed, config


def _probabilities(path: Path) -> list[Any]:
    return [row["probabilities"] for row in json.loads(path.read_text())]


def cold_start(bundle_path: Path, tmp: Path, repeats: int = 7) -> dict[str, Any]:
    """Wall time of a cold `medsight predict` on one PNG, alternating (A) the unsigned bundle with
    --allow-unsigned and (B) a signed copy with a valid licence (signature and licence checks
    included); whether (B) imports torch; and the checks alone (`entitle`, fresh processes)."""
    from PIL import Image as PILImage

    from medsight.deploy.licence_store import CONFIG_ENV

    png = tmp / "one.png"
    PILImage.fromarray(test_images(1)[0].pixels[0].astype(np.uint8)).save(png)
    signed, config = sign_and_license(bundle_path, tmp)
    cli = str(Path(sys.executable).parent / "medsight")
    env_b = {**os.environ, CONFIG_ENV: str(config)}
    cases = {
        "unsigned": (["predict", "--bundle", str(bundle_path), str(png), "--out",
                      str(tmp / "unsigned.json"), "--allow-unsigned"], None, tmp / "unsigned.json"),
        "signed": (["predict", "--bundle", str(signed), str(png), "--out",
                    str(tmp / "signed.json")], env_b, tmp / "signed.json"),
    }

    def once(name: str) -> float:
        args, env, out = cases[name]
        out.unlink(missing_ok=True)
        t0 = time.perf_counter()
        proc = subprocess.run([cli, *args], env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"{name} run exited {proc.returncode}: {proc.stdout}{proc.stderr}")
        return wall

    once("unsigned"), once("signed")  # untimed warm-up of each (page cache), and a first check
    reference = _probabilities(cases["unsigned"][2])
    walls: dict[str, list[float]] = {"unsigned": [], "signed": []}
    for r in range(repeats):
        for name in ("unsigned", "signed") if r % 2 == 0 else ("signed", "unsigned"):
            walls[name].append(once(name))
            got = _probabilities(cases[name][2])
            if got != reference:
                raise RuntimeError(f"{name} run gave probabilities {got}, not {reference}")
    args_b = cases["signed"][0]
    code = ("import sys\nfrom medsight.cli import app\n"
            f"try:\n    app({args_b!r})\nexcept SystemExit as exc:\n    print('EXIT', exc.code)\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=env_b)
    if "EXIT 0" not in out.stdout and "EXIT None" not in out.stdout:
        raise RuntimeError(f"torch check: the signed run failed: {out.stdout}{out.stderr}")
    t_import = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); "
                               "import medsight.cli, medsight.deploy.batch, onnxruntime; "
                               "print(time.perf_counter()-t)"], capture_output=True, text=True,
                              check=True)
    checks: dict[str, list[dict[str, float]]] = {"unsigned": [], "signed": []}
    for _ in range(5):  # alternating, like the CLI runs
        checks["signed"].append(json.loads(_checks_once(signed, config)))
        checks["unsigned"].append(json.loads(_checks_once(bundle_path, None)))
    a, b = statistics.median(walls["unsigned"]), statistics.median(walls["signed"])
    return {"wall_s": a, "walls_s": walls["unsigned"],  # (A), as before
            "torch_imported": "TORCH True" in out.stdout, "torch_checked": "signed",
            "import_s": float(t_import.stdout.strip()),
            "signed": {"wall_s": b, "walls_s": walls["signed"], "difference_s": b - a,
                       "same_probabilities": True,
                       "checks_s": statistics.median(c["first"] for c in checks["signed"]),
                       "checks_runs_s": [c["first"] for c in checks["signed"]],
                       "checks_again_s": statistics.median(c["again"] for c in checks["signed"]),
                       "unsigned_checks_s": statistics.median(c["first"]
                                                              for c in checks["unsigned"])}}


def _checks_once(bundle: Path, config: Path | None) -> str:
    """In a fresh process: `entitle` on `bundle` (signed, with the licence in `config`; or, with
    no `config`, unsigned with `allow_unsigned`), its first call (with the imports it makes on
    first use) and a second one, as JSON."""
    code = ("import json, sys, time\n"
            "from medsight.deploy.entitlement import entitle\n"
            "from medsight.deploy.licence_store import LicenceStore\n"
            "signed = sys.argv[2] != '-'\n"
            "store = LicenceStore(sys.argv[2]) if signed else None\n"
            "t = []\n"
            "for _ in range(2):\n"
            "    t0 = time.perf_counter()\n"
            "    got = entitle(sys.argv[1], store=store, allow_unsigned=not signed)\n"
            "    assert (got.licence is not None) == signed\n"
            "    t.append(time.perf_counter() - t0)\n"
            "print(json.dumps({'first': t[0], 'again': t[1]}))\n")
    store = str(config / "licences") if config is not None else "-"
    return subprocess.run([sys.executable, "-c", code, str(bundle), store],
                          capture_output=True, text=True, check=True).stdout.strip()


# -- 3. peak memory -----------------------------------------------------------------------------
def write_many_pngs(folder: Path, n: int) -> None:
    from PIL import Image as PILImage

    folder.mkdir(parents=True, exist_ok=True)
    base = [im.pixels[0].astype(np.uint8) for im in test_images(16)]
    for i in range(n):
        sub = folder / f"{i // 1000:03d}"
        sub.mkdir(exist_ok=True)
        PILImage.fromarray(base[i % len(base)]).save(sub / f"{i:06d}.png")


def _tree_rss_mb(pid: int) -> float:
    """Resident memory of `pid` and its descendants (MB), from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(entry))
        rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        todo += children.get(p, [])
    return total / 2**20


def peak_memory(bundle_path: Path, folder: Path, n: int) -> dict[str, Any]:
    proc = subprocess.Popen([str(Path(sys.executable).parent / "medsight"), "predict", "--bundle",
                             str(bundle_path), str(folder), "--out", str(folder.parent / f"r{n}.csv"),
                             "--allow-unsigned"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak, t0 = 0.0, time.perf_counter()
    while proc.poll() is None:
        peak = max(peak, _tree_rss_mb(proc.pid))
        time.sleep(0.2)
    wall = time.perf_counter() - t0
    with open(folder.parent / f"r{n}.csv") as fh:
        rows = sum(1 for _ in fh) - 1
    return {"images": n, "rows": rows, "exit_code": proc.returncode, "peak_rss_mb": peak,
            "wall_s": wall, "images_per_s": n / wall}


# -- report ---------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> str:
    t = result.get("throughput_rerun")
    rerun_t = (f" Throughput rerun on its own {t['when']} ({t['cores']}), load average before/after "
               f"{t['load_before']} / {t['load_after']}." if t else "")
    lines = [HEADING, "",
             f"`bench/predict.py` ({result['when']}; CPU {result['cpu']}, {result['cores']}; load "
             f"average before/after {result['load_before']} / {result['load_after']}).{rerun_t} Rerun: "
             "`make bench-predict RUN=1`.", "",
             "Throughput, images/s (median over alternating rounds; 'bare ORT' uses the runtime's "
             "session options, 'ORT defaults' ORT's own (timed after the rounds); 'Predictor' excludes the "
             "preprocessing it runs, 'end to end' includes it; ratio = bare time / Predictor "
             "time, per round, median; target >= 0.95):", "",
             "| model | input | batch | bare ORT | ORT defaults | Predictor | ratio | end to end "
             "| preprocess ms/image |",
             "|---|---|---|---|---|---|---|---|---|"]
    for name, rows in result["throughput"].items():
        for r in rows:
            lines.append(f"| {name} | {MODELS[name]} px | {r['batch']} | {r['bare_images_per_s']:.1f} | "
                         f"{r.get('bare_default_images_per_s', float('nan')):.1f} | "
                         f"{r['predictor_images_per_s']:.1f} | {r['ratio']:.3f} | "
                         f"{r['predictor_end_to_end_images_per_s']:.1f} | "
                         f"{r['preprocess_ms_per_image']:.2f} |")
    c = result["cold_start"]
    cores = f" ({c['cores']})" if "cores" in c else ""
    rerun = (f"; rerun on its own {c['when']}{cores}, load average before/after "
             f"{c['load_before']} / {c['load_after']}" if "when" in c else "")
    lines += ["", _cold_sentence(c, rerun)]
    lines += ["", "Peak memory of `medsight predict` (CLI, fork server and decode worker, resident "
                  "set polled every 0.2 s) over folders of tiny 28x28 PNGs (generated under /tmp):", "",
              "| images | peak RSS (MB) | wall (s) | images/s | rows written | exit |",
              "|---|---|---|---|---|---|"]
    for m in result["memory"]:
        lines.append(f"| {m['images']} | {m['peak_rss_mb']:.0f} | {m['wall_s']:.0f} | "
                     f"{m['images_per_s']:.0f} | {m['rows']} | {m['exit_code']} |")
    lines += ["", _verdict(result)]
    notes = result.get("notes") or []
    if notes:
        lines += ["", "Notes:", ""] + [f"- {n}" for n in notes]
    return "\n".join(lines) + "\n"


def _cold_sentence(c: dict[str, Any], rerun: str) -> str:
    """The cold-start sentence: (A) unsigned and, when measured, (B) signed and licensed."""
    s = c.get("signed")
    torch = f"torch imported: {'yes' if c['torch_imported'] else 'no'}"
    imports = (f"imports alone (medsight.cli, medsight.deploy, onnxruntime) {c['import_s']:.2f} s")
    if s is None:  # a result from before the signed run was measured
        return (f"Cold start of `medsight predict` on one PNG (resnet18_28 bundle, new process, "
                f"median of {len(c['walls_s'])}{rerun}): **{c['wall_s']:.2f} s** (target <= 1.5 s); "
                f"{imports}; {torch}.")
    return (f"Cold start of `medsight predict` on one PNG (resnet18_28 bundle, new process, "
            f"alternating runs, median of {len(c['walls_s'])} each{rerun}): signed bundle with a "
            f"valid licence, signature and licence checks included, **{s['wall_s']:.2f} s**; the "
            f"same bundle unsigned with `--allow-unsigned` **{c['wall_s']:.2f} s**; difference "
            f"{s['difference_s']:+.2f} s (target <= 1.5 s for each; same probabilities in every "
            f"run). The checks alone (`entitle()` on the signed bundle: opening and hashing it, "
            f"its signature, the stored licence; first call in a fresh process, median of "
            f"{len(s['checks_runs_s'])}) take {s['checks_s']:.2f} s ({s['checks_again_s']:.2f} s "
            f"when repeated in the same process)"
            + (f", against {s['unsigned_checks_s']:.2f} s for the unsigned bundle with "
               f"`allow_unsigned` (it is opened and hashed too)" if "unsigned_checks_s" in s else "")
            + f"; {imports}; {torch} (signed, licensed run).")


def _verdict(result: dict[str, Any]) -> str:
    """One line from the measured numbers: which targets were met."""
    rows = [(name, r) for name, rs in result["throughput"].items() for r in rs]
    met = [f"{name} batch {r['batch']}" for name, r in rows if r["ratio"] >= 0.95]
    missed = [f"{name} batch {r['batch']} ({r['ratio']:.2f})" for name, r in rows if r["ratio"] < 0.95]
    c = result["cold_start"]
    cold = c["signed"]["wall_s"] if "signed" in c else c["wall_s"]
    mem = result["memory"]
    parts = [f">= 95 % of bare ORT for {', '.join(met) or 'none'}"
             + (f"; below for {', '.join(missed)}" if missed else ""),
             f"cold start {cold:.2f} s{' (signed, licensed)' if 'signed' in c else ''} "
             f"{'meets' if cold <= 1.5 else 'misses'} the 1.5 s target",
             f"peak memory {mem[0]['peak_rss_mb']:.0f} MB at {mem[0]['images']} images vs "
             f"{mem[-1]['peak_rss_mb']:.0f} MB at {mem[-1]['images']}"]
    return "**Verdict:** " + "; ".join(parts) + "."


def write_section(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, HEADING, render(result)))


def make_bundles(tmp: Path) -> dict[str, Path]:
    bundles = {}
    for name, size in MODELS.items():
        print(f"bundling {name} at {size} px", flush=True)
        bundles[name] = make_bundle(name, size, tmp)
    return bundles


def all_throughput(bundles: dict[str, Path], rounds: int, n_images: int,
                   batches: list[int]) -> dict[str, list[dict[str, Any]]]:
    """Part 1 for every bundle and batch size."""
    out: dict[str, list[dict[str, Any]]] = {}
    for name, path in bundles.items():
        out[name] = []
        for batch in batches:
            n = n_images if MODELS[name] <= 64 else max(batch, n_images // 8)
            r = throughput(path, batch, rounds, n)
            print(f"{name} batch {batch}: bare {r['bare_images_per_s']:.1f} img/s, Predictor "
                  f"{r['predictor_images_per_s']:.1f} (ratio {r['ratio']:.3f}), preprocess "
                  f"{r['preprocess_ms_per_image']:.2f} ms/image", flush=True)
            out[name].append(r)
    return out


def _cores() -> str:
    cores = len(os.sched_getaffinity(0))
    return f"{cores} core{'s' if cores > 1 else ''} available"


def run(rounds: int, n_images: int, many: int, batches: list[int]) -> dict[str, Any]:
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="medsight_bench_predict_") as tmp_name:
        tmp = Path(tmp_name)
        bundles = make_bundles(tmp)
        result: dict[str, Any] = {"throughput": all_throughput(bundles, rounds, n_images, batches)}
        result["cold_start"] = cold_start(bundles["resnet18_28"], tmp)
        print(f"cold start {result['cold_start']}", flush=True)
        result["memory"] = []
        for n in (max(1, many // 10), many):
            folder = tmp / f"many_{n}"
            write_many_pngs(folder, n)
            m = peak_memory(bundles["resnet18_28"], folder, n)
            print(f"memory {m}", flush=True)
            result["memory"].append(m)
    return {**result, "cpu": cpu_model(), "cores": _cores(),
            "load_before": load_before, "load_after": load_average(),
            "when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


def rerun_cold_start(saved: dict[str, Any]) -> dict[str, Any]:
    """`saved` with its cold start measured again (on a new resnet18_28 bundle), stamped with
    its own time and load averages; throughput and memory are kept as they were measured."""
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="medsight_bench_predict_") as tmp_name:
        tmp = Path(tmp_name)
        bundle = make_bundle("resnet18_28", MODELS["resnet18_28"], tmp)
        cold = cold_start(bundle, tmp)
    cold.update(when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), cores=_cores(),
                load_before=load_before, load_after=load_average())
    print(f"cold start {cold}", flush=True)
    return {**saved, "cold_start": cold}


def rerun_throughput(saved: dict[str, Any], rounds: int, n_images: int,
                     batches: list[int]) -> dict[str, Any]:
    """`saved` with its throughput measured again (on new bundles), stamped with its own time,
    cores and load averages; cold start and memory are kept as they were measured."""
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="medsight_bench_predict_") as tmp_name:
        throughput_rows = all_throughput(make_bundles(Path(tmp_name)), rounds, n_images, batches)
    stamp = {"when": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cores": _cores(),
             "load_before": load_before, "load_after": load_average()}
    return {**saved, "throughput": throughput_rows, "throughput_rerun": stamp}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=128, help="test images per throughput round")
    ap.add_argument("--many", type=int, default=20000, help="PNGs in the peak-memory folder")
    ap.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--no-run", action="store_true", help="only re-render the saved result")
    ap.add_argument("--cold-start-only", action="store_true",
                    help="measure only the cold start; the rest comes from the saved result")
    ap.add_argument("--throughput-only", action="store_true",
                    help="measure only the throughput; the rest comes from the saved result")
    ap.add_argument("--write", action="store_true", help="save JSON and write BENCHMARKS.md")
    ap.add_argument("--note", action="append", default=[],
                    help="a note line for the section (added to the saved notes by a "
                         "--cold-start-only or --throughput-only rerun)")
    args = ap.parse_args(argv)
    if args.no_run:
        result = json.loads(RESULT.read_text())
    elif args.cold_start_only or args.throughput_only:
        saved = json.loads(RESULT.read_text())
        result = rerun_cold_start(saved) if args.cold_start_only else \
            rerun_throughput(saved, args.rounds, args.images, args.batches)
        result["notes"] = saved.get("notes", []) + args.note  # a partial rerun keeps the notes
        if args.write:
            write_json(RESULT, result)
    else:
        result = run(args.rounds, args.images, args.many, args.batches)
        result["notes"] = args.note
        if args.write:
            write_json(RESULT, result)
    if args.write:
        write_section(result)
    else:
        print(render(result))


if __name__ == "__main__":
    main()
