"""DICOM reading on real files: values, layout, geometry, colour, and every transfer syntax."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.encaps import encapsulate
from pydicom.pixels import apply_color_lut, apply_modality_lut, get_decoder

from medsight.errors import UnreadableImage
from medsight.io import read_image

MR_ENCODINGS = [
    "MR_small_RLE.dcm",
    "MR_small_jpeg_ls_lossless.dcm",
    "MR_small_bigendian.dcm",
    "MR_small_jp2klossless.dcm",
    "MR_small_implicit.dcm",
]


def test_ct_small_is_in_hounsfield_units(pydicom_file):
    path = pydicom_file("CT_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    expected = apply_modality_lut(ds.pixel_array, ds).astype(np.float32)
    assert image.pixels.shape == (1, 128, 128)
    assert image.pixels.dtype == np.float32
    np.testing.assert_array_equal(image.pixels[0], expected)
    assert image.pixels.min() < -800  # air in HU, impossible before the -1024 intercept
    assert image.metadata["rescale_applied"] is True
    assert image.metadata["rescale_intercept"] == -1024.0
    assert image.modality == "CT"
    assert image.photometric == "MONOCHROME2"
    assert image.spacing == pytest.approx((0.661468, 0.661468))
    assert image.origin == pytest.approx((-158.135803, -179.035797, -75.699997))
    # direction columns: row axis runs along the column cosines (0,1,0), column axis along (1,0,0)
    np.testing.assert_allclose(image.direction, [[0, 1, 0], [1, 0, 0], [0, 0, 1]], atol=1e-6)
    assert image.ids.patient_id == str(ds.PatientID)
    assert image.ids.study_uid == ds.StudyInstanceUID
    assert image.ids.series_uid == ds.SeriesInstanceUID
    assert image.ids.sop_uid == ds.SOPInstanceUID
    assert image.metadata["transfer_syntax"] == "1.2.840.10008.1.2.1"
    assert (image.metadata["rows"], image.metadata["columns"]) == (128, 128)
    assert image.metadata["bits_stored"] == 16
    assert image.source == str(path)


@pytest.mark.parametrize("name", MR_ENCODINGS)
def test_mr_small_encodings_decode_to_the_same_pixels(name, pydicom_file):
    reference = read_image(pydicom_file("MR_small.dcm"))
    image = read_image(pydicom_file(name))
    assert image.pixels.shape == (1, 64, 64)
    np.testing.assert_array_equal(image.pixels, reference.pixels)
    assert image.spacing == reference.spacing
    assert image.metadata["transfer_syntax"] != reference.metadata["transfer_syntax"]


def test_window_settings_recorded_not_applied(pydicom_file):
    path = pydicom_file("MR_small.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.metadata["window_center"] == float(ds.WindowCenter)
    assert image.metadata["window_width"] == float(ds.WindowWidth)
    assert isinstance(image.metadata["window_center"], float)
    assert image.metadata["voi_lut_present"] is False
    np.testing.assert_array_equal(image.pixels[0], ds.pixel_array.astype(np.float32))


def test_voi_lut_sequence_is_flagged(shared_dicom):
    image = read_image(shared_dicom("pydicom_data", "vlut_04.dcm"))
    assert image.metadata["voi_lut_present"] is True


def test_modality_lut_sequence_is_applied(shared_dicom):
    path = shared_dicom("pydicom_data", "mlut_18.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.metadata["modality_lut_applied"] is True
    np.testing.assert_array_equal(image.pixels[0], apply_modality_lut(ds.pixel_array, ds))


def test_dcm_qa_ts_nine_transfer_syntaxes_give_identical_pixels(shared_dicom):
    images = [read_image(shared_dicom("dcm_qa_ts", "In", f"{i}.dcm")) for i in range(1, 10)]
    syntaxes = {image.metadata["transfer_syntax"] for image in images}
    assert len(syntaxes) >= 6  # explicit/implicit LE, BE, RLE, JPEG lossless, JPEG-LS, J2K
    for image in images[1:]:
        assert image.pixels.shape == (1, 384, 384)
        np.testing.assert_array_equal(image.pixels, images[0].pixels)
    assert images[0].pixels.max() == 2362  # the value range dcm2niix's reference NIfTI holds


@pytest.mark.parametrize(
    "name",
    [
        "emri_small.dcm",
        "emri_small_RLE.dcm",
        "emri_small_jpeg_2k_lossless.dcm",
        "emri_small_jpeg_ls_lossless.dcm",
    ],
)
def test_multiframe_frames_become_depth(name, shared_dicom):
    path = shared_dicom("pydicom_data", name)
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.pixels.shape == (1, 10, 64, 64)
    assert image.is_volume
    np.testing.assert_array_equal(image.pixels[0], ds.pixel_array.astype(np.float32))
    assert image.spacing[0] == pytest.approx(1.2)  # SpacingBetweenSlices


def test_enhanced_ct_uses_functional_groups(shared_dicom):
    path = shared_dicom("pydicom_data", "eCT_Supplemental.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.pixels.shape == (1, 2, 512, 512)
    # per-frame Pixel Value Transformation: intercept -1024 -> HU
    np.testing.assert_array_equal(image.pixels[0], ds.pixel_array.astype(np.float32) - 1024)
    assert image.spacing[1:] == pytest.approx((0.388672, 0.388672))
    assert image.metadata["slice_spacing_source"] == "ImagePositionPatient"
    positions = [
        np.array(f.PlanePositionSequence[0].ImagePositionPatient, float)
        for f in ds.PerFrameFunctionalGroupsSequence
    ]
    assert image.spacing[0] == pytest.approx(abs(positions[1][2] - positions[0][2]))
    assert image.metadata["window_center"] == 49.0  # from the FrameVOILUTSequence
    assert image.origin == pytest.approx(tuple(positions[0]))


def test_rt_dose_grid_frames_use_grid_frame_offsets(pydicom_file):
    image = read_image(pydicom_file("rtdose.dcm"))
    assert image.pixels.shape == (1, 15, 10, 10)
    assert image.spacing == pytest.approx((5.0, 10.0, 10.0))
    assert image.metadata["dose_grid_scaling"] == pytest.approx(1e-6)


@pytest.mark.parametrize(
    "parts", [("highdicom", "dx_image.dcm"), ("pydicom_data", "RG1_J2KI.dcm")], ids=lambda p: p[1]
)
def test_monochrome1_is_inverted(parts, shared_dicom):
    file = shared_dicom(*parts)
    ds = pydicom.dcmread(file)
    raw = ds.pixel_array.astype(np.float64)
    image = read_image(file)
    out = image.pixels[0].astype(np.float64)
    assert ds.PhotometricInterpretation == "MONOCHROME1"
    assert image.photometric == "MONOCHROME2"
    assert image.metadata["photometric_original"] == "MONOCHROME1"
    assert image.metadata["inverted"] is True
    assert out.flat[np.argmax(raw)] == out.min()  # brightest raw (dense in MONOCHROME1) -> darkest
    assert out.flat[np.argmin(raw)] == out.max()
    pivot = image.metadata["inversion_pivot"]
    assert pivot == 2 ** int(ds.BitsStored) - 1  # unsigned, identity rescale
    np.testing.assert_allclose(out, pivot - raw)
    assert image.metadata["window_center"] == pytest.approx(pivot - float(ds.WindowCenter))


def test_rgb_uncompressed(pydicom_file):
    path = pydicom_file("examples_rgb_color.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.pixels.shape == (3, 240, 320)
    assert image.photometric == "RGB"
    np.testing.assert_array_equal(image.pixels, np.moveaxis(ds.pixel_array, -1, 0))


def test_ybr_jpeg_becomes_rgb(pydicom_file):
    image = read_image(pydicom_file("SC_rgb_jpeg_dcmtk.dcm"))
    assert image.photometric == "RGB"
    assert image.metadata["photometric_original"] == "YBR_FULL"
    # dcmtk's colour bars: red, then green, then blue bands (lossy JPEG: within a few levels)
    np.testing.assert_allclose(image.pixels[:, 5, 50], [255, 0, 0], atol=4)
    np.testing.assert_allclose(image.pixels[:, 25, 50], [0, 255, 0], atol=6)
    np.testing.assert_allclose(image.pixels[:, 45, 50], [0, 0, 255], atol=4)


def test_multiframe_ybr_ultrasound_cine(pydicom_file):
    image = read_image(pydicom_file("examples_ybr_color.dcm"))
    assert image.pixels.shape == (3, 30, 240, 320)
    assert image.photometric == "RGB"
    assert image.metadata["photometric_original"] == "YBR_FULL_422"


@pytest.mark.parametrize(
    ("parts", "original"),
    [
        (("pydicom_data", "US1_J2KI.dcm"), "YBR_ICT"),
        (("pydicom", "examples_jpeg2k.dcm"), "YBR_RCT"),
    ],
    ids=["US1_J2KI", "examples_jpeg2k"],
)
def test_ybr_jpeg2000_ultrasound(parts, original, shared_dicom):
    path = shared_dicom(*parts)
    image = read_image(path)
    assert image.pixels.shape == (3, 480, 640)
    assert image.photometric == "RGB"
    assert image.modality == "US"
    assert image.metadata["photometric_original"] == original
    np.testing.assert_array_equal(
        image.pixels, np.moveaxis(pydicom.dcmread(path).pixel_array, -1, 0)
    )


def test_palette_colour_maps_to_rgb(pydicom_file):
    path = pydicom_file("examples_palette.dcm")
    ds = pydicom.dcmread(path)
    image = read_image(path)
    assert image.pixels.shape == (3, 350, 800)
    assert image.photometric == "RGB"
    expected = np.moveaxis(apply_color_lut(ds.pixel_array, ds), -1, 0) * (255 / 65535)
    np.testing.assert_allclose(image.pixels, expected, rtol=1e-6)
    assert image.pixels.max() <= 255


def test_deflate_transfer_syntax(pydicom_file):
    image = read_image(pydicom_file("image_dfl.dcm"))
    assert image.pixels.shape == (1, 512, 512)
    assert image.metadata["transfer_syntax_name"] == "Deflated Explicit VR Little Endian"


def test_htj2k_when_a_plugin_can(shared_dicom):
    if not get_decoder("1.2.840.10008.1.2.4.203").is_available:
        pytest.skip("no installed plugin decodes HTJ2K")
    image = read_image(shared_dicom("edge_cases", "HTJ2K_08_RGB.dcm"))
    assert image.pixels.shape == (3, 480, 640)
    assert image.photometric == "RGB"


def test_bytes_bytearray_and_bytesio_uploads_match_the_path(pydicom_file):
    path = pydicom_file("CT_small.dcm")
    reference = read_image(path)
    data = path.read_bytes()
    for upload in (data, bytearray(data), io.BytesIO(data)):
        image = read_image(upload)
        np.testing.assert_array_equal(image.pixels, reference.pixels)
        assert image.ids == reference.ids
    assert read_image(data).source == "<bytes>"


def test_dicom_without_preamble_and_file_meta(tmp_path, pydicom_file):
    path = pydicom_file("MR_small.dcm")
    data = path.read_bytes()
    meta_length = int.from_bytes(data[140:144], "little")  # (0002,0000) group length value
    body = data[144 + meta_length :]
    assert body[:2] == b"\x08\x00" and body[128:132] != b"DICM"
    image = read_image(body)
    np.testing.assert_array_equal(image.pixels, read_image(path).pixels)
    assert image.metadata["transfer_syntax"] == "1.2.840.10008.1.2.1"


def test_no_pixel_data_is_named(pydicom_file):
    with pytest.raises(UnreadableImage, match="no pixel data") as info:
        read_image(pydicom_file("rtplan.dcm"))
    assert "RTPLAN" in info.value.reason
    with pytest.raises(UnreadableImage, match="no pixel data .*SR"):
        read_image(pydicom_file("test-SR.dcm"))


def test_truncated_half_file(tmp_path, pydicom_file):
    data = pydicom_file("CT_small.dcm").read_bytes()
    half = tmp_path / "half.dcm"
    half.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImage, match="truncated") as info:
        read_image(half)
    assert info.value.source == str(half)
    cut_in_header = tmp_path / "header.dcm"
    cut_in_header.write_bytes(data[:300])
    with pytest.raises(UnreadableImage, match="truncated"):
        read_image(cut_in_header)


def test_transfer_syntax_without_any_decoder(tmp_path, pydicom_file):
    ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
    ds.PixelData = encapsulate([ds.PixelData])
    ds.file_meta.TransferSyntaxUID = "1.2.840.10008.1.2.4.100"  # MPEG2: pydicom cannot decode it
    target = tmp_path / "mpeg2.dcm"
    ds.save_as(target, enforce_file_format=True)
    with pytest.raises(UnreadableImage, match="unsupported transfer syntax MPEG2") as info:
        read_image(target)
    assert "no pydicom decoder" in info.value.reason


def test_missing_plugin_names_the_package(monkeypatch, pydicom_file):
    class NoPlugin:
        is_available = False
        missing_dependencies = ["pylibjpeg-openjpeg"]

    monkeypatch.setattr("medsight.io.dicom_pixels.get_decoder", lambda uid: NoPlugin())
    with pytest.raises(UnreadableImage, match="no decoder plugin installed") as info:
        read_image(pydicom_file("MR_small_jp2klossless.dcm"))
    assert "pylibjpeg-openjpeg" in info.value.reason
    assert "JPEG 2000" in info.value.reason


EDGE_CASE_REASONS = {
    "ExplVR_BigEndNoMeta.dcm": "no pixel data",
    "JPEG-lossy.dcm": "cannot decode JPEG Extended",
    "JPEG2000-embedded-sequence-delimiter.dcm": "cannot decode JPEG 2000",
    "MR_truncated.dcm": "truncated pixel data",
    "no_meta.dcm": "unknown format",
}


@pytest.mark.parametrize("name", sorted(EDGE_CASE_REASONS))
def test_broken_edge_cases_raise_with_reason(name, shared_dicom):
    path = shared_dicom("edge_cases", name)
    with pytest.raises(UnreadableImage) as info:
        read_image(path)
    assert EDGE_CASE_REASONS[name] in info.value.reason
    assert info.value.source == str(path)


def test_every_edge_case_file_reads_or_raises_unreadable(shared_dicom):
    folder = shared_dicom("edge_cases")
    outcomes = {}
    for path in sorted(folder.iterdir()):
        try:
            outcomes[path.name] = read_image(path).pixels.shape
        except UnreadableImage as exc:
            outcomes[path.name] = exc.reason
    assert outcomes["explicit_VR-UN.dcm"] == (1, 512, 512)
    assert set(EDGE_CASE_REASONS) <= set(outcomes)


def test_explicit_vr_un_ct_is_in_hu(shared_dicom):
    image = read_image(shared_dicom("edge_cases", "explicit_VR-UN.dcm"))
    assert image.modality == "CT"
    assert image.pixels.min() == -1024
