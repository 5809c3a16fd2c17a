"""load_arrays: records -> preprocessed float32 stack; unreadable images skipped and named."""

from __future__ import annotations

import logging

import numpy as np
import pytest
from conftest import shared_path
from pydicom.data import get_testdata_file

from medsight.data.dataset import Dataset, Record
from medsight.data.sources.medmnist import from_medmnist
from medsight.errors import InvalidConfig, InvalidDataset
from medsight.models.inputs import load_arrays
from medsight.preprocess import Preprocess

MR = get_testdata_file("MR_small.dcm")  # 64 x 64
CT = get_testdata_file("CT_small.dcm")  # 128 x 128
BROKEN = get_testdata_file("MR_truncated.dcm")  # pixel data cut short


def files(*paths: str) -> Dataset:
    return Dataset([Record(p, label=i % 2) for i, p in enumerate(paths)], "binary", ["a", "b"])


def test_breastmnist_pixels_stack_unchanged():
    path = shared_path("medmnist", "breastmnist.npz")
    ds = from_medmnist(path).split("val")
    loaded = load_arrays(ds)
    raw = np.load(path)["val_images"]
    assert loaded.x.shape == (78, 1, 28, 28) and loaded.x.dtype == np.float32
    np.testing.assert_array_equal(loaded.x[:, 0], raw.astype(np.float32))
    assert loaded.ok.all() and loaded.errors == [] and loaded.n_skipped == 0


def test_unreadable_image_is_skipped_named_and_logged(caplog):
    ds = files(MR, BROKEN, MR)
    with caplog.at_level(logging.WARNING, logger="medsight.models.inputs"):
        loaded = load_arrays(ds)
    assert loaded.x.shape == (2, 1, 64, 64)
    assert loaded.ok.tolist() == [True, False, True]
    assert loaded.indices.tolist() == [0, 2]
    assert len(loaded.errors) == 1 and loaded.errors[0][0] == BROKEN
    assert "truncated" in loaded.errors[0][1].lower() or "pixel" in loaded.errors[0][1].lower()
    assert BROKEN in caplog.text and "1 of 3" in caplog.text
    np.testing.assert_array_equal(loaded.x[0], loaded.x[1])


def test_shape_mismatch_names_two_refs_and_asks_for_resize():
    with pytest.raises(InvalidConfig) as err:
        load_arrays(files(MR, CT))
    msg = str(err.value)
    assert MR in msg and CT in msg and "(1, 64, 64)" in msg and "(1, 128, 128)" in msg
    assert "resize" in msg


def test_resize_step_makes_shapes_agree():
    pre = Preprocess.from_config([{"resize": {"size": [32, 32]}}])
    loaded = load_arrays(files(MR, CT), pre)
    assert loaded.x.shape == (2, 1, 32, 32)
    assert loaded.ok.all()


def test_nothing_readable_is_an_error_naming_the_file():
    with pytest.raises(InvalidDataset, match="MR_truncated"):
        load_arrays(files(BROKEN, BROKEN))


def test_threads_give_the_same_array_and_progress_reaches_total():
    ds = files(MR, CT, BROKEN, CT, MR)
    pre = Preprocess.from_config([{"resize": {"size": [16, 16]}}])
    calls: list[tuple[int, int]] = []
    serial = load_arrays(ds, pre, progress=lambda d, t: calls.append((d, t)))
    threaded = load_arrays(ds, pre, workers=2)
    np.testing.assert_array_equal(serial.x, threaded.x)
    assert serial.ok.tolist() == threaded.ok.tolist() == [True, True, False, True, True]
    assert calls[-1] == (5, 5) and len(calls) == 5


def test_empty_dataset_gives_an_empty_stack():
    loaded = load_arrays(files())
    assert loaded.x.shape[0] == 0 and loaded.ok.shape == (0,)
