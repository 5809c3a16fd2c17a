"""Image cache (lossless uint8 / float16), unreadable images, batch order and the loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from medsight.data.dataset import Dataset, Record, Task
from medsight.data.refs import register_scheme
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.io.image import Image
from medsight.models.inputs import load_arrays
from medsight.train.data import (
    BatchOrder,
    CachedImages,
    ImageCache,
    make_loader,
    targets_tensor,
)

_ARRAYS: dict[str, np.ndarray] = {}


def _resolve(rest: str, meta: dict) -> Image:
    return Image(_ARRAYS[rest])


register_scheme("traintest", _resolve)


def _dataset(arrays: list[np.ndarray], labels=None, extra_refs=()) -> Dataset:
    records = []
    for i, a in enumerate(arrays):
        key = f"a{len(_ARRAYS)}_{i}"
        _ARRAYS[key] = a.astype(np.float32)
        records.append(Record(f"traintest:{key}", None if labels is None else labels[i]))
    records += [Record(ref, 0) for ref in extra_refs]
    return Dataset(records, Task.BINARY, ["a", "b"], name="arrays")


def test_8bit_images_are_cached_losslessly_as_uint8(breastmnist):
    from medsight.data.sources.medmnist import from_medmnist

    ds = from_medmnist(breastmnist).split("val").subset(range(40))
    cache = ImageCache.build(ds, chunk_size=16)
    assert cache.mode == "uint8" and cache.data.dtype == torch.uint8
    ref = load_arrays(ds).x
    assert torch.equal(cache.batch(np.arange(40)), torch.from_numpy(ref))
    assert cache.nbytes == ref.nbytes // 4


def test_unit_scaled_8bit_values_stay_uint8_and_decode_exactly():
    rng = np.random.default_rng(0)
    x = (rng.integers(0, 256, (6, 1, 5, 5)).astype(np.float32) / np.float32(255))
    cache = ImageCache.from_array(x)
    assert cache.mode == "unit8"
    assert torch.equal(cache.batch(range(6)), torch.from_numpy(x))


def test_other_values_use_float16_or_float32_when_out_of_range():
    x = np.linspace(-1, 1, 2 * 16, dtype=np.float32).reshape(2, 1, 4, 4)
    cache = ImageCache.from_array(x)
    assert cache.mode == "float16"
    assert np.allclose(cache.batch([0, 1]).numpy(), x, atol=1e-3)
    big = np.full((1, 1, 2, 2), 1e6, np.float32)
    assert ImageCache.from_array(big).mode == "float32"
    with pytest.raises(InvalidConfig, match="uint8"):
        ImageCache.from_array(x, dtype="uint8")


def test_chunks_with_different_encodings_widen_the_whole_cache():
    ints = [np.full((1, 3, 3), v) for v in (0, 7, 255)]
    floats = [np.full((1, 3, 3), 0.3), np.full((1, 3, 3), -2.5)]
    ds = _dataset(ints + floats)
    cache = ImageCache.build(ds, chunk_size=3)
    assert cache.mode == "float16"
    got = cache.batch(range(5))[:, 0, 0, 0].numpy()
    assert np.allclose(got, [0, 7, 255, 0.3, -2.5], atol=1e-3)


def test_unreadable_images_are_skipped_and_named(tmp_path):
    missing = str(tmp_path / "gone.png")
    ds = _dataset([np.zeros((1, 4, 4)), np.ones((1, 4, 4))], labels=[0, 1], extra_refs=[missing])
    cache = ImageCache.build(ds)
    assert len(cache) == 2 and list(cache.index) == [0, 1] and cache.n_records == 3
    assert [e[0] for e in cache.errors] == [missing]
    # a chunk holding only the unreadable image is reported too
    cache = ImageCache.build(ds, chunk_size=2)
    assert len(cache) == 2 and [e[0] for e in cache.errors] == [missing]
    with pytest.raises(InvalidDataset, match="none of its 1 images"):
        ImageCache.build(ds.subset([2]))


def test_targets_follow_cached_positions():
    ds = _dataset([np.zeros((1, 2, 2))] * 3, labels=[1, 0, 1])
    assert targets_tensor(ds, np.array([2, 1])).tolist() == [1, 0]


def test_batch_order_covers_rows_once_and_drops_a_trailing_singleton():
    g = torch.Generator().manual_seed(0)
    batches = list(BatchOrder(9, 4, shuffle=True, generator=g))
    assert [len(b) for b in batches] == [4, 4]  # the 9th row would be alone: skipped this epoch
    assert len(set(sum(batches, []))) == 8
    assert len(BatchOrder(9, 4, True, g)) == 2
    assert [len(b) for b in BatchOrder(9, 4, shuffle=False, generator=None)] == [4, 4, 1]
    a = list(BatchOrder(20, 5, True, torch.Generator().manual_seed(3)))
    b = list(BatchOrder(20, 5, True, torch.Generator().manual_seed(3)))
    assert a == b


def test_loader_yields_float_batches_with_targets_and_rows():
    x = np.arange(10 * 4, dtype=np.float32).reshape(10, 1, 2, 2)
    data = CachedImages(ImageCache.from_array(x), torch.arange(10) % 2)
    loader = make_loader(data, 4, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen = []
    for xb, yb, rows in loader:
        assert xb.dtype == torch.float32 and xb.shape[1:] == (1, 2, 2)
        assert torch.equal(yb, rows % 2)
        assert torch.equal(xb, torch.from_numpy(x[rows.numpy()]))
        seen += rows.tolist()
    assert sorted(seen) == list(range(10))
    x0, y0, r0 = data[3]
    assert x0.shape == (1, 2, 2) and int(y0) == 1 and int(r0) == 3


def test_worker_processes_give_the_same_batches_as_the_main_process():
    x = np.arange(12 * 4, dtype=np.float32).reshape(12, 1, 2, 2)
    data = CachedImages(ImageCache.from_array(x), torch.arange(12))

    def rows(workers):
        loader = make_loader(data, 5, shuffle=True, generator=torch.Generator().manual_seed(4),
                             num_workers=workers)
        return [r.tolist() for _, _, r in loader]

    assert rows(2) == rows(0)
