"""sniff_format names formats by their bytes, never by the file name."""

from __future__ import annotations

import gzip
import io

import nibabel as nib
import numpy as np
import pytest
from PIL import Image as PILImage

from medsight.io import sniff_format


def _pil_bytes(fmt: str) -> bytes:
    buffer = io.BytesIO()
    PILImage.fromarray(np.zeros((4, 4), np.uint8)).save(buffer, fmt)
    return buffer.getvalue()


def _nifti_bytes(klass: type) -> bytes:
    return klass(np.zeros((2, 3, 4), np.int16), np.eye(4)).to_bytes()


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (lambda: _pil_bytes("PNG"), "png"),
        (lambda: _pil_bytes("JPEG"), "jpeg"),
        (lambda: _pil_bytes("TIFF"), "tiff"),
        (lambda: _nifti_bytes(nib.Nifti1Image), "nifti"),
        (lambda: _nifti_bytes(nib.Nifti2Image), "nifti"),
        (lambda: gzip.compress(_nifti_bytes(nib.Nifti1Image)), "nifti"),
        (lambda: gzip.compress(_nifti_bytes(nib.Nifti2Image)), "nifti"),
    ],
)
def test_signatures(make, expected):
    assert sniff_format(make()[:1024]) == expected


def test_npz_is_a_zip(tmp_path):
    np.savez_compressed(tmp_path / "a.npz", x=np.zeros(3))
    assert sniff_format((tmp_path / "a.npz").read_bytes()[:1024]) == "npz"


def test_dicom_with_preamble_even_when_the_preamble_looks_like_tiff(pydicom_file, shared_dicom):
    head = shared_dicom("edge_cases", "MR_truncated.dcm").read_bytes()[:1024]
    assert head.startswith(b"II*\x00")  # this file's preamble is a TIFF header
    assert sniff_format(head) == "dicom"
    assert sniff_format(pydicom_file("CT_small.dcm").read_bytes()[:1024]) == "dicom"


def test_dicom_without_preamble_or_file_meta(pydicom_file):
    head = pydicom_file("ExplVR_BigEndNoMeta.dcm").read_bytes()[:1024]
    assert head[128:132] != b"DICM"
    assert sniff_format(head) == "dicom"


def test_random_bytes_and_gzip_of_other_content_are_unknown():
    rng = np.random.default_rng(1234)
    assert all(sniff_format(rng.bytes(1024)) is None for _ in range(500))
    assert sniff_format(gzip.compress(b"hello world" * 100)) is None
    assert sniff_format(b"") is None
    assert sniff_format(b"\x89PN") is None
