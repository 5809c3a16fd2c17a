"""Hostile inputs in-process: decoder panics and decompression bombs become UnreadableImage, fast."""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
import zipfile
import zlib

import nibabel as nib
import numpy as np
import pytest
from conftest import shared_path

from medsight.errors import UnreadableImage
from medsight.io import limits, read_image, read_npz_image
from medsight.io.dicom_deflate import _dataset_start
from medsight.io.inflate import DEFLATE_WBITS, inflate

_ZEROS_64MB_GZ = gzip.compress(bytes(64 << 20), compresslevel=9)  # ~64 kB


def _mutated_rle() -> bytes:
    """MR_small_RLE.dcm with its second RLE segment offset 0x79c made 0x700: pylibjpeg-rle panics."""
    data = bytearray(shared_path("dicom", "pydicom", "MR_small_RLE.dcm").read_bytes())
    pixel_data = data.find(b"\xe0\x7f\x10\x00")
    frame = data.find(b"\xfe\xff\x00\xe0", data.find(b"\xfe\xff\x00\xe0", pixel_data) + 1)
    header = frame + 8  # after the frame's item tag and length: segment count, then offsets
    assert struct.unpack_from("<III", data, header) == (2, 0x40, 0x79C), "MR_small_RLE.dcm changed"
    data[header + 8] = 0
    return bytes(data)


def test_rust_panic_in_the_rle_decoder_is_unreadable(tmp_path):
    path = tmp_path / "rle.dcm"
    path.write_bytes(_mutated_rle())
    with pytest.raises(UnreadableImage, match="decoder panicked") as info:
        read_image(path)
    assert info.value.source == str(path)
    assert "RLE Lossless" in info.value.reason
    cause = info.value.__cause__
    assert isinstance(cause, BaseException) and not isinstance(cause, Exception)  # a real panic
    assert type(cause).__name__ == "PanicException"


def test_interpreter_control_flow_is_not_swallowed(monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pydicom.pixels.decoders.base.Decoder.as_array", interrupted)
    with pytest.raises(KeyboardInterrupt):
        read_image(shared_path("dicom", "pydicom", "MR_small_RLE.dcm"))


def _nifti_gz_bomb(shape=(2048, 2048, 2048), members=128) -> bytes:
    """A gzip NIfTI of zeros declaring `shape` uint8: header member + `members` x 64 MB of zeros."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(np.uint8)
    return gzip.compress(header.binaryblock + bytes(4)) + _ZEROS_64MB_GZ * members


def _refusal(source) -> tuple[UnreadableImage, float, int]:
    """(error, seconds, peak traced bytes) of reading `source`, which must be refused."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(UnreadableImage) as info:
            read_image(source)
        seconds = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return info.value, seconds, peak


@pytest.mark.parametrize("form", ["bytes", "odd name", ".nii.gz name"])
def test_nifti_gz_bomb_is_refused_at_once_in_bounded_memory(form, tmp_path):
    bomb = _nifti_gz_bomb()  # 8.4 MB of gzip, 8 GiB inflated
    if form == "bytes":
        source = bomb
    else:
        source = tmp_path / ("upload.bin" if form == "odd name" else "bomb.nii.gz")
        source.write_bytes(bomb)
    error, seconds, peak = _refusal(source)
    assert "too large" in error.reason and "(2048, 2048, 2048)" in error.reason
    assert seconds < 0.5
    assert peak < 3 * len(bomb) + (4 << 20)  # the compressed bytes, never the inflated ones


def test_gzip_nifti_inflates_only_what_its_header_declares():
    small = _nifti_gz_bomb(shape=(8, 8, 8), members=0)
    tail = _ZEROS_64MB_GZ * 16  # 1 GiB more of zeros after the image
    start = time.perf_counter()
    image = read_image(gzip.compress(gzip.decompress(small) + bytes(512)) + tail)
    assert time.perf_counter() - start < 0.5
    assert image.pixels.shape == (1, 8, 8, 8)


def test_real_gzip_niftis_read_the_same_from_bytes_and_path():
    for name in ("someones_epi.nii.gz", "example_nifti2.nii.gz", "standard.nii.gz"):
        path = shared_path("nifti", name)
        np.testing.assert_array_equal(read_image(path.read_bytes()).pixels, read_image(path).pixels)


def test_inflate_follows_gzip_members_and_stops_early():
    a, b = b"abc" * 100_000, b"xyz" * 1000
    stream = gzip.compress(a) + gzip.compress(b)
    assert inflate(stream, "s", what="test") == a + b
    assert inflate(stream + bytes(8), "s", what="test") == a + b  # zero padding after the last member
    assert inflate(stream, "s", what="test", want=7) == a[:7]
    with pytest.raises(UnreadableImage, match="truncated test"):
        inflate(stream[:-20], "s", what="test")
    with pytest.raises(UnreadableImage, match="corrupt test"):
        inflate(b"\x1f\x8b\x08\xff" + bytes(20), "s", what="test")


def _deflated_dicom(tail: bytes, *, keep_data_set: bool) -> bytes:
    """image_dfl.dcm's File Meta, then (its own data set and) `tail`, raw-deflated."""
    data = shared_path("dicom", "pydicom", "image_dfl.dcm").read_bytes()
    start = _dataset_start(data)
    body = zlib.decompress(data[start:], DEFLATE_WBITS) if keep_data_set else b""
    engine = zlib.compressobj(9, zlib.DEFLATED, DEFLATE_WBITS)
    return data[:start] + engine.compress(body + tail) + engine.flush()


def test_deflated_dicom_may_not_inflate_far_past_its_declared_image(monkeypatch):
    from medsight.io import dicom_deflate

    monkeypatch.setattr(dicom_deflate, "HEADER_ROOM", 1 << 20)
    assert read_image(_deflated_dicom(b"", keep_data_set=True)).pixels.shape == (1, 512, 512)
    error, _, peak = _refusal(_deflated_dicom(bytes(16 << 20), keep_data_set=True))
    assert error.reason == (
        f"too large: deflated DICOM data set inflates to more than the {512 * 512 + (1 << 20)} bytes "
        "its header allows"
    )
    assert peak < 8 << 20


def test_deflated_dicom_bomb_is_refused_at_the_absolute_limit(monkeypatch):
    monkeypatch.setattr(limits, "MAX_INFLATED_BYTES", 4 << 20)
    real = shared_path("dicom", "pydicom", "image_dfl.dcm")
    assert read_image(real).pixels.shape == (1, 512, 512)  # 262 kB inflated: within the limit
    error, _, peak = _refusal(_deflated_dicom(bytes(16 << 20), keep_data_set=False))
    assert "too large: deflated DICOM data set inflates to more than medsight.io.limits" in error.reason
    assert peak < 8 << 20


def _npz(path, arrays: dict[str, np.ndarray]):
    np.savez_compressed(path, **arrays)
    return path


def test_zip_with_too_many_members_is_refused(monkeypatch, tmp_path):
    archive = _npz(tmp_path / "many.npz", {f"a{i}_images": np.zeros((1, 4, 4)) for i in range(5)})
    monkeypatch.setattr(limits, "MAX_ZIP_MEMBERS", 4)
    with pytest.raises(UnreadableImage, match="too many zip members: 5"):
        read_npz_image(archive, "a0_images", 0)


def test_zip_member_declaring_too_much_is_refused_before_inflating(monkeypatch, tmp_path):
    archive = _npz(tmp_path / "big.npz", {"train_images": np.zeros((64, 64, 64), np.uint8)})
    monkeypatch.setattr(limits, "MAX_INFLATED_BYTES", 100_000)
    with pytest.raises(UnreadableImage, match="too large: zip member 'train_images.npy'"):
        read_npz_image(archive, "train_images", 0)


def test_zip_member_lying_about_its_size_streams_no_more_than_declared(tmp_path):
    """A central directory that understates a member: zipfile stops at the declared size."""
    archive = _npz(tmp_path / "lie.npz", {"train_images": np.zeros((256, 256, 256), np.uint8)})
    data = bytearray(archive.read_bytes())
    with zipfile.ZipFile(archive) as zf:
        info = zf.getinfo("train_images.npy")
    central = data.rfind(b"PK\x01\x02")
    struct.pack_into("<I", data, central + 24, 1000)  # uncompressed size in the central directory
    archive.write_bytes(bytes(data))
    tracemalloc.start()
    try:
        with pytest.raises(UnreadableImage):
            read_npz_image(archive, "train_images", 0)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert info.file_size == 256**3 + 128
    assert peak < 32 << 20  # the 16 MiB array was never inflated whole


def test_unknown_vr_read_lazily_is_a_corrupt_header():
    data = bytearray(shared_path("dicom", "pydicom", "CT_small.dcm").read_bytes())
    tag = data.find(b"\x08\x00\x90\x10")  # (0008,1090) Manufacturer's Model Name, explicit VR
    assert data[tag + 4 : tag + 6] == b"LO"
    data[tag + 4 : tag + 6] = b"LA"
    with pytest.raises(UnreadableImage, match="corrupt DICOM header: NotImplementedError"):
        read_image(bytes(data))


def test_unknown_nifti_datatype_is_corrupt():
    raw = bytearray(gzip.decompress(shared_path("nifti", "standard.nii.gz").read_bytes()))
    struct.pack_into("<h", raw, 70, -254)  # datatype code
    with pytest.raises(UnreadableImage, match="corrupt NIfTI"):
        read_image(gzip.compress(bytes(raw)))
