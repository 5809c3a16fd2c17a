"""Listing and pruning the disk image cache: real pools written by `build_disk_cache`, removed
least recently used first or by age, never while a training uses them, never in a folder that is
no cache; and `medsight cache list / prune` through Typer's CliRunner."""

from __future__ import annotations

import fcntl
import gc
import json
import os
import shutil
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_module
from typer.testing import CliRunner

from medsight.cli import app
from medsight.data.sources.folder import from_class_folders
from medsight.errors import InvalidConfig
from medsight.preprocess import Preprocess
from medsight.train.cache_admin import cache_pools, prune_cache
from medsight.train.disk_cache import IN_USE, LAST_USED, build_disk_cache, pool_key

_helpers = load_module("png_folders", Path(__file__).resolve().parent / "png_folders.py")
CHAIN, write_pngs = _helpers.CHAIN, _helpers.write_pngs
OTHER = [{"resize": {"size": [10, 10]}}]
N = 12


def _files(folder: Path) -> dict[str, int]:
    """Every file under `folder` with its size (what is on disk)."""
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


def _age(pool: Path, seconds: float) -> None:
    """Say the pool was last used `seconds` ago."""
    when = time.time() - seconds
    os.utime(pool / LAST_USED, (when, when))


@pytest.fixture
def cache(tmp_path):
    """A cache of two pools (chains CHAIN and OTHER) over the same 12 PNGs; OTHER used an hour
    ago, CHAIN just now. Returns the cache folder, the dataset and each chain's pool folder."""
    ds = from_class_folders(write_pngs(tmp_path / "images", N), "binary")
    root = tmp_path / "cache"
    pools = {}
    for name, chain in (("chain", CHAIN), ("other", OTHER)):
        assert build_disk_cache(ds, Preprocess.from_config(chain), cache_dir=root).decoded == N
        pools[name] = root / pool_key(Preprocess.from_config(chain), "auto")[:32]
    _age(pools["other"], 3600)
    return root, ds, pools


def test_list_counts_rows_and_bytes_on_disk(cache, tmp_path):
    root, _, pools = cache
    (pools["chain"] / "seg-damaged").mkdir()
    (pools["chain"] / "seg-damaged" / "index.json").write_text("{not json")
    listed = cache_pools(root)
    assert [p.path for p in listed] == [pools["other"], pools["chain"]]  # least recently used first
    for p in listed:
        assert (p.key, p.segments, p.rows, p.building) == (p.path.name, 1, N, False)
        assert p.bytes == sum(_files(p.path).values())
        assert p.last_used == datetime.fromtimestamp((p.path / LAST_USED).stat().st_mtime, UTC)
    assert cache_pools(tmp_path / "nowhere") == []

    (pools["other"] / LAST_USED).unlink()  # a pool used before last-used existed: its segment
    (segment,) = pools["other"].glob("seg-*")
    created = json.loads((segment / "index.json").read_text())["created"]
    (other,) = [p for p in cache_pools(root) if p.path == pools["other"]]
    assert other.last_used == datetime.fromtimestamp(created, UTC)


def test_max_size_removes_the_least_recently_used_pool_and_the_other_is_reused(cache):
    root, ds, pools = cache
    before = {p.path: p for p in cache_pools(root)}
    total = sum(p.bytes for p in before.values())
    report = prune_cache(root, max_bytes=total - 1)
    assert [p.path for p in report.removed] == [pools["other"]] and report.in_use == []
    assert report.freed == before[pools["other"]].bytes
    assert report.remaining == before[pools["chain"]].bytes
    assert sorted(os.listdir(root)) == [pools["chain"].name]  # no trash left behind
    assert build_disk_cache(ds, Preprocess.from_config(CHAIN), cache_dir=root).decoded == 0
    assert build_disk_cache(ds, Preprocess.from_config(OTHER), cache_dir=root).decoded == N


def test_older_than_removes_pools_unused_that_long_and_a_killed_prunes_trash(cache):
    root, _, pools = cache
    _age(pools["other"], 40 * 86400)
    _age(pools["chain"], 20 * 86400)
    (root / ".trash-left-by-a-killed-prune").mkdir()
    (root / ".trash-left-by-a-killed-prune" / "pixels.npy").write_bytes(b"x" * 100)
    report = prune_cache(root, older_than=timedelta(days=30))
    assert [p.path for p in report.removed] == [pools["other"]]
    assert sorted(os.listdir(root)) == [pools["chain"].name]


def test_a_pool_a_training_holds_is_kept_until_its_cache_is_gone(cache):
    root, ds, pools = cache
    held = build_disk_cache(ds, Preprocess.from_config(OTHER), cache_dir=root)  # a training's
    _age(pools["other"], 3600)
    report = prune_cache(root, max_bytes=0)
    assert [p.path for p in report.in_use] == [pools["other"]]
    assert [p.path for p in report.removed] == [pools["chain"]]
    assert pools["other"].is_dir() and report.remaining == report.in_use[0].bytes
    assert held.batch(np.arange(N)).shape[0] == N  # its rows still read
    del held
    gc.collect()
    assert [p.path for p in prune_cache(root, max_bytes=0).removed] == [pools["other"]]
    assert os.listdir(root) == []


def test_a_pool_pruned_while_a_training_opens_it_is_made_again(cache):
    """The prune takes the in-use lock first: the training blocks, then finds its lock on a file
    renamed away, and builds the pool again rather than reading a deleted one."""
    root, ds, pools = cache
    pool = pools["chain"]
    with open(pool / IN_USE, "a+") as prune_lock:  # what prune_cache holds while renaming
        fcntl.flock(prune_lock, fcntl.LOCK_EX)
        opened: dict[str, object] = {}
        training = threading.Thread(target=lambda: opened.update(
            cache=build_disk_cache(ds, Preprocess.from_config(CHAIN), cache_dir=root)))
        training.start()
        time.sleep(0.5)  # the training now waits for the lock
        assert training.is_alive()
        os.rename(pool, root / ".trash-chain")
    training.join(timeout=60)
    shutil.rmtree(root / ".trash-chain")
    again = opened["cache"]
    assert again.decoded == N and again.errors == []  # rebuilt, every row there
    reference = build_disk_cache(ds, Preprocess.from_config(CHAIN), cache_dir=root)
    assert reference.decoded == 0
    assert torch.equal(again.batch(np.arange(N)), reference.batch(np.arange(N)))


def test_dry_run_removes_nothing(cache):
    root, _, pools = cache
    before = _files(root)
    report = prune_cache(root, max_bytes=0, dry_run=True)
    assert [p.path for p in report.removed] == [pools["other"], pools["chain"]]
    assert report.remaining == 0 and report.freed == sum(before.values())
    assert _files(root) == before


@pytest.mark.parametrize("intruder", ["file", "symlink"])
def test_a_folder_that_is_no_cache_is_refused_and_kept_whole(tmp_path, intruder):
    folder = tmp_path / "documents"
    (folder / ("a" * 32)).mkdir(parents=True)
    (folder / ("a" * 32) / "thesis.tex").write_text("years of work")
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (outside / "data.csv").write_text("1,2,3")
    if intruder == "file":
        (folder / "notes.txt").write_text("keep me")
    else:
        (folder / ("b" * 32)).symlink_to(outside, target_is_directory=True)
    before, elsewhere = _files(folder), _files(outside)
    for call in (lambda: cache_pools(folder), lambda: prune_cache(folder, max_bytes=0)):
        with pytest.raises(InvalidConfig, match="is not a medsight image cache folder"):
            call()
    assert _files(folder) == before and _files(outside) == elsewhere
    with pytest.raises(InvalidConfig, match="max_bytes"):
        prune_cache(tmp_path / "nowhere")


def test_cli_list_and_prune_dry_run(cache):
    root, _, pools = cache
    listed = CliRunner().invoke(app, ["cache", "list", "--cache-dir", str(root)])
    assert listed.exit_code == 0, listed.output
    assert pools["chain"].name[:12] in listed.output and pools["other"].name[:12] in listed.output
    assert f"total: 2 pools, {2 * N} rows" in listed.output

    before = _files(root)
    pruned = CliRunner().invoke(app, ["cache", "prune", "--cache-dir", str(root),
                                      "--older-than", "12h", "--max-size", "1B",
                                      "--dry-run"])
    assert pruned.exit_code == 0, pruned.output
    assert "would remove 2 pools" in pruned.output and _files(root) == before


def test_cli_prune_refuses_bad_sizes_and_durations_and_needs_a_bound(cache):
    root, _, _ = cache
    before = _files(root)
    for args, message in ((["--max-size", "20XB"], "is not a size"),
                          (["--older-than", "soon"], "is not a duration"),
                          ([], "--max-size and/or --older-than")):
        done = CliRunner().invoke(app, ["cache", "prune", "--cache-dir", str(root), *args])
        assert done.exit_code == 2 and message in done.output, done.output
    assert _files(root) == before
