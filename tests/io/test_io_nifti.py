"""NIfTI reading: canonical (RAS+) orientation, (C, z, y, x) layout, spacing order, versions."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_path

from medsight.errors import UnreadableImage
from medsight.io import read_image

# voxel (i, j, k) -> world: x = -2 i + 10, y = -3 j + 20, z = 4 k - 30  (an LPS-stored volume)
LPS_AFFINE = np.array([[-2.0, 0, 0, 10.0], [0, -3.0, 0, 20.0], [0, 0, 4.0, -30.0], [0, 0, 0, 1]])


@pytest.fixture
def lps_volume(tmp_path):
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    path = tmp_path / "lps.nii.gz"
    nib.save(nib.Nifti1Image(data, LPS_AFFINE), path)
    return path, data


def test_written_volume_is_canonical_with_documented_axes(lps_volume):
    path, data = lps_volume
    image = read_image(path)
    assert image.pixels.shape == (1, 6, 5, 4)  # (C, z, y, x)
    assert image.spacing == (4.0, 3.0, 2.0)  # zooms (2, 3, 4) reordered to (z, y, x)
    # canonical flips x and y: output[k, j, i] = data[3 - i, 4 - j, k]
    k, j, i = 2, 1, 3
    assert image.pixels[0, k, j, i] == data[3 - i, 4 - j, k]
    np.testing.assert_array_equal(image.pixels[0], data[::-1, ::-1, :].transpose(2, 1, 0))
    np.testing.assert_allclose(image.direction, [[0, 0, 1], [0, 1, 0], [1, 0, 0]])
    # voxel (0,0,0) after the flips is the old voxel (3, 4, 0): x = -6 + 10, y = -12 + 20, z = -30
    assert image.origin == pytest.approx((4.0, 8.0, -30.0))
    assert image.metadata["original_orientation"] == "LPS"
    assert image.metadata["nifti_version"] == 1
    assert image.modality is None
    assert image.photometric == "MONOCHROME2"


def test_format_comes_from_content_not_name(lps_volume, tmp_path):
    path, _ = lps_volume
    renamed = tmp_path / "volume.bin"
    renamed.write_bytes(path.read_bytes())
    plain = tmp_path / "plain.dat"
    plain.write_bytes(gzip.decompress(path.read_bytes()))
    reference = read_image(path).pixels
    for source in (renamed, plain, path.read_bytes(), plain.read_bytes()):
        np.testing.assert_array_equal(read_image(source).pixels, reference)


def test_two_dimensional_nifti(tmp_path):
    data = np.arange(20, dtype=np.float32).reshape(4, 5)
    path = tmp_path / "flat.nii"
    nib.save(nib.Nifti1Image(data, np.diag([0.5, 0.7, 1.0, 1.0])), path)
    image = read_image(path)
    assert image.pixels.shape == (1, 5, 4)  # (C, y, x)
    np.testing.assert_array_equal(image.pixels[0], data.T)
    assert image.spacing == pytest.approx((0.7, 0.5))


def test_4d_time_becomes_channels():
    image = read_image(shared_path("nifti", "example4d.nii.gz"))
    assert image.pixels.shape == (2, 24, 96, 128)
    assert image.spacing == pytest.approx((2.2, 2.0, 2.0))
    assert image.metadata["original_orientation"] == "LAS"
    assert image.metadata["time_step"] == pytest.approx(2000.0)


def test_nifti2():
    path = shared_path("nifti", "example_nifti2.nii.gz")
    image = read_image(path)
    assert image.metadata["nifti_version"] == 2
    assert image.pixels.shape == (2, 12, 20, 32)
    canonical = nib.as_closest_canonical(nib.load(path)).get_fdata()
    np.testing.assert_array_equal(image.pixels, canonical.transpose(3, 2, 1, 0))


def test_big_endian_nifti_values():
    path = shared_path("nifti", "anatomical.nii")
    image = read_image(path)
    canonical = nib.as_closest_canonical(nib.load(path)).get_fdata()
    assert image.pixels.shape == (1, 25, 41, 33)
    np.testing.assert_array_equal(image.pixels[0], canonical.transpose(2, 1, 0))
    assert image.pixels.min() == -610 and image.pixels.max() == 30393


def test_scaled_data_is_applied():
    path = shared_path("nifti", "functional.nii")
    image = read_image(path)
    assert image.metadata["scl_slope"] not in (None, 1.0)
    expected = nib.as_closest_canonical(nib.load(path)).get_fdata().transpose(3, 2, 1, 0)
    np.testing.assert_allclose(image.pixels, expected, rtol=1e-6)
    assert not np.allclose(image.pixels, np.round(image.pixels))  # scaled, not raw integers


def test_anisotropic_zooms_follow_axis_order():
    image = read_image(shared_path("nifti", "standard.nii.gz"))
    assert image.pixels.shape == (1, 7, 5, 4)
    assert image.spacing == (2.0, 3.0, 1.0)


def test_truncated_gzip_nifti(lps_volume, tmp_path):
    path, _ = lps_volume
    cut = tmp_path / "cut.nii.gz"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="truncated|corrupt") as info:
        read_image(cut)
    assert info.value.source == str(cut)


def test_truncated_plain_nifti(lps_volume, tmp_path):
    path, _ = lps_volume
    raw = gzip.decompress(path.read_bytes())
    with pytest.raises(UnreadableImage, match="NIfTI"):
        read_image(raw[:400])


def test_hdr_img_pair_is_read_by_its_header_path(tmp_path):
    data = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    header_path = tmp_path / "pair.hdr"
    nib.save(nib.Nifti1Pair(data, np.eye(4)), header_path)
    image = read_image(header_path)
    np.testing.assert_array_equal(image.pixels[0], data.transpose(2, 1, 0))
    with pytest.raises(UnreadableImage, match=r"\.hdr/\.img pair"):
        read_image(header_path.read_bytes())
