"""The memory-mapped disk image cache: reuse across runs and folds, invalidation, a killed build,
concurrent builders, and training on it giving the in-memory cache's run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_module
from PIL import Image as PILImage

from medsight.data.sources.folder import from_class_folders
from medsight.errors import InvalidConfig
from medsight.preprocess import Preprocess
from medsight.train.data import ImageCache, cache_images

_helpers = load_module("png_folders", Path(__file__).resolve().parent / "png_folders.py")
CHAIN, write_pngs = _helpers.CHAIN, _helpers.write_pngs

def _all(cache: ImageCache) -> torch.Tensor:
    return cache.batch(np.arange(len(cache)))


@pytest.fixture
def folder(tmp_path):
    return write_pngs(tmp_path / "images", 40)


def test_second_run_decodes_nothing_and_equals_the_memory_cache(folder, tmp_path):
    ds = from_class_folders(folder, "binary")
    chain = Preprocess.from_config(CHAIN)
    memory = ImageCache.build(ds, chain)
    first = cache_images(ds, chain, cache="disk", cache_dir=tmp_path / "c", chunk_size=16)
    second = cache_images(ds, Preprocess.from_config(CHAIN), cache="disk",
                          cache_dir=tmp_path / "c", chunk_size=16)
    assert (memory.decoded, first.decoded, second.decoded) == (40, 40, 0)
    assert second.mode == memory.mode and np.array_equal(second.index, memory.index)
    assert torch.equal(_all(second), _all(memory))
    assert np.allclose(second.channel_stats(), memory.channel_stats())
    segment = next((tmp_path / "c").glob("*/seg-*"))
    meta = json.loads((segment / "index.json").read_text())
    assert meta["shape"] == [40, 1, 12, 12] and len(meta["keys"]) == 40
    assert (tmp_path / "c").stat().st_mode & 0o777 == 0o700


def test_folds_reuse_rows_cached_for_other_splits(folder, tmp_path):
    ds = from_class_folders(folder, "binary")
    chain = Preprocess.from_config(CHAIN)
    a = cache_images(ds.subset(range(0, 40, 2)), chain, cache="disk", cache_dir=tmp_path)
    b = cache_images(ds.subset(range(1, 40, 2)), chain, cache="disk", cache_dir=tmp_path)
    fold = ds.subset([5, 0, 17, 38, 2])
    again = cache_images(fold, chain, cache="disk", cache_dir=tmp_path)
    assert (a.decoded, b.decoded, again.decoded) == (20, 20, 0)
    assert torch.equal(_all(again), _all(ImageCache.build(fold, chain)))


def test_a_changed_chain_or_file_is_decoded_again(folder, tmp_path):
    ds = from_class_folders(folder, "binary")
    chain = Preprocess.from_config(CHAIN)
    cache_images(ds, chain, cache="disk", cache_dir=tmp_path)
    other = Preprocess.from_config([{"resize": {"size": [10, 10]}}])
    assert cache_images(ds, other, cache="disk", cache_dir=tmp_path).decoded == 40

    edited = Path(ds.records[3].ref)
    PILImage.fromarray(np.full((16, 16), 7, np.uint8)).save(edited)
    st = edited.stat()
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    ds = from_class_folders(folder, "binary")
    after = cache_images(ds, chain, cache="disk", cache_dir=tmp_path)
    assert after.decoded == 1
    assert torch.equal(_all(after), _all(ImageCache.build(ds, chain)))
    assert torch.allclose(after.batch([3]), torch.full((1, 1, 12, 12), 7.0))


def test_unreadable_images_are_reported_and_retried(folder, tmp_path):
    (folder / "lesion" / "broken.png").write_bytes(b"not a png")
    ds = from_class_folders(folder, "binary")
    broken = next(i for i, r in enumerate(ds.records) if r.ref.endswith("broken.png"))
    chain = Preprocess.from_config(CHAIN)
    first = cache_images(ds, chain, cache="disk", cache_dir=tmp_path)
    second = cache_images(ds, chain, cache="disk", cache_dir=tmp_path)
    assert (first.decoded, second.decoded) == (41, 1)
    for cache in (first, second):
        assert len(cache) == 40 and broken not in cache.index
        assert [ref for ref, _ in cache.errors] == [ds.records[broken].ref]


def test_a_cache_folder_every_user_may_write_is_refused(folder, tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    ds = from_class_folders(folder, "binary")
    with pytest.raises(InvalidConfig, match="writable by every user"):
        cache_images(ds, None, cache="disk", cache_dir=shared)


_BUILD = f"""
import sys, time
from medsight.data.sources.folder import from_class_folders
from medsight.preprocess import Preprocess
from medsight.train.data import cache_images
def progress(done, total):
    print("progress", done, flush=True)
    time.sleep(30)
cache_images(from_class_folders(sys.argv[1], "binary"), Preprocess.from_config({CHAIN!r}),
             cache="disk", cache_dir=sys.argv[2], chunk_size=8, progress=progress)
"""


def test_a_killed_build_leaves_nothing_that_is_trusted_later(folder, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", _BUILD, str(folder), str(tmp_path / "c")],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().split() == ["progress", "8"]  # one chunk written, then killed
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    pool = next((tmp_path / "c").glob("*/"))
    assert list(pool.glob(".tmp-*")) and not list(pool.glob("seg-*"))
    ds = from_class_folders(folder, "binary")
    chain = Preprocess.from_config(CHAIN)
    cache = cache_images(ds, chain, cache="disk", cache_dir=tmp_path / "c")
    assert cache.decoded == 40 and torch.equal(_all(cache), _all(ImageCache.build(ds, chain)))
    assert not list(pool.glob(".tmp-*"))  # the dead build's folder is cleaned up


def test_concurrent_builders_decode_each_image_once(folder, tmp_path):
    """Two builders (threads here: the file lock is per open file, as between ranks); the second
    starts while the first is mid-way and must wait for it, then reuse its rows."""
    ds = from_class_folders(folder, "binary")
    midway = threading.Event()
    decoded: dict[str, int] = {}

    def build(name: str) -> None:
        def progress(done: int, total: int) -> None:
            midway.set()
            time.sleep(0.3)

        if name == "second":
            midway.wait(30)
        cache = cache_images(ds, Preprocess.from_config(CHAIN), cache="disk",
                             cache_dir=tmp_path / "c", chunk_size=8,
                             progress=progress if name == "first" else None)
        decoded[name] = int(cache.decoded or 0)

    threads = [threading.Thread(target=build, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert decoded == {"first": 40, "second": 0}
    assert len(list(next((tmp_path / "c").glob("*/")).glob("seg-*"))) == 1


def test_training_on_the_disk_cache_is_the_memory_run(folder, tmp_path):
    from medsight.models.torch_classifier import TorchClassifier

    ds = from_class_folders(folder, "binary")
    params = dict(network="tiny_cnn_test", preprocess=CHAIN, epochs=2, batch_size=8,
                  threshold_method=None, deterministic=True, device="cpu", seed=3)
    memory = TorchClassifier(**params).fit(ds)
    disk = TorchClassifier(**params, cache="disk", cache_dir=str(tmp_path / "c")).fit(ds)
    assert [h["loss"] for h in disk.history_] == [h["loss"] for h in memory.history_]
    for a, b in zip(memory.model_.state_dict().values(), disk.model_.state_dict().values(),
                    strict=True):
        assert torch.equal(a, b)


def test_records_inside_an_archive_are_keyed_by_the_archive_file(tmp_path):
    """npz: refs name one file: rewriting it (a new mtime) invalidates every record in it."""
    from medsight.data.sources.medmnist import from_medmnist

    rng = np.random.default_rng(1)
    arrays = {}
    for split, n in (("train", 10), ("val", 4), ("test", 4)):
        arrays[f"{split}_images"] = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        arrays[f"{split}_labels"] = np.arange(n)[:, None] % 2
    path = tmp_path / "breastmnist.npz"
    np.savez(path, **arrays)
    ds = from_medmnist(path)
    first = cache_images(ds, None, cache="disk", cache_dir=tmp_path / "c")
    again = cache_images(ds, None, cache="disk", cache_dir=tmp_path / "c")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    touched = cache_images(ds, None, cache="disk", cache_dir=tmp_path / "c")
    assert (first.decoded, again.decoded, touched.decoded) == (18, 0, 18)
    assert first.mode == "uint8" and torch.equal(_all(touched), _all(ImageCache.build(ds)))
