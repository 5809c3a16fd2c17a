"""Distributed training with torchrun on 2 gloo processes: the same run as 1 process, only rank 0
writes, a killed rank fails the job naming it, and the job resumes from rank 0's checkpoint.

The network is ``alexnet_small`` with dropout 0 and no augmentation: it has no BatchNorm (whose
statistics are per rank, over B/2 samples, and SyncBatchNorm needs CUDA) and draws no random
numbers per sample, so a global batch of B split over 2 ranks computes the same gradient as one
process on B, up to the order of fp32 sums.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from medsight.jsonable import jsonable
from medsight.train.data import BatchOrder
from medsight.train.distributed import Group, ShardedBatchOrder

# float32 sums in another order (two half-batch gradients all-reduced instead of one sum) differ
# by ~1e-7 relative per step; over 2 epochs of steps that stays well below 1e-5
RTOL = 1e-5


def _config(tmp: Path, **params) -> Path:
    model = {"network": "alexnet_small", "network_params": {"dropout": 0.0}, "augment": "none",
             "epochs": 2, "batch_size": 32, "optimizer": "adamw", "lr": 1e-3, "seed": 0,
             "threads": 1, "device": "cpu", "precision": "fp32", "deterministic": True, **params}
    cfg = {"name": "ddp", "data": {"source": str(_breast()), "limit": 200,
                                   "positive_class": "malignant", "split": {"method": "given"}},
           "model": {"kind": "torch", "params": model}, "evaluation": {"n_boot": 100},
           "output": str(tmp / "unused")}
    path = tmp / "cfg.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _shared(*parts: str) -> Path:
    from conftest import shared_path

    return shared_path(*parts)


def _breast() -> Path:
    return _shared("medmnist", "breastmnist.npz")


def _train(config: Path, out: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(out.parent / "tmp")}
    Path(env["TMPDIR"]).mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "medsight", "train", str(config), "--out",
                           str(out), *args], capture_output=True, text=True, env=env,
                          timeout=timeout)


def _run(out: Path) -> tuple[list[dict], dict]:
    state = json.loads((out / "model" / "torch.json").read_text())
    return state["history"], json.loads((out / "metrics.json").read_text())


def test_ranks_share_every_global_batch():
    one = list(BatchOrder(50, 8, True, torch.Generator().manual_seed(4)))
    ranks = [list(ShardedBatchOrder(50, 8, torch.Generator().manual_seed(4), Group(r, 2, r)))
             for r in range(2)]
    assert len(ranks[0]) == len(ranks[1]) == len(one) == len(ShardedBatchOrder(
        50, 8, torch.Generator(), Group(0, 2, 0)))
    for t, rows in enumerate(one):
        assert sorted(ranks[0][t] + ranks[1][t]) == sorted(rows)
        assert len(ranks[0][t]) == len(rows) // 2 + len(rows) % 2


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    config = _config(tmp, checkpoint_dir=str(tmp / "ckpt2"))
    t0 = time.perf_counter()
    single = _train(config, tmp / "one", "--set", f"model.params.checkpoint_dir={tmp / 'ckpt1'}")
    t1 = time.perf_counter()
    double = _train(config, tmp / "two", "--nproc", "2")
    t2 = time.perf_counter()
    assert single.returncode == 0, single.stderr[-3000:]
    assert double.returncode == 0, double.stderr[-3000:]
    print(f"wall time: 1 process {t1 - t0:.1f} s, 2 processes {t2 - t1:.1f} s")
    return tmp, config


def test_two_processes_train_like_one(runs):
    tmp, _ = runs
    (h1, m1), (h2, m2) = _run(tmp / "one"), _run(tmp / "two")
    assert [h["samples"] for h in h2] == [h["samples"] for h in h1]
    for a, b in zip(h1, h2, strict=True):
        assert b["loss"] == pytest.approx(a["loss"], rel=RTOL)
        assert b["val_loss"] == pytest.approx(a["val_loss"], rel=RTOL)
        assert b["val_auc"] == pytest.approx(a["val_auc"], abs=1e-6)  # the whole val set, once
    assert [h["best"] for h in h2] == [h["best"] for h in h1]
    assert m2["val"]["n"] == m1["val"]["n"] == 78
    assert m2["test"]["auc"] == pytest.approx(m1["test"]["auc"], abs=1e-4)


def test_only_rank_zero_writes(runs):
    tmp, _ = runs
    assert sorted(p.name for p in (tmp / "two").iterdir()) == sorted(
        p.name for p in (tmp / "one").iterdir())
    assert [p.name for p in (tmp / "ckpt2").iterdir()] == [p.name for p in (tmp / "ckpt1").iterdir()]
    # rank 1's private scratch folder is gone (torchrun keeps its own torchelastic_* folder)
    assert [p.name for p in (tmp / "tmp").iterdir() if p.name.startswith("medsight")] == []


def _rank_pid(parent: int, rank: int) -> int | None:
    """The pid of the torchrun worker of `rank` whose parent (the launcher) is `parent`."""
    for proc in Path("/proc").iterdir():
        try:
            env = (proc / "environ").read_bytes().split(b"\0")
            status = (proc / "status").read_text()
        except (OSError, NotADirectoryError):
            continue
        ppid = next(x for x in status.splitlines() if x.startswith("PPid:")).split()[1]
        if int(ppid) == parent and f"RANK={rank}".encode() in env:
            return int(proc.name)
    return None


def _start_and_kill(rank: int, config: Path, out: Path, ckpt: Path, *args: str):
    """Start a 2-process job (its TMPDIR: OUT.tmp), SIGKILL `rank` once epoch 1's checkpoint
    exists; returns the job,
    the history saved in that checkpoint (as the run folder's JSON writes it: NaN -> null) and the
    time of the kill."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TMPDIR": str(out.with_suffix(".tmp"))}
    Path(env["TMPDIR"]).mkdir()
    job = subprocess.Popen(
        [sys.executable, "-m", "medsight", "train", str(config), "--out", str(out), "--nproc", "2",
         "--set", f"model.params.checkpoint_dir={ckpt}", *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    deadline = time.monotonic() + 180
    while not (ckpt / "last.pt").is_file() and time.monotonic() < deadline:
        time.sleep(0.1)
    pid = _rank_pid(job.pid, rank)
    assert pid is not None, f"no rank-{rank} worker found"
    os.kill(pid, signal.SIGKILL)
    saved = jsonable(torch.load(ckpt / "last.pt", weights_only=False)["history"])
    return job, saved, time.monotonic()


def test_killed_rank_fails_the_job_and_the_run_resumes(runs):
    tmp, config = runs
    ckpt = tmp / "ckpt_kill"
    job, saved, killed = _start_and_kill(0, config, tmp / "killed", ckpt)
    output, _ = job.communicate(timeout=120)
    assert job.returncode != 0
    assert time.monotonic() - killed < 60  # no hang on the surviving rank
    assert "distributed training failed" in output and "rank 0" in output, output[-3000:]
    assert not (tmp / "killed" / "metrics.json").exists()
    # torchrun stopped rank 1 with SIGTERM: it exited through Python and removed its scratch
    assert [p.name for p in (tmp / "killed.tmp").iterdir() if p.name.startswith("medsight")] == []

    resumed = _train(config, tmp / "resumed", "--nproc", "2", "--set",
                     f"model.params.checkpoint_dir={ckpt}", "--set", "model.params.resume=true")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history, _ = _run(tmp / "resumed")
    reference, _ = _run(tmp / "two")
    assert history[:len(saved)] == saved  # the epochs before the kill came from the checkpoint
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in reference], rel=RTOL)


def test_torchrun_restart_resumes_from_the_last_checkpoint(runs):
    tmp, config = runs
    job, saved, _ = _start_and_kill(1, config, tmp / "restarted", tmp / "ckpt_restart",
                                          "--max-restarts", "1")
    output, _ = job.communicate(timeout=240)
    assert job.returncode == 0, output[-3000:]
    history, _ = _run(tmp / "restarted")
    reference, _ = _run(tmp / "two")
    assert history[:len(saved)] == saved
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in reference], rel=RTOL)


def test_a_detector_trains_on_two_processes(tmp_path):
    """CenterNet through the same loop: the wrapped network's loss, every image once an epoch."""
    detector = {"network": "centernet_small", "network_params": {"width": 16, "neck": 32},
                "epochs": 1, "batch_size": 4, "augment": None, "lr": 3e-3,
                "schedule": "constant", "device": "cpu", "threads": 1, "seed": 0}
    cfg = {"name": "bccd ddp", "data": {"source": str(_shared("bccd")), "limit": 8},
           "preprocess": [{"resize": {"size": [96, 128]}}],
           "model": {"kind": "detector", "params": detector}, "evaluation": {"n_boot": 100}}
    config = tmp_path / "det.yaml"
    config.write_text(yaml.safe_dump(cfg))
    done = _train(config, tmp_path / "run", "--nproc", "2")
    assert done.returncode == 0, done.stderr[-3000:]
    history, metrics = _run(tmp_path / "run")
    assert [h["samples"] for h in history] == [8]
    assert "map50" in metrics["test"]
