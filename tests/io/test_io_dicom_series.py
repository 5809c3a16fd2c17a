"""Series assembly on pydicom's DICOMDIR test tree: grouping, spatial order, spacing, refusals."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pydicom
import pytest

from medsight.errors import UnreadableImage
from medsight.io import group_series, read_dicom_series, read_image


@pytest.fixture
def dicomdir_tree(shared_dicom):
    return shared_dicom("pydicom", "dicomdirtests")


def _files(folder):
    return sorted(p for p in folder.rglob("*") if p.is_file())


def test_group_series_reports_non_image_files(dicomdir_tree):
    skipped = {}
    groups = group_series(
        _files(dicomdir_tree), on_error=lambda path, exc: skipped.update({path.name: exc.reason})
    )
    assert sum(len(files) for files in groups.values()) == 31
    assert set(skipped) == {"DICOMDIR", "README.txt", "SHA256SUMS"}
    assert "no SeriesInstanceUID" in skipped["DICOMDIR"]
    assert skipped["README.txt"] == "not a DICOM file"
    sizes = sorted(len(files) for files in groups.values())
    assert sizes[-2:] == [5, 7]
    for uid, files in groups.items():
        for path in files:
            assert pydicom.dcmread(path, stop_before_pixels=True).SeriesInstanceUID == uid


def test_group_series_raises_without_on_error(dicomdir_tree):
    with pytest.raises(UnreadableImage, match="not a DICOM file") as info:
        group_series([dicomdir_tree / "README.txt"])
    assert info.value.source.endswith("README.txt")


def test_ct_series_is_ordered_by_position_not_by_name(dicomdir_tree):
    files = _files(dicomdir_tree / "98892001" / "CT5N")
    shuffled = files[:]
    random.Random(3).shuffle(shuffled)
    volume = read_dicom_series(shuffled)
    assert volume.pixels.shape == (1, 5, 16, 16)
    headers = {p.name: pydicom.dcmread(p) for p in files}
    z = [
        float(headers[Path(name).name].ImagePositionPatient[2])
        for name in volume.metadata["series_files"]
    ]
    assert z == sorted(z)  # ascending along the normal (0, 0, 1)
    numbers = [
        int(headers[Path(name).name].InstanceNumber) for name in volume.metadata["series_files"]
    ]
    assert numbers == [10, 9, 8, 7, 6]  # positions run opposite to instance numbers here
    assert volume.metadata["slice_order"] == "position"
    assert volume.spacing == pytest.approx((2.5, 0.488281, 0.488281))
    assert volume.origin == pytest.approx((-72.199997, -143.0, -1.2375))
    np.testing.assert_allclose(volume.direction[:, 0], [0, 0, 1])
    assert volume.metadata["irregular_slice_spacing"] is False
    first = read_image(volume.metadata["series_files"][0])
    np.testing.assert_array_equal(volume.pixels[:, 0], first.pixels)
    assert volume.ids.series_uid == first.ids.series_uid
    assert volume.ids.sop_uid is None
    assert volume.modality == "CT"


def test_uneven_gaps_are_flagged(dicomdir_tree):
    volume = read_dicom_series(_files(dicomdir_tree / "77654033" / "CT2"))
    assert volume.pixels.shape == (1, 4, 16, 16)
    assert volume.metadata["irregular_slice_spacing"] is True
    assert volume.spacing[0] == pytest.approx(1.25)


def test_non_parallel_slices_are_refused(dicomdir_tree):
    with pytest.raises(UnreadableImage, match="ImageOrientationPatient .* not one volume"):
        read_dicom_series(_files(dicomdir_tree / "98892003" / "MR700"))


def test_files_of_two_series_are_refused(dicomdir_tree):
    files = _files(dicomdir_tree / "98892001" / "CT5N") + _files(dicomdir_tree / "77654033" / "CT2")
    with pytest.raises(UnreadableImage, match="2 different series"):
        read_dicom_series(files)


def test_different_sizes_are_refused(dicomdir_tree, pydicom_file, tmp_path):
    files = _files(dicomdir_tree / "98892001" / "CT5N")
    ct = pydicom.dcmread(pydicom_file("CT_small.dcm"))  # 128 x 128 while the series is 16 x 16
    ct.SeriesInstanceUID = pydicom.dcmread(files[0]).SeriesInstanceUID
    odd = tmp_path / "odd.dcm"
    ct.save_as(odd)
    with pytest.raises(UnreadableImage, match="rows x columns") as info:
        read_dicom_series([*files, odd])
    assert info.value.source == str(odd)


def _copies(pydicom_file, tmp_path, numbers, *, keep_position):
    """MR_small copies with InstanceNumber `numbers`, pixels scaled by the number."""
    paths = []
    for i, number in enumerate(numbers):
        ds = pydicom.dcmread(pydicom_file("MR_small.dcm"))
        ds.InstanceNumber = number
        ds.SOPInstanceUID = f"{ds.SOPInstanceUID}.{number}"
        ds.PixelData = (ds.pixel_array // 8 * number).astype(ds.pixel_array.dtype).tobytes()
        if not keep_position:
            del ds.ImagePositionPatient
        path = tmp_path / f"slice{i}.dcm"
        ds.save_as(path)
        paths.append(path)
    return paths


def test_instance_number_is_the_fallback_order(pydicom_file, tmp_path):
    paths = _copies(pydicom_file, tmp_path, [3, 1, 2], keep_position=False)
    volume = read_dicom_series(paths)
    assert volume.metadata["slice_order"] == "instance_number"
    base = read_image(pydicom_file("MR_small.dcm")).pixels[0] // 8
    for depth, number in enumerate([1, 2, 3]):
        np.testing.assert_array_equal(volume.pixels[0, depth], base * number)


def test_two_slices_at_one_position_are_refused(pydicom_file, tmp_path):
    paths = _copies(pydicom_file, tmp_path, [1, 2], keep_position=True)
    with pytest.raises(UnreadableImage, match="same position"):
        read_dicom_series(paths)


def test_empty_list_and_missing_file(tmp_path):
    with pytest.raises(UnreadableImage, match="no files"):
        read_dicom_series([])
    with pytest.raises(UnreadableImage, match="file not found"):
        read_dicom_series([tmp_path / "absent.dcm"])
