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
   process, wall time (median of 3), and whether torch got imported (it must not).
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
def cold_start(bundle_path: Path, tmp: Path, repeats: int = 3) -> dict[str, Any]:
    from PIL import Image as PILImage

    png = tmp / "one.png"
    PILImage.fromarray(test_images(1)[0].pixels[0].astype(np.uint8)).save(png)
    args = ["predict", "--bundle", str(bundle_path), str(png), "--out", str(tmp / "one.json"),
            "--allow-unsigned"]
    walls = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([str(Path(sys.executable).parent / "medsight"), *args], check=True,
                       capture_output=True)
        walls.append(time.perf_counter() - t0)
    code = ("import sys\nfrom medsight.cli import app\n"
            f"try:\n    app({args!r})\nexcept SystemExit:\n    pass\n"
            "print('TORCH', 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    t_import = subprocess.run([sys.executable, "-c", "import time; t=time.perf_counter(); "
                               "import medsight.cli, medsight.deploy.batch, onnxruntime; "
                               "print(time.perf_counter()-t)"], capture_output=True, text=True,
                              check=True)
    return {"wall_s": statistics.median(walls), "walls_s": walls,
            "torch_imported": "TORCH True" in out.stdout,
            "import_s": float(t_import.stdout.strip())}


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
    rerun = (f"; rerun on its own {c['when']}, load average before/after {c['load_before']} / "
             f"{c['load_after']}" if "when" in c else "")
    lines += ["", f"Cold start of `medsight predict` on one PNG (resnet18_28 bundle, new process, "
                  f"median of {len(c['walls_s'])}{rerun}): **{c['wall_s']:.2f} s** (target <= 1.5 s); "
                  f"imports alone (medsight.cli, medsight.deploy, onnxruntime) {c['import_s']:.2f} s; "
                  f"torch imported: {'yes' if c['torch_imported'] else 'no'}."]
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


def _verdict(result: dict[str, Any]) -> str:
    """One line from the measured numbers: which targets were met."""
    rows = [(name, r) for name, rs in result["throughput"].items() for r in rs]
    met = [f"{name} batch {r['batch']}" for name, r in rows if r["ratio"] >= 0.95]
    missed = [f"{name} batch {r['batch']} ({r['ratio']:.2f})" for name, r in rows if r["ratio"] < 0.95]
    cold = result["cold_start"]["wall_s"]
    mem = result["memory"]
    parts = [f">= 95 % of bare ORT for {', '.join(met) or 'none'}"
             + (f"; below for {', '.join(missed)}" if missed else ""),
             f"cold start {cold:.2f} s {'meets' if cold <= 1.5 else 'misses'} the 1.5 s target",
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
    cold.update(when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_before=load_before,
                load_after=load_average())
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
    ap.add_argument("--note", action="append", default=[], help="a note line for the section")
    args = ap.parse_args(argv)
    if args.no_run:
        result = json.loads(RESULT.read_text())
    elif args.cold_start_only or args.throughput_only:
        saved = json.loads(RESULT.read_text())
        result = rerun_cold_start(saved) if args.cold_start_only else \
            rerun_throughput(saved, args.rounds, args.images, args.batches)
        result["notes"] = args.note
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
