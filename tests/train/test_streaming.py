"""The streaming loader: images decoded per batch in DataLoader workers give the cached loader's
batches and the cached run's losses; a file that breaks mid-training is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_module

from medsight.data.sources.folder import from_class_folders
from medsight.errors import InvalidDataset
from medsight.preprocess import Preprocess
from medsight.train.data import CachedImages, ImageCache, cache_images, make_loader, targets_tensor

_helpers = load_module("png_folders", Path(__file__).resolve().parent / "png_folders.py")
CHAIN, write_pngs = _helpers.CHAIN, _helpers.write_pngs


@pytest.fixture
def dataset(tmp_path):
    folder = write_pngs(tmp_path / "images", 30)
    (folder / "normal" / "broken.png").write_bytes(b"not a png")
    return from_class_folders(folder, "binary")


def _loader(cache: ImageCache, dataset, workers: int):
    data = CachedImages(cache, targets_tensor(dataset, cache.index))
    return make_loader(data, 7, shuffle=True, generator=torch.Generator().manual_seed(5),
                       num_workers=workers)


def test_streamed_batches_in_workers_are_the_cached_batches(dataset):
    chain = Preprocess.from_config(CHAIN)
    memory = ImageCache.build(dataset, chain)
    stream = cache_images(dataset, chain, cache="stream")
    assert stream.nbytes == 0 and stream.mode == memory.mode
    assert np.array_equal(stream.index, memory.index) and stream.errors == memory.errors
    assert np.allclose(stream.channel_stats(), memory.channel_stats(), rtol=1e-12)
    cached_loader, streamed_loader = _loader(memory, dataset, 0), _loader(stream, dataset, 2)
    for epoch in range(2):  # the seeded order moves on each epoch, the same way for both
        cached, streamed = list(cached_loader), list(streamed_loader)
        assert len(cached) == len(streamed) == 5, epoch
        for (xa, ya, ia), (xb, yb, ib) in zip(cached, streamed, strict=True):
            assert torch.equal(ia, ib) and torch.equal(ya, yb) and torch.equal(xa, xb)


def test_training_on_the_stream_is_the_cached_run(dataset):
    from medsight.models.torch_classifier import TorchClassifier

    params = dict(network="tiny_cnn_test", preprocess=CHAIN, epochs=2, batch_size=8,
                  threshold_method=None, deterministic=True, device="cpu", seed=1)
    memory = TorchClassifier(**params).fit(dataset)
    stream = TorchClassifier(**params, cache="stream", num_workers=2).fit(dataset)
    assert stream.skipped_ == memory.skipped_ and len(stream.skipped_) == 1
    np.testing.assert_allclose([h["loss"] for h in stream.history_],
                               [h["loss"] for h in memory.history_], rtol=1e-6)


def test_an_image_broken_after_the_scan_is_a_clear_error(dataset):
    stream = cache_images(dataset, Preprocess.from_config(CHAIN), cache="stream")
    victim = dataset.records[int(stream.index[2])].ref
    with open(victim, "wb") as f:
        f.write(b"truncated")
    with pytest.raises(InvalidDataset, match="readable when the training set was scanned"):
        stream.batch([0, 1, 2])
