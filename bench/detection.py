"""BCCD detection from scratch on this CPU: test mAP@0.5 / mAP@0.5:0.95, WBC exact counts, speed.

Trains `TorchDetector` with the recipe of ``examples/bccd_detection.yaml`` (its ``preprocess``
and ``model.params``) on BCCD's official train split (205 images), picks the epoch on val (87),
and scores the 72 test images with `medsight.evaluate.detection` (pycocotools; bootstrap CIs
over images). Inference time is the wall time per 640x480 JPEG of ``predict_detections``
(decode + preprocess + network + decoding + mapping back), one image at a time, after a warm-up.
BCCD's labels miss some cells: WBC counts are also scored against ``bench/bccd_wbc_review.csv``
(test images whose visible WBC has no box, found by reviewing all 72 test images by eye with
``bench/bccd_review_sheets.py``), beside the official labels, never instead of them.
Overrides (``--size``, ``--epochs``, ``--network``, ``--width``, ``--lr``, ``--batch``) make the
short tuning runs that chose the recipe; each run is appended to ``bench/results/detection.json``
with the machine, its load and the settings, and ``--write`` renders the BENCHMARKS.md section.

    .venv/bin/python bench/detection.py --write                       # the recipe, seed 0
    .venv/bin/python bench/detection.py --seeds 0 1 2 --write         # mean +- sd over seeds
    .venv/bin/python bench/detection.py --size 240 320 --epochs 10 --tag tune   # a tuning run
    .venv/bin/python bench/detection.py --no-run --write              # re-render only
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import ROOT, hardware, load_average, replace_section, write_json  # noqa: E402

from medsight.data.sources import from_voc  # noqa: E402
from medsight.evaluate.detection import evaluate_detections  # noqa: E402
from medsight.models.torch_detector import TorchDetector  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "bccd"
RECIPE = ROOT / "examples" / "bccd_detection.yaml"
RESULT = ROOT / "bench" / "results" / "detection.json"
REVIEW = ROOT / "bench" / "bccd_wbc_review.csv"
MARKDOWN = ROOT / "BENCHMARKS.md"
HEADING = "## Detection (BCCD)"
CLASSES = ["RBC", "WBC", "Platelets"]
TARGETS = {"map50": 0.85, "wbc_exact": 0.95, "seconds_per_image": 0.2, "train_minutes": 60}


def recipe(path: Path = RECIPE) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(preprocess chain, detector params) of the example experiment config."""
    cfg = yaml.safe_load(path.read_text())
    return list(cfg.get("preprocess") or []), dict(cfg["model"]["params"])


def apply_overrides(preprocess: list[dict[str, Any]], params: dict[str, Any],
                    args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The recipe with the command line's tuning overrides."""
    preprocess, params = copy.deepcopy(preprocess), copy.deepcopy(params)
    if args.size:
        resize = next((s["resize"] for s in preprocess if "resize" in s), {})
        preprocess = [s for s in preprocess if "resize" not in s]
        preprocess.insert(0, {"resize": {**resize, "size": list(args.size)}})
    threads = int(args.threads) if args.threads and args.threads.isdigit() else args.threads
    for key, value in (("epochs", args.epochs), ("network", args.network), ("lr", args.lr),
                       ("batch_size", args.batch), ("threads", threads)):
        if value is not None:
            params[key] = value
    if args.width is not None:
        params["network_params"] = {**(params.get("network_params") or {}), "width": args.width}
    return preprocess, params


def reviewed_wbc(test: Any, path: Path = REVIEW) -> np.ndarray:
    """The true WBC count of each test image after the label review (official count elsewhere)."""
    import csv

    with path.open(newline="") as f:
        review = {row["image"]: row for row in csv.DictReader(f)}
    wbc = CLASSES.index("WBC")
    counts = []
    for rec in test.records:
        official = int((np.asarray(rec.boxes.labels) == wbc).sum())
        row = review.get(Path(rec.ref).stem)
        if row is not None and int(row["official_wbc"]) != official:
            raise SystemExit(f"{path}: {row['image']} has {official} WBC boxes, not "
                             f"{row['official_wbc']}: the review is of other labels")
        counts.append(int(row["reviewed_wbc"]) if row else official)
    return np.array(counts)


def time_inference(est: TorchDetector, test: Any, n: int = 20) -> dict[str, float]:
    """Seconds per image of `predict_detections` on one image at a time (median, after 2 warm-ups)."""
    one = [test.subset([i]) for i in range(min(n, len(test)))]
    for ds in one[:2]:
        est.predict_detections(ds)
    times = []
    for ds in one:
        t0 = time.perf_counter()
        est.predict_detections(ds)
        times.append(time.perf_counter() - t0)
    return {"median_s": statistics.median(times), "p90_s": float(np.percentile(times, 90)),
            "images": len(times)}


def _print_epoch(event: Any) -> None:
    if event.stage == "epoch":
        print(f"epoch {event.epoch}/{event.epochs} loss {event.loss:.4f} val "
              f"{event.val_metric} {time.strftime('%H:%M:%S')}", flush=True)


def run_one(preprocess: list[dict[str, Any]], params: dict[str, Any], seed: int,
            tag: str) -> dict[str, Any]:
    """Train, evaluate on test and time one seed; the JSON record."""
    import torch

    data = from_voc(DATA, classes=CLASSES)
    train, val, test = data.split("train"), data.split("val"), data.split("test")
    est = TorchDetector(**{**params, "preprocess": preprocess, "seed": seed, "device": "cpu",
                           "progress": _print_epoch})
    load_before = load_average()
    t0 = time.perf_counter()
    est.fit(train, val)
    train_s = time.perf_counter() - t0
    found = est.predict_detections(test)
    ev = evaluate_detections([r.boxes for r in test.records], found, CLASSES,
                             score_threshold=est.score_threshold_, n_boot=1000, seed=seed)
    m = ev.metrics
    wbc = CLASSES.index("WBC")
    counted = [int(((d.labels == wbc) & (d.scores >= est.score_threshold_)).sum()) for d in found]
    speed = time_inference(est, test)
    return {
        "tag": tag,
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seed": seed,
        "preprocess": preprocess,
        "params": {k: v for k, v in params.items() if k != "progress"},
        "hardware": hardware(),
        "torch_threads": torch.get_num_threads(),
        "load_before": load_before,
        "load_after": load_average(),
        "train_minutes": train_s / 60,
        "epochs_run": len(est.history_),
        "best_epoch": est.best_epoch_,
        "val_map50": est.best_metric_,
        "score_threshold": est.score_threshold_,
        "history": [{k: h.get(k) for k in ("epoch", "loss", "val_map50", "val_map50_95", "time_s")}
                    for h in est.history_],
        "test": {k: m[k] for k in ("map50", "map50_95", "per_class_ap", "count_exact",
                                   "count_mae", "mean_count", "n", "n_boxes")},
        "test_ci": {"map50": m["ci"]["map50"], "map50_95": m["ci"]["map50_95"],
                    "wbc_count_exact": m["ci"]["count_exact"]["WBC"]} if "ci" in m else {},
        "test_wbc_counts": counted,
        "wbc_exact_reviewed": float(np.mean(np.array(counted) == reviewed_wbc(test))),
        "inference": speed,
    }


DESIGNS = {  # the candidates of the CPU recipe: (network, options)
    "centernet_small": ("centernet_small", {"width": 32}),
    "centernet_resnet18": ("centernet_resnet18", {}),
    "retinanet_fpn (resnet18)": ("retinanet_fpn", {"backbone": "resnet18"}),
    "faster_rcnn_fpn (resnet18)": ("faster_rcnn_fpn", {"backbone": "resnet18"}),
}


def compare_speed(size: tuple[int, int], rounds: int = 3, batch: int = 8) -> dict[str, Any]:
    """Seconds per training image (one batch step: forward, loss, backward, AdamW step) and per
    inference image (batch 1, decoding included) of each design, in ONE process, the designs
    alternating in every round so the shared machine's load hits all alike; medians."""
    import torch

    from medsight.models.detector_inference import DetectorModel
    from medsight.models.networks import create_network
    from medsight.train.detection_losses import detection_loss
    from medsight.train.device import RunSettings

    settings = RunSettings.create("cpu", "fp32", None, False, False)
    g = torch.Generator().manual_seed(0)
    x = torch.rand((batch, 3, *size), generator=g) * 255
    boxes = [torch.tensor([[20.0, 20.0, 70.0, 60.0], [100.0, 90.0, 160.0, 150.0]])] * batch
    labels = [torch.tensor([0, 1])] * batch
    models, opts = {}, {}
    for name, (net, options) in DESIGNS.items():
        torch.manual_seed(0)
        models[name] = DetectorModel(create_network(net, in_channels=3, num_classes=3, **options), 3)
        opts[name] = torch.optim.AdamW(models[name].parameters(), lr=1e-4)
    train_s: dict[str, list[float]] = {n: [] for n in DESIGNS}
    infer_s: dict[str, list[float]] = {n: [] for n in DESIGNS}
    names = list(DESIGNS)
    for r in range(rounds + 1):  # round 0 warms up
        for name in names[r % len(names):] + names[:r % len(names)]:
            m = models[name]
            m.train()
            t0 = time.perf_counter()
            detection_loss(m, x, boxes, labels, settings).backward()
            opts[name].step()
            opts[name].zero_grad()
            t1 = time.perf_counter()
            m.eval()
            with torch.no_grad():
                m.detect(x[:1], 100)
            t2 = time.perf_counter()
            if r:
                train_s[name].append((t1 - t0) / batch)
                infer_s[name].append(t2 - t1)
    return {"size": list(size), "batch": batch, "rounds": rounds, "load": load_average(),
            "designs": {n: {"train_s_per_image": statistics.median(train_s[n]),
                            "infer_s_per_image": statistics.median(infer_s[n]),
                            "parameters": sum(p.numel() for p in models[n].parameters())}
                        for n in DESIGNS}}


def load_results(path: Path = RESULT) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.is_file() else {"runs": []}


def _fmt(v: Any, digits: int = 3) -> str:
    return "n/a" if v is None else f"{v:.{digits}f}"


def _size(run: dict[str, Any]) -> str:
    for step in run["preprocess"]:
        if "resize" in step:
            h, w = step["resize"]["size"]
            return f"{w}x{h}"
    return "640x480"


def render(results: dict[str, Any]) -> str:
    """The BENCHMARKS.md section from the saved runs."""
    runs = results["runs"]
    lines = [HEADING, "",
             "Generated by `bench/detection.py` from `bench/results/detection.json`. BCCD "
             "(`../shared/data/bccd`, official split: 205 train / 87 val / 72 test), trained "
             "from scratch (no pretrained weights) on the CPU, the best epoch chosen on val "
             "mAP@0.5, test scored with pycocotools through `medsight.evaluate.detection`. "
             "Counts use the score threshold chosen on val (max mean per-class F1 at IoU 0.5). "
             "Time per image: `predict_detections` on one 640x480 JPEG (decode, preprocess, "
             "network, decoding, boxes mapped back), median of 20.", ""]
    if results.get("notes"):
        lines += [results["notes"].rstrip(), ""]
    lines += ["| run | network | input | epochs | train min | val mAP@0.5 | test mAP@0.5 [95% CI] "
              "| test mAP@0.5:0.95 | AP50 RBC / WBC / Plt | WBC count exact | WBC exact (reviewed labels) "
              "| s / image | load |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in runs:
        t = r["test"]
        ap = [t["per_class_ap"][c]["ap50"] for c in CLASSES]
        ci = r.get("test_ci", {}).get("map50") or {}
        ci_txt = f" [{_fmt(ci.get('ci_low'))}, {_fmt(ci.get('ci_high'))}]" if ci else ""
        net = r["params"].get("network", "centernet_small")
        width = (r["params"].get("network_params") or {}).get("width")
        lines.append(
            f"| {r['tag']} (seed {r['seed']}) | {net}{f' w{width}' if width else ''} | "
            f"{_size(r)} | {r['epochs_run']} (best {r['best_epoch']}) | "
            f"{r['train_minutes']:.1f} | {_fmt(r['val_map50'])} | {_fmt(t['map50'])}{ci_txt} | "
            f"{_fmt(t['map50_95'])} | {' / '.join(_fmt(a, 2) for a in ap)} | "
            f"{_fmt(t['count_exact']['WBC'], 3)} | {_fmt(r.get('wbc_exact_reviewed'), 3)} | "
            f"{r['inference']['median_s']:.3f} | "
            f"{r['load_before'][0] if r['load_before'] else 'n/a'} |")
    final = [r for r in runs if r["tag"] == results.get("chosen_tag")]
    if len(final) > 1:
        maps = [r["test"]["map50"] for r in final]
        wbc = [r["test"]["count_exact"]["WBC"] for r in final]
        reviewed = [r["wbc_exact_reviewed"] for r in final if "wbc_exact_reviewed" in r]
        lines += ["", f"Recipe `{results['chosen_tag']}` over {len(final)} seeds: test mAP@0.5 "
                  f"{statistics.mean(maps):.3f} ± {statistics.stdev(maps):.3f}, WBC count exact "
                  f"{statistics.mean(wbc):.3f} ± {statistics.stdev(wbc):.3f} against the official "
                  "labels" + (f", {statistics.mean(reviewed):.3f} ± {statistics.stdev(reviewed):.3f} "
                              "against the reviewed WBC labels" if len(reviewed) == len(final)
                              else "") + "."]
    speed = results.get("speed")
    if speed:
        base = speed["designs"]["centernet_small"]
        h, w = speed["size"]
        lines += ["", f"Candidate designs at {w}x{h} (`bench/detection.py --compare-speed`: one "
                  f"process, designs alternating, median of {speed['rounds']} rounds; load "
                  f"{speed['load'][0]}, so absolute times are those of a busy machine and the "
                  "ratios are what compares):", "",
                  "| design | parameters | train s / image (batch "
                  f"{speed['batch']}) | x centernet_small | inference s / image | ONNX bundle |",
                  "|---|---|---|---|---|---|"]
        for name, d in speed["designs"].items():
            onnx = "yes (decoding in the graph, no NMS)" if name.startswith("centernet") else (
                "no (per-image NMS with data-dependent shapes)")
            lines.append(f"| {name} | {d['parameters'] / 1e6:.1f} M | {d['train_s_per_image']:.3f} "
                         f"| {d['train_s_per_image'] / base['train_s_per_image']:.1f} | "
                         f"{d['infer_s_per_image']:.3f} | {onnx} |")
    if runs:
        hw = runs[-1]["hardware"]
        lines += ["", f"Machine: {hw['cpu']}, {hw['cores']} cores ({hw['simd']}), torch "
                  f"{hw['torch']}; 'load' is the 1-minute load average when the run started "
                  "(other jobs shared the machine)."]
    return "\n".join(lines) + "\n"


def write_section(results: dict[str, Any], path: Path = MARKDOWN) -> None:
    path.write_text(replace_section(path.read_text(), HEADING, render(results)))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--tag", default="recipe", help="label of this run in the table")
    ap.add_argument("--size", type=int, nargs=2, metavar=("H", "W"), help="resize to H x W")
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--network")
    ap.add_argument("--width", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--threads", default=None,
                    help="torch threads: a number or 'adaptive' (the cores others leave idle)")
    ap.add_argument("--recipe", type=Path, default=RECIPE)
    ap.add_argument("--compare-speed", action="store_true",
                    help="time a training step and an inference of each candidate design")
    ap.add_argument("--no-run", action="store_true", help="only re-render the saved results")
    ap.add_argument("--write", action="store_true", help="save JSON and write BENCHMARKS.md")
    args = ap.parse_args(argv)
    results = load_results()
    if args.compare_speed:
        speed = compare_speed(tuple(args.size or (240, 320)))
        print(json.dumps(speed, indent=1))
        if args.write:
            results["speed"] = speed
            write_json(RESULT, results)
    elif not args.no_run:
        preprocess, params = apply_overrides(*recipe(args.recipe), args)
        for seed in args.seeds:
            record = run_one(preprocess, params, seed, args.tag)
            print(json.dumps({k: record[k] for k in ("tag", "seed", "train_minutes", "val_map50",
                                                     "test", "inference")}, indent=1))
            if args.write:
                results = load_results()
                results["runs"].append(record)
                write_json(RESULT, results)
    if args.write:
        write_section(results)


if __name__ == "__main__":
    main()
