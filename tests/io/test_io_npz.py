"""MedMNIST .npz: one image at a time, 2D grey / RGB and 3D, cached read-only arrays."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import shared_path

from medsight.errors import UnreadableImage
from medsight.io import load_npz_arrays, read_image, read_npz_image
from medsight.io.npz import clear_npz_cache


def test_breastmnist_grey_2d(breastmnist):
    with np.load(breastmnist) as archive:
        expected = archive["train_images"][115]
        label = archive["train_labels"][115]
    image = read_npz_image(breastmnist, "train_images", 115)
    assert image.pixels.shape == (1, 28, 28)
    np.testing.assert_array_equal(image.pixels[0], expected)
    assert image.photometric == "MONOCHROME2"
    assert image.metadata["label"] == label.tolist() == [0]
    assert image.source.endswith("breastmnist.npz::train_images[115]")
    # "train" is accepted for "train_images"
    np.testing.assert_array_equal(read_npz_image(breastmnist, "train", 115).pixels, image.pixels)


def test_retinamnist_rgb():
    path = shared_path("medmnist", "retinamnist.npz")
    with np.load(path) as archive:
        expected = archive["test_images"][3]
    image = read_npz_image(path, "test_images", 3)
    assert image.pixels.shape == (3, 28, 28)
    assert image.photometric == "RGB"
    np.testing.assert_array_equal(image.pixels, np.moveaxis(expected, -1, 0))


@pytest.mark.parametrize(
    ("name", "size"), [("adrenalmnist3d.npz", 28), ("adrenalmnist3d_64.npz", 64)]
)
def test_adrenalmnist_3d(name, size):
    path = shared_path("medmnist", name)
    image = read_npz_image(path, "val_images", 5)
    assert image.pixels.shape == (1, size, size, size)
    assert image.is_volume
    arrays = load_npz_arrays(path, keys=["val_images"])
    np.testing.assert_array_equal(image.pixels[0], arrays["val_images"][5])
    clear_npz_cache()


def test_arrays_are_cached_and_read_only(breastmnist):
    first = load_npz_arrays(breastmnist)
    second = load_npz_arrays(breastmnist)
    assert set(first) == {
        "train_images",
        "val_images",
        "test_images",
        "train_labels",
        "val_labels",
        "test_labels",
    }
    assert first["train_images"] is second["train_images"]
    assert first["train_images"].shape == (546, 28, 28)
    with pytest.raises(ValueError):
        first["train_images"][0, 0, 0] = 1


def test_cache_notices_a_rewritten_file(tmp_path):
    path = tmp_path / "tiny.npz"
    np.savez_compressed(path, train_images=np.zeros((2, 4, 4), np.uint8))
    assert read_npz_image(path, "train_images", 1).pixels.max() == 0
    np.savez_compressed(path, train_images=np.full((2, 4, 4), 7, np.uint8), extra=np.ones(1))
    assert read_npz_image(path, "train_images", 1).pixels.max() == 7


def test_bad_key_and_index_are_clear(breastmnist):
    with pytest.raises(UnreadableImage, match="no array 'nope'.*train_images"):
        read_npz_image(breastmnist, "nope", 0)
    with pytest.raises(UnreadableImage, match="index 546 out of range"):
        read_npz_image(breastmnist, "train_images", 546)
    with pytest.raises(UnreadableImage, match="not an image stack"):
        read_npz_image(breastmnist, "train_labels", 0)


def test_read_image_on_npz_points_to_the_right_tool(breastmnist):
    with pytest.raises(UnreadableImage, match="holds many images") as info:
        read_image(breastmnist)
    assert "read_npz_image" in info.value.reason and "medmnist" in info.value.reason


def test_missing_and_corrupt_npz(tmp_path):
    with pytest.raises(UnreadableImage, match="file not found"):
        read_npz_image(tmp_path / "absent.npz", "train_images", 0)
    broken = tmp_path / "broken.npz"
    broken.write_bytes(b"PK\x03\x04" + b"\x00" * 50)
    with pytest.raises(UnreadableImage, match="not a readable .npz"):
        read_npz_image(broken, "train_images", 0)
