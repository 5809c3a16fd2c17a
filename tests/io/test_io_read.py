"""read_image's boundary: every failure is UnreadableImage naming the source and the reason."""

from __future__ import annotations

import gzip
import io

import numpy as np
import pytest

from medsight.errors import UnreadableImage
from medsight.io import read_image


def test_file_not_found(tmp_path):
    missing = tmp_path / "missing.dcm"
    with pytest.raises(UnreadableImage, match="file not found") as info:
        read_image(missing)
    assert info.value.source == str(missing)
    assert str(missing) in str(info.value)


def test_empty_file_and_empty_upload(tmp_path):
    empty = tmp_path / "empty.png"
    empty.touch()
    with pytest.raises(UnreadableImage, match="empty file"):
        read_image(empty)
    with pytest.raises(UnreadableImage, match="empty upload"):
        read_image(b"")
    with pytest.raises(UnreadableImage, match="empty upload"):
        read_image(io.BytesIO())


def test_directory_points_to_series_reader(tmp_path):
    with pytest.raises(UnreadableImage, match="read_dicom_series"):
        read_image(tmp_path)


def test_random_bytes_are_an_unknown_format(tmp_path):
    rng = np.random.default_rng(99)
    path = tmp_path / "noise.dcm"  # the extension does not make it DICOM
    path.write_bytes(rng.bytes(5000))
    with pytest.raises(UnreadableImage, match="unknown format") as info:
        read_image(path)
    assert info.value.source == str(path)
    for _ in range(20):
        with pytest.raises(UnreadableImage, match="unknown format"):
            read_image(rng.bytes(3000))


def test_gzip_that_is_not_nifti(pydicom_file):
    with pytest.raises(UnreadableImage, match="gzip-compressed data that is not NIfTI"):
        read_image(pydicom_file("zipMR.gz"))
    with pytest.raises(UnreadableImage, match="not NIfTI"):
        read_image(gzip.compress(b"plain text " * 200))


def test_unsupported_argument_type():
    with pytest.raises(UnreadableImage, match="cannot read images from a int"):
        read_image(42)  # type: ignore[arg-type]


def test_text_mode_upload_is_refused(tmp_path):
    path = tmp_path / "note.txt"
    path.write_text("hello")
    with path.open() as handle, pytest.raises(UnreadableImage, match="binary mode"):
        read_image(handle)


def test_named_upload_keeps_its_name(pydicom_file):
    path = pydicom_file("MR_small.dcm")
    with path.open("rb") as handle:
        image = read_image(handle)
    assert image.source == str(path)
    assert image.pixels.shape == (1, 64, 64)


def test_library_errors_are_wrapped(monkeypatch, pydicom_file):
    def explode(*args, **kwargs):
        raise KeyError("internal")

    monkeypatch.setattr("medsight.io.dicom.read_dicom", explode)
    with pytest.raises(UnreadableImage, match="unexpected KeyError") as info:
        read_image(pydicom_file("CT_small.dcm"))
    assert isinstance(info.value.__cause__, KeyError)


def test_declared_size_over_the_voxel_limit_is_too_large(monkeypatch, pydicom_file, tmp_path):
    import nibabel as nib

    from medsight.io import limits

    nifti = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.uint8), np.eye(4)), nifti)
    monkeypatch.setattr(limits, "MAX_VOXELS", 999)
    with pytest.raises(UnreadableImage, match="too large: shape"):
        read_image(pydicom_file("CT_small.dcm"))  # 128 x 128 = 16384 values
    with pytest.raises(UnreadableImage, match="too large: shape"):
        read_image(nifti)  # 1000 values
