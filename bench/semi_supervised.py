"""Does learning from unlabelled images help when labels are scarce? BreastMNIST, 10 % / 25 % labels.

For each seed, a stratified, seeded subsample of BreastMNIST's official train split keeps its
labels (10 % or 25 %); the rest of the train split becomes unlabelled (labels hidden). On the
SAME labelled subset we train:

- ``supervised``: the labelled images only;
- ``pseudo_label``: one round of self-training (confident pseudo-labels, retrained from scratch);
- ``fixmatch``: supervised loss + FixMatch consistency on the unlabelled images;

and, for reference, ``supervised`` on 100 % of the training labels. Every run selects its best
epoch by AUC on the full official validation split (78 images) and picks the binary decision
threshold there (Youden); test AUC and ACC are reported as mean ± sd over seeds, plus the paired
difference to supervised-only on the same subset.

The network is a small VGG-style CNN (registered here as ``bench_cnn16``, ~72 k parameters):
the benchmark runs on a shared 2-core CPU with one thread, where ResNet-18 would take hours.

    .venv/bin/python bench/semi_supervised.py --run    # train -> bench/results/semi_supervised.json
    .venv/bin/python bench/semi_supervised.py --write  # JSON -> "## Semi-supervised", BENCHMARKS.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import train_test_split
from torch import nn

from medsight.data.dataset import Dataset, Record
from medsight.data.sources.medmnist import from_medmnist
from medsight.errors import InvalidConfig
from medsight.evaluate.schemes import evaluate_split
from medsight.models.networks import Network, network_info, register_network
from medsight.models.torch_classifier import TorchClassifier

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "medmnist" / "breastmnist.npz"
RESULTS = ROOT / "bench" / "results" / "semi_supervised.json"
BENCHMARKS = ROOT / "BENCHMARKS.md"
SECTION = "## Semi-supervised"

SEEDS = (0, 1, 2, 3, 4)
FRACTIONS = (0.10, 0.25)
NETWORK = "bench_cnn16"
COMMON: dict[str, Any] = {
    "network": NETWORK,
    "epochs": 50,
    "batch_size": 32,
    "optimizer": "adam",
    "lr": 1e-3,
    "schedule": "step",  # lr x0.1 at 50 % and 75 % of the epochs
    "augment": "ultrasound",
    "monitor": "auc",
    "threshold_method": "youden",
    "threads": 1,
    "device": "cpu",
    "load_workers": 1,
}
METHODS: dict[str, dict[str, Any] | None] = {
    "supervised": None,
    "pseudo_label": {"method": "pseudo_label", "threshold": 0.95, "rounds": 1, "reinit": True},
    "fixmatch": {"method": "fixmatch", "threshold": 0.95, "lambda_u": 1.0, "ratio": 2},
}


# -- the network ---------------------------------------------------------------------------------
class SmallCNN(Network):
    """Three stages of two 3x3 conv-BN-ReLU (width w, 2w, 4w), max pools between, global pool."""

    def __init__(self, in_channels: int, num_classes: int, width: int = 16,
                 dropout: float = 0.2) -> None:
        super().__init__(in_channels, num_classes)
        layers: list[nn.Module] = []
        c = in_channels
        for stage, w in enumerate((width, 2 * width, 4 * width)):
            if stage:
                layers.append(nn.MaxPool2d(2))
            for _ in range(2):
                layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w),
                           nn.ReLU(inplace=True)]
                c = w
        self.features = nn.Sequential(*layers)
        self.num_features = c
        self.classifier = nn.Sequential(nn.Dropout(dropout), nn.Linear(c, num_classes))

    def extract_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def register_bench_network() -> None:
    """Register ``bench_cnn16`` once per process."""
    try:
        network_info(NETWORK)
    except InvalidConfig:
        @register_network(NETWORK, dims=2, default_size=28, min_size=4,
                          description="benchmark-only small VGG-style CNN (16-32-64)")
        def bench_cnn16(in_channels: int = 1, num_classes: int = 2, width: int = 16,
                        dropout: float = 0.2) -> Network:
            return SmallCNN(in_channels, num_classes, width, dropout)


# -- data ----------------------------------------------------------------------------------------
def split_labels(train: Dataset, fraction: float, seed: int) -> tuple[Dataset, Dataset]:
    """(labelled, unlabelled): a stratified seeded `fraction` of `train`; the rest without labels."""
    idx = np.arange(len(train))
    if fraction >= 1.0:
        return train, train.subset([])
    keep, rest = train_test_split(idx, train_size=fraction, stratify=train.labels,
                                  random_state=seed)
    labelled = train.subset(sorted(keep.tolist()), f"{train.name}:labelled")
    hidden = [Record(r.ref, None, r.patient_id, r.study_id, r.split, r.meta)
              for r in (train.records[i] for i in sorted(rest.tolist()))]
    unlabelled = Dataset(hidden, train.task, train.classes, f"{train.name}:unlabelled",
                         train.positive_class)
    return labelled, unlabelled


# -- one run -------------------------------------------------------------------------------------
def run_one(ds: Dataset, fraction: float, method: str, seed: int) -> dict[str, Any]:
    """Train one configuration; its test/val metrics, selection details and wall time."""
    labelled, unlabelled = split_labels(ds.split("train"), fraction, seed)
    semi = METHODS[method]
    clf = TorchClassifier(**COMMON, semi_supervised=semi, seed=seed)
    t0 = time.perf_counter()
    clf.fit(labelled, ds.split("val"), unlabeled=unlabelled if semi else None)
    fit_s = time.perf_counter() - t0
    test = evaluate_split(clf, ds.split("test"), "test", ci=False)
    val = evaluate_split(clf, ds.split("val"), "val", ci=False)
    last = clf.history_[-1]
    row = {
        "fraction": fraction,
        "method": method,
        "seed": seed,
        "n_labelled": len(labelled),
        "n_labelled_malignant": int((labelled.labels == 0).sum()),
        "n_unlabelled": len(unlabelled) if semi else 0,
        "test_auc": float(test.metrics["auc"]),
        "test_acc": float(test.metrics["acc"]),
        "val_auc": float(val.metrics["auc"]),
        "best_epoch": int(clf.best_epoch_),
        "best_round": int(clf.history_[_best_row(clf.history_)].get("round", 0)),
        "threshold": float(clf.threshold_),
        "fit_s": round(fit_s, 1),
    }
    if method == "pseudo_label":
        row["pseudo_labelled"] = int(last.get("pseudo_labelled", 0))
    if method == "fixmatch":
        seen = sum(h.get("unlabeled_seen", 0) for h in clf.history_)
        used = sum(h.get("unlabeled_used", 0) for h in clf.history_)
        row["fixmatch_mask_rate"] = round(used / seen, 3) if seen else None
    return row


def _best_row(history: list[dict[str, Any]]) -> int:
    """Index of the history row marked best last (the selected epoch of the final round)."""
    marked = [i for i, h in enumerate(history) if h.get("best")]
    return marked[-1] if marked else len(history) - 1


# -- summary -------------------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean ± sd per (fraction, method) and the paired difference to supervised-only."""
    out = []
    keys = sorted({(r["fraction"], r["method"]) for r in runs},
                  key=lambda k: (k[0], list(METHODS).index(k[1])))
    for fraction, method in keys:
        rows = [r for r in runs if r["fraction"] == fraction and r["method"] == method]
        sup = {r["seed"]: r for r in runs if r["fraction"] == fraction
               and r["method"] == "supervised"}
        entry: dict[str, Any] = {"fraction": fraction, "method": method, "n_seeds": len(rows),
                                 "n_labelled": rows[0]["n_labelled"]}
        for metric in ("test_auc", "test_acc", "val_auc", "fit_s"):
            v = np.array([r[metric] for r in rows], dtype=float)
            entry[f"{metric}_mean"] = float(v.mean())
            entry[f"{metric}_sd"] = float(v.std(ddof=1)) if len(v) > 1 else 0.0
        if method != "supervised" and sup:
            paired = [(r["test_auc"] - sup[r["seed"]]["test_auc"],
                       r["test_acc"] - sup[r["seed"]]["test_acc"])
                      for r in rows if r["seed"] in sup]
            d = np.array(paired, dtype=float)
            entry["delta_auc_mean"] = float(d[:, 0].mean())
            entry["delta_auc_sd"] = float(d[:, 0].std(ddof=1)) if len(d) > 1 else 0.0
            entry["delta_acc_mean"] = float(d[:, 1].mean())
            entry["delta_acc_sd"] = float(d[:, 1].std(ddof=1)) if len(d) > 1 else 0.0
            entry["seeds_better_auc"] = int((d[:, 0] > 0).sum())
        out.append(entry)
    return out


def _plan(seeds: tuple[int, ...]) -> list[tuple[float, str, int]]:
    plan = [(f, m, s) for s in seeds for f in FRACTIONS for m in METHODS]
    plan += [(1.0, "supervised", s) for s in seeds]
    return plan


def run(seeds: tuple[int, ...], out: Path, resume: bool = False) -> dict[str, Any]:
    """Every configuration, one process, one thread; the JSON is rewritten after each run.

    ``resume`` keeps the runs already in `out` when it was written with the same protocol
    (seeds aside), so an interrupted benchmark continues where it stopped.
    """
    register_bench_network()
    torch.set_num_threads(1)
    ds = from_medmnist(DATA)
    started = time.perf_counter()
    result: dict[str, Any] = {
        "benchmark": "semi_supervised",
        "dataset": "BreastMNIST 28 px, official splits (train 546 / val 78 / test 156); "
                   "malignant (class 0) is the positive class",
        "protocol": {
            "labelled": "stratified seeded subsample of the official train split "
                        "(sklearn train_test_split, random_state=seed); the rest of train is "
                        "the unlabelled pool (labels hidden)",
            "selection": "best epoch by AUC on the full official val split (78 images); "
                         "decision threshold by Youden's J on val",
            "test": "official test split (156 images)",
            "seeds": list(seeds),
            "fractions": list(FRACTIONS),
            "methods": {k: v for k, v in METHODS.items()},
            "classifier": {**COMMON, "network_params": None},
            "network": "bench_cnn16: 3 stages x 2 conv3x3-BN-ReLU (16, 32, 64 channels), max pool "
                       "between stages, global average pool, dropout 0.2, linear; 72k parameters",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "torch_threads": 1,
            "platform": platform.platform(),
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "note": "2-core machine shared with two other benchmarks running at the same time; "
                    "wall times are indicative only",
        },
        "runs": [],
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    earlier = 0.0
    if resume and out.is_file():
        old = json.loads(out.read_text())
        same = {k: v for k, v in old.get("protocol", {}).items() if k != "seeds"} == {
            k: v for k, v in json.loads(json.dumps(result["protocol"])).items() if k != "seeds"}
        if same:
            result["runs"] = [r for r in old["runs"] if r["seed"] in seeds]
            earlier = float(old.get("total_wall_s", 0.0))
        else:
            print(f"{out} was written with another protocol: starting afresh", flush=True)
    done = {(r["fraction"], r["method"], r["seed"]) for r in result["runs"]}
    plan = _plan(seeds)
    for i, (fraction, method, seed) in enumerate(plan, 1):
        if (fraction, method, seed) in done:
            continue
        row = run_one(ds, fraction, method, seed)
        result["runs"].append(row)
        result["summary"] = summarise(result["runs"])
        result["total_wall_s"] = round(earlier + time.perf_counter() - started, 1)
        out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"[{i}/{len(plan)}] {fraction:.0%} {method:13s} seed {seed}: "
              f"test AUC {row['test_auc']:.3f} ACC {row['test_acc']:.3f} "
              f"({row['fit_s']:.0f} s)", flush=True)
    return result


# -- BENCHMARKS.md -------------------------------------------------------------------------------
def render(result: dict[str, Any]) -> str:
    """The "## Semi-supervised" section of BENCHMARKS.md."""
    p = result["protocol"]
    c = p["classifier"]
    lines = [
        SECTION,
        "",
        "Does training on unlabelled images help when labels are scarce? BreastMNIST (28 px, "
        "breast ultrasound, malignant = positive), a stratified seeded 10 % or 25 % of the official "
        "train split keeps its labels and the rest of train is the unlabelled pool. Every method "
        "is trained on the same labelled subset per seed; the best epoch is chosen by AUC on the "
        "full official validation split (78 images) and the decision threshold there (Youden); "
        "numbers are on the official test split (156 images), mean ± sd over seeds "
        f"{', '.join(map(str, p['seeds']))}. Δ is the paired difference to supervised-only on the "
        "same subset and seed. ACC uses the threshold picked on the 78 validation images, so it "
        "is noisier than AUC.",
        "",
        f"Network `{c['network']}` (small VGG-style CNN, 72 k parameters, defined in the benchmark "
        f"script), {c['optimizer']} lr {c['lr']}, batch {c['batch_size']}, {c['epochs']} epochs "
        f"(an epoch is one pass over the labelled images), lr x0.1 at 50 % and 75 %, augmentation "
        f"preset `{c['augment']}`, 1 CPU thread. Pseudo-labelling: one round, threshold "
        f"{p['methods']['pseudo_label']['threshold']}, retrained from scratch. FixMatch: threshold "
        f"{p['methods']['fixmatch']['threshold']}, λu {p['methods']['fixmatch']['lambda_u']}, "
        f"{p['methods']['fixmatch']['ratio']} unlabelled images per labelled one; strong view = "
        "the preset's `strong()` variant (larger affine, intensity, noise, cutout).",
        "",
        "| labels | method | n labelled | test AUC | test ACC | Δ AUC | Δ ACC | seeds AUC up | fit s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in result["summary"]:
        delta_auc = delta_acc = better = "—"
        if "delta_auc_mean" in e:
            delta_auc = f"{e['delta_auc_mean']:+.3f} ± {e['delta_auc_sd']:.3f}"
            delta_acc = f"{e['delta_acc_mean']:+.3f} ± {e['delta_acc_sd']:.3f}"
            better = f"{e['seeds_better_auc']}/{e['n_seeds']}"
        lines.append(
            f"| {e['fraction']:.0%} | {e['method']} | {e['n_labelled']} | "
            f"{e['test_auc_mean']:.3f} ± {e['test_auc_sd']:.3f} | "
            f"{e['test_acc_mean']:.3f} ± {e['test_acc_sd']:.3f} | {delta_auc} | {delta_acc} | "
            f"{better} | {e['fit_s_mean']:.0f} |"
        )
    notes = []
    for frac in p["fractions"]:
        pl = [r for r in result["runs"] if r["method"] == "pseudo_label" and r["fraction"] == frac]
        fm = [r["fixmatch_mask_rate"] for r in result["runs"]
              if r["method"] == "fixmatch" and r["fraction"] == frac
              and r.get("fixmatch_mask_rate") is not None]
        said = []
        if pl:
            kept = [r["pseudo_labelled"] for r in pl]
            said.append(f"pseudo-labelling kept {min(kept)}–{max(kept)} of the "
                        f"{pl[0]['n_unlabelled']} unlabelled images")
        if fm:
            said.append(f"FixMatch's confidence mask passed {np.mean(fm):.0%} of the unlabelled "
                        "draws (mean over epochs and seeds)")
        if said:
            notes.append(f"- {frac:.0%} labels: " + "; ".join(said) + ".")
    lines += ["", *notes]
    lines += ["", verdict(result["summary"]), "",
              f"Total wall time {result['total_wall_s'] / 60:.0f} min on a shared 2-core CPU "
              "(two other benchmarks ran at the same time; times are indicative). Raw runs: "
              "`bench/results/semi_supervised.json`. Rerun: `make bench-semi-supervised RUN=1` "
              "(`.venv/bin/python bench/semi_supervised.py --run --write`).", ""]
    return "\n".join(lines)


def verdict(summary: list[dict[str, Any]]) -> str:
    """One honest sentence per semi-supervised method: did it beat supervised-only?"""
    parts = []
    for e in summary:
        if "delta_auc_mean" not in e:
            continue
        d, sd, n = e["delta_auc_mean"], e["delta_auc_sd"], e["n_seeds"]
        if abs(d) <= sd or e["seeds_better_auc"] not in (0, n):
            word = "no consistent effect"
        elif d > 0:
            word = "helps"
        else:
            word = "hurts"
        parts.append(f"{e['method']} at {e['fraction']:.0%} labels: {word} "
                     f"(Δ AUC {d:+.3f} ± {sd:.3f}, better on {e['seeds_better_auc']}/{n} seeds)")
    return ("**Verdict** (paired over seeds; \"helps\"/\"hurts\" only when every seed agrees and "
            "the mean difference exceeds its sd, not a significance test): "
            + "; ".join(parts) + ".")


def write_section(result: dict[str, Any], path: Path = BENCHMARKS) -> None:
    """Replace (or add) only this benchmark's section; other sections are kept as they are."""
    section = render(result)
    text = path.read_text() if path.is_file() else "# Benchmarks\n\n"  # re-read right before write
    pattern = re.compile(rf"^{re.escape(SECTION)}\s*$.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(text):
        text = pattern.sub(lambda _: section + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="store_true", help="train and write the results JSON")
    parser.add_argument("--write", action="store_true", help="render the JSON into BENCHMARKS.md")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--resume", action="store_true",
                        help="keep the runs already in --out (same protocol) and do the rest")
    args = parser.parse_args(argv)
    if not (args.run or args.write):
        parser.error("give --run and/or --write")
    if args.run:
        if not DATA.is_file():
            parser.error(f"BreastMNIST not found at {DATA}")
        run(tuple(args.seeds), args.out, args.resume)
    if args.write:
        write_section(json.loads(args.out.read_text()))
        print(f"wrote {SECTION!r} in {BENCHMARKS}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
