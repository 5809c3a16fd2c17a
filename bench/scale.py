"""Scale: a folder of 100k phantom PNGs through `data check`, one training epoch on the disk
image cache, and `medsight predict` (local and Ray), each with its wall time and peak memory.

1. Data: N procedural chest phantoms (`medsight.data.sources.phantom`, 64x64, about half with
   lesions) written as 8-bit PNG class folders (``normal/``, ``lesion/``, 1000 per subfolder)
   under ``--root`` (default /tmp/medsight_scale, outside the repository); reused when a folder
   of the same N, size and seed is already there.
2. ``medsight data check ROOT/images``.
3. ``medsight train`` on it: holdout split 80/10/10, no preprocessing (uint8 cache), 1 epoch of a
   small CNN (``scale_cnn``, two 3x3 conv layers of 8 and 16 channels; registered by this script
   in the training process, since the registered networks take minutes per 10k images on two
   cores), ``model.params.cache: disk`` with the cache under ROOT/cache (emptied first, so the
   cache is built in the measured run). The run is bundled (`medsight bundle create`, untimed).
4. ``medsight predict --bundle B ROOT/images --out r.parquet`` with the local engine (one decode
   worker) and with ``--engine ray`` (a local Ray cluster, one actor per core); the rows written
   are counted.

Peak memory is the largest resident set summed over the process and all its descendants (decode
workers, Ray's processes), polled from /proc every 0.2 s, and the anonymous part of it (what the
kernel cannot drop: resident also counts mapped files, shared libraries and the memory-mapped
cache, whose clean pages it may drop and re-read); the target is < 2 GB for each step, 2 cores.

    .venv/bin/python bench/scale.py --write              # measure (N=100000), save, write section
    .venv/bin/python bench/scale.py --n 2000             # a quick try, printed only
    .venv/bin/python bench/scale.py --write --no-run     # re-render from bench/results/scale.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from multiprocessing import Pool
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, cpu_model, load_average, replace_section, write_json  # noqa: E402

RESULT = ROOT / "bench" / "results" / "scale.json"
MARKDOWN = ROOT / "BENCHMARKS.md"
HEADING = "## Scale (100k images)"
TARGET_MB = 2000
SIZE = 64
SEED = 0
BIN = Path(sys.executable).parent


# -- 1. data ------------------------------------------------------------------------------------
def _write_block(args: tuple[str, int, int]) -> None:
    """Phantoms start..start+1000 as PNGs under their class folder (one pool task)."""
    from PIL import Image as PILImage

    from medsight.data.sources.phantom import CLASSES, phantom_image

    images, start, stop = args
    for i in range(start, stop):
        image, label, _ = phantom_image(SEED, i, SIZE)
        folder = Path(images) / CLASSES[label] / f"{i // 1000:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        pixels = np.clip(np.rint(image.pixels[0]), 0, 255).astype(np.uint8)
        PILImage.fromarray(pixels).save(folder / f"{i:06d}.png")


def generate(root: Path, n: int) -> tuple[Path, float | None]:
    """ROOT/images with `n` phantom PNGs (reused when already complete); seconds spent writing."""
    images, marker = root / "images", root / "images.json"
    want = {"n": n, "size": SIZE, "seed": SEED}
    if marker.is_file() and json.loads(marker.read_text()) == want:
        return images, None
    shutil.rmtree(images, ignore_errors=True)
    images.mkdir(parents=True)
    t0 = time.perf_counter()
    blocks = [(str(images), s, min(s + 1000, n)) for s in range(0, n, 1000)]
    with Pool(min(2, os.cpu_count() or 1)) as pool:
        for done, _ in enumerate(pool.imap_unordered(_write_block, blocks), 1):
            if done % 10 == 0:
                print(f"  wrote {min(done * 1000, n)} of {n} PNGs", flush=True)
    marker.write_text(json.dumps(want))
    return images, time.perf_counter() - t0


# -- measuring ----------------------------------------------------------------------------------
def tree_memory_mb(pid: int) -> dict[str, tuple[float, float, float]]:
    """(resident, anonymous, proportional) memory in MB of `pid` and each descendant, by
    "pid name", from /proc. Resident includes mapped files (shared libraries, a memory-mapped
    cache: pages the kernel may drop and re-read); anonymous is the part it cannot; proportional
    (PSS) shares each page among the processes mapping it, so a tree's sum counts a shared
    library or a forked parent's pages once, where the sum of resident sets counts them in every
    process."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as fh:
                    parent = int(fh.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(parent, []).append(int(entry))
    out: dict[str, tuple[float, float, float]] = {}
    todo = [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/status") as fh:
                fields = dict(line.split(":", 1) for line in fh if ":" in line)
        except OSError:
            continue
        kb = [int(fields.get(k, "0 kB").split()[0]) for k in ("VmRSS", "RssAnon")]
        out[f"{p} {fields.get('Name', '?').strip()}"] = (kb[0] / 1024, kb[1] / 1024,
                                                         _pss_kb(p) / 1024)
    return out


def _pss_kb(pid: int) -> int:
    """The proportional set size of `pid` in kB (0 when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            return next((int(line.split()[1]) for line in fh if line.startswith("Pss:")), 0)
    except (OSError, ValueError):
        return 0


def measure(cmd: list[str], log: Path) -> dict[str, Any]:
    """Run `cmd`, polling the memory of its process tree every 0.2 s: wall time, the peaks (MB)
    and the processes at the resident peak."""
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        peak = peak_anon = peak_pss = 0.0
        at_peak: dict[str, tuple[float, float, float]] = {}
        t0 = time.perf_counter()
        while proc.poll() is None:
            tree = tree_memory_mb(proc.pid)
            rss, anon, pss = (sum(v[i] for v in tree.values()) for i in (0, 1, 2))
            if rss > peak:
                peak, at_peak = rss, tree
            peak_anon = max(peak_anon, anon)
            peak_pss = max(peak_pss, pss)
            time.sleep(0.2)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"{' '.join(cmd[:4])} ... exited {proc.returncode}:\n{tail}")
    processes = sorted(((name.split(" ", 1)[1], round(r), round(a)) for name, (r, a, _)
                        in at_peak.items()), key=lambda t: -t[1])
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak),
            "peak_anon_mb": round(peak_anon), "peak_pss_mb": round(peak_pss),
            "processes_at_peak": processes,
            "command": _shown(cmd)}


def _shown(cmd: list[str]) -> str:
    """The command as a user would type it from the repository root (the venv's `medsight` and
    `python`, repository files relative to it), so no path of the measuring machine is recorded."""
    named = {str(BIN / "medsight"): "medsight", sys.executable: ".venv/bin/python"}
    words = [named.get(w) or (os.path.relpath(w, ROOT) if w.startswith(f"{ROOT}{os.sep}") else w)
             for w in cmd]
    return " ".join(words)


# -- 3. training ---------------------------------------------------------------------------------
def register_scale_cnn() -> None:
    """``scale_cnn``: conv(8)-BN-ReLU-pool, conv(16)-BN-ReLU, global pool, linear."""
    from torch import nn

    from medsight.models.networks import Network, register_network

    class ScaleCNN(Network):
        def __init__(self, in_channels: int, num_classes: int):
            super().__init__(in_channels, num_classes)
            self.features = nn.Sequential(
                nn.Conv2d(in_channels, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                nn.MaxPool2d(2), nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU())
            self.num_features = 16
            self.classifier = nn.Linear(16, num_classes)

        def extract_features(self, x: Any) -> Any:
            return self.features(x)

    @register_network("scale_cnn", dims=2, default_size=64, min_size=4,
                      description="bench/scale.py's small CNN (two conv layers)")
    def scale_cnn(in_channels: int = 1, num_classes: int = 2) -> Network:
        return ScaleCNN(in_channels, num_classes)


def in_process_cli(args: list[str]) -> None:
    """``medsight ARGS`` in this process with ``scale_cnn`` registered (training, bundling)."""
    register_scale_cnn()
    from medsight.cli import app

    try:
        app(args)
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


def train_config(root: Path, images: Path) -> Path:
    import yaml

    config = {
        "name": "scale", "output": str(root / "run"),
        "data": {"source": str(images), "split": {"method": "holdout", "ratios": [0.8, 0.1, 0.1]}},
        "model": {"kind": "torch", "params": {
            "network": "scale_cnn", "epochs": 1, "batch_size": 128, "seed": 0, "threads": 2,
            "cache": "disk", "cache_dir": str(root / "cache"), "load_workers": 2}},
        "evaluation": {"n_boot": 100},
    }
    path = root / "scale.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# -- 4. prediction --------------------------------------------------------------------------------
def parquet_rows(path: Path) -> tuple[int, int]:
    """(rows, rows with an error) of a results file."""
    import pyarrow.parquet as pq

    table = pq.read_table(path)
    errors = table.column("error").to_pylist() if "error" in table.column_names else []
    return table.num_rows, sum(1 for e in errors if e)


def run(root: Path, n: int, steps: list[str],
        save: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:
    """Every step asked for; `save(result so far)` after each, so a run stopped midway keeps what
    it measured. A step that fails is recorded with its error and the next one runs."""
    if root == ROOT or ROOT in root.parents:
        raise SystemExit(f"--root {root} is inside the repository; use a folder outside it")
    root.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"images": n, "size": SIZE, "root": str(root), "cpu": cpu_model(),
                           "cores": len(os.sched_getaffinity(0)), "load_before": load_average(),
                           "target_mb": TARGET_MB}
    images, gen_s = generate(root, n)
    out["generate_s"] = None if gen_s is None else round(gen_s, 1)
    print(f"{n} PNGs under {images}" + (f" (written in {gen_s:.0f} s)" if gen_s else ""),
          flush=True)
    me = [sys.executable, str(Path(__file__).resolve())]
    medsight = str(BIN / "medsight")
    bundle = root / "scale.msb"

    def check() -> dict[str, Any]:
        m = measure([medsight, "data", "check", str(images), "--json", "-o",
                     str(root / "check.json")], root / "check.log")
        m["records"] = json.loads((root / "check.json").read_text()).get("n_records")
        return m

    def train() -> dict[str, Any]:
        shutil.rmtree(root / "cache", ignore_errors=True)
        shutil.rmtree(root / "run", ignore_errors=True)
        m = measure([*me, "--cli", "train", str(train_config(root, images))], root / "train.log")
        metrics = json.loads((root / "run" / "metrics.json").read_text())
        m["cache_mb"] = round(sum(f.stat().st_size for f in (root / "cache").rglob("*.npy")) / 2**20)
        m["test_auc"] = metrics.get("test", {}).get("auc")
        subprocess.run([*me, "--cli", "bundle", "create", str(root / "run"), "--out", str(bundle),
                        "--force"], check=True, stdout=subprocess.DEVNULL)
        return m

    def predict(engine: str) -> dict[str, Any]:
        result = root / f"predict_{engine}.parquet"
        result.unlink(missing_ok=True)
        extra = ["--engine", "ray", "--actors", str(out["cores"])] if engine == "ray" else []
        m = measure([medsight, "predict", "--bundle", str(bundle), str(images), "--out",
                     str(result), "--allow-unsigned", *extra], root / f"predict_{engine}.log")
        m["rows"], m["error_rows"] = parquet_rows(result)
        m["images_per_s"] = round(n / m["wall_s"], 1)
        return m

    todo: dict[str, tuple[str, Callable[[], dict[str, Any]]]] = {
        "check": ("data_check", check), "train": ("train", train),
        "predict_local": ("predict_local", lambda: predict("local")),
        "predict_ray": ("predict_ray", lambda: predict("ray"))}
    for step in steps:
        key, fn = todo[step]
        try:
            out[key] = fn()
        except (RuntimeError, OSError, subprocess.CalledProcessError, KeyError,
                json.JSONDecodeError) as exc:
            out[key] = {"error": f"{type(exc).__name__}: {str(exc)[-500:]}"}
        print(f"{key} {out[key]}", flush=True)
        out.update(load_after=load_average(),
                   when=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        if save is not None:
            save(out)
    return out


# -- report -----------------------------------------------------------------------------------------
STEPS = {"data_check": "`medsight data check`", "train": "`medsight train`, 1 epoch, disk cache",
         "predict_local": "`medsight predict` (local engine)",
         "predict_ray": "`medsight predict --engine ray`"}


def render(result: dict[str, Any]) -> str:
    n = result["images"]
    lines = [HEADING, "",
             f"`bench/scale.py` ({result['when']}; CPU {result['cpu']}, {result['cores']} cores; "
             f"load average before/after {result['load_before']} / {result['load_after']}). "
             f"{n:,} phantom PNGs ({result['size']}x{result['size']}, class folders, generated "
             f"under {result['root']}). Rerun: `make bench-scale RUN=1`.", "",
             "Peak RSS: the largest resident set summed over the command's process tree (decode "
             "workers, Ray's processes), polled every 0.2 s; target < "
             f"{result['target_mb']} MB for each. Anonymous: the part of it that is not mapped "
             "files (shared libraries, the memory-mapped cache), i.e. what the kernel cannot drop "
             "and re-read. Peak PSS: the proportional set size summed over the tree, which "
             "counts a page shared by several processes (shared libraries, pages a forked worker "
             "still shares with its parent) once instead of once per process: the tree's real "
             "footprint. The target is judged on both sums.", "",
             "| step | wall (s) | images/s | peak RSS (MB) | of which anonymous (MB) | peak PSS "
             "(MB) | target met | notes |",
             "|---|---|---|---|---|---|---|---|"]
    for key, label in STEPS.items():
        m = result.get(key)
        if m is None or "error" in m:
            why = "not measured" if m is None else f"failed: {m['error'].splitlines()[0]}"
            lines.append(f"| {label} | {why} | | | | | | |")
            continue
        rate = m.get("images_per_s") or round(n / m["wall_s"], 1)
        notes = []
        if key == "data_check" and m.get("records") is not None:
            notes.append(f"{m['records']} records")
        if key == "train":
            notes.append(f"uint8 disk cache {m['cache_mb']} MB, built in the run")
            if m.get("test_auc") is not None:
                notes.append(f"test AUC {m['test_auc']:.3f}")
        if "rows" in m:
            notes.append(f"{m['rows']} rows, {m['error_rows']} with an error")
        pss = m.get("peak_pss_mb")
        if m["peak_rss_mb"] < result["target_mb"]:
            met = "yes"
        elif pss is not None and pss < result["target_mb"]:
            met = "PSS yes, RSS sum **no**"
        else:
            met = "**no**"
        lines.append(f"| {label} | {m['wall_s']:.0f} | {rate:.0f} | {m['peak_rss_mb']} | "
                     f"{m['peak_anon_mb']} | {'' if pss is None else pss} | {met} | "
                     f"{'; '.join(notes)} |")
    for key, label in STEPS.items():
        procs = (result.get(key) or {}).get("processes_at_peak") or []
        if len(procs) > 1:
            top = ", ".join(f"{name} {rss}/{anon}" for name, rss, anon in procs[:8])
            lines += ["", f"{label}: {len(procs)} processes at the resident peak; the largest "
                          f"(resident/anonymous MB): {top}."]
    train = result.get("train")
    if train is not None and "error" not in train:
        lines += ["", "The training time includes building the disk cache (every image decoded "
                      "once), the epoch, validation, and scoring the val and test splits; "
                      "images/s is over all images."]
    notes = result.get("notes") or []
    if notes:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(lines) + "\n"


def write_section(result: dict[str, Any], path: Path = MARKDOWN) -> None:
    text = path.read_text() if path.exists() else "# Benchmarks\n"
    path.write_text(replace_section(text, HEADING, render(result)))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--cli"]:  # the training / bundling process (scale_cnn registered)
        in_process_cli(argv[1:])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="phantom PNGs to generate")
    ap.add_argument("--root", type=Path, default=Path("/tmp/medsight_scale"),
                    help="folder for the images, cache, run and results (outside the repository)")
    ap.add_argument("--steps", nargs="+", default=["check", "train", "predict_local", "predict_ray"])
    ap.add_argument("--no-run", action="store_true", help="only re-render the saved result")
    ap.add_argument("--write", action="store_true", help="save JSON and write BENCHMARKS.md")
    ap.add_argument("--note", action="append", default=[], help="a note line for the section")
    args = ap.parse_args(argv)
    if args.no_run:
        result = json.loads(RESULT.read_text())
    else:
        def save(partial: dict[str, Any]) -> None:
            if args.write:
                write_json(RESULT, {**partial, "notes": args.note})
                write_section({**partial, "notes": args.note})

        result = {**run(args.root.resolve(), args.n, args.steps, save), "notes": args.note}
    if args.write:
        write_section(result)
    else:
        print(render(result))


if __name__ == "__main__":
    main()
