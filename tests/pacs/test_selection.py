"""Series selection rules and the watcher's YAML, on the headers of the real CT slices."""

from __future__ import annotations

import pydicom
import pytest

from medsight.errors import InvalidConfig
from medsight.pacs.selection import orientation_of, select
from medsight.pacs.watch_config import Rules, WatchConfig


@pytest.fixture
def headers(ct_files):
    """Five real ORIGINAL chest slices (one of the first six, 002, is DERIVED and LUNG)."""
    read = [pydicom.dcmread(f, stop_before_pixels=True) for f in ct_files[:6]]
    return [h for h in read if h.ImageType[0] == "ORIGINAL"]


def _series(h, **extra):
    return {"Modality": h.Modality, "BodyPartExamined": h.get("BodyPartExamined"), **extra}


def test_real_ct_headers_match_a_chest_ct_axial_rule(headers):
    rules = Rules(modality=["ct"], body_part=["CHEST"], image_type=["ORIGINAL", "PRIMARY"],
                  orientation="axial", min_slices=5, max_slices=5)
    assert select(rules, _series(headers[0]), headers) == (True, "matches")


def test_a_real_derived_slice_is_refused(ct_files):
    h = pydicom.dcmread(ct_files[2], stop_before_pixels=True)
    assert select(Rules(image_type=["ORIGINAL"]), _series(h), [h]) == (
        False, "image type DERIVED/PRIMARY/AXIAL/CT_SOM5 SPI lacks ORIGINAL")
    assert select(Rules(body_part=["CHEST"]), _series(h), [h]) == (False, "body part LUNG not in [CHEST]")


def test_each_rule_says_why_it_refuses(headers):
    h = headers[0]
    assert select(Rules(modality=["MR"]), _series(h), headers) == (False, "modality CT not in [MR]")
    assert select(Rules(body_part=["HEAD", "BRAIN"]), _series(h), headers) == (
        False, "body part CHEST not in [HEAD, BRAIN]")
    assert select(Rules(min_slices=6), _series(h), headers) == (False, "5 slices < min_slices 6")
    assert select(Rules(max_slices=3), _series(h), headers[:4]) == (False, "4 slices > max_slices 3")
    ok, why = select(Rules(series_description="^LUNG"), _series(h, SeriesDescription="abdomen"), headers)
    assert not ok and "'abdomen' does not match '^LUNG'" in why
    derived = [pydicom.Dataset(x) for x in headers]
    derived[2].ImageType = ["DERIVED", "SECONDARY"]
    assert select(Rules(image_type=["ORIGINAL", "PRIMARY"]), _series(h), derived) == (
        False, "image type DERIVED/SECONDARY lacks ORIGINAL, PRIMARY")
    sagittal = [pydicom.Dataset(x) for x in headers]
    sagittal[0].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    assert select(Rules(orientation="axial"), _series(h), sagittal) == (
        False, "orientation sagittal, rule wants axial")


def test_reports_and_medsight_results_are_never_inputs(headers):
    h = pydicom.Dataset(headers[0])
    h.Manufacturer = "medsight"
    assert select(Rules(), _series(h), [h]) == (False, "medsight's own result")
    sr = {"SOPClassUID": "1.2.840.10008.5.1.4.1.1.88.33", "Modality": "SR"}
    assert select(Rules(), sr, [sr]) == (False, "a structured report, not images")


def test_slice_count_from_qido_when_no_headers():
    assert select(Rules(min_slices=3), {"Modality": "CT", "NumberOfSeriesRelatedInstances": 2}) == (
        False, "2 slices < min_slices 3")


def test_orientation_tolerance():
    assert orientation_of([1, 0, 0, 0, 1, 0]) == "axial"
    assert orientation_of([1, 0, 0, 0, 0, -1]) == "coronal"
    tilt = [1, 0, 0, 0, 0.94, 0.342]  # 20 degrees off axial
    assert orientation_of(tilt, 25) == "axial"
    assert orientation_of(tilt, 15) == "oblique"
    assert orientation_of(None) == "unknown"


def test_config_errors_name_the_key(tmp_path):
    base = {"pacs": {"url": "http://pacs/dicom-web"}, "models": [{"model": "m"}]}
    cfg = WatchConfig.of(base)
    assert cfg.watch.max_attempts == 3 and cfg.writes(cfg.models[0]) == ["sr", "sc"]
    assert cfg.study_url("1.2") == "http://pacs/dicom-web/studies/1.2"
    for bad, key in (({"watch": {"pol_s": 1}}, "watch.pol_s"),
                     ({"models": [{"model": "m", "rules": {"orientation": "oblique"}}]},
                      "models.0.rules.orientation"),
                     ({"models": [{"model": "m", "rules": {"min_slices": 5, "max_slices": 2}}]},
                      "max_slices 2 < min_slices 5"),
                     ({"pacs": {"url": "ftp://x"}}, "pacs.url"),
                     ({"watch": {"write": ["pdf"]}}, "watch.write.0")):
        with pytest.raises(InvalidConfig, match=key.replace(".", r"\.")):
            WatchConfig.of({**base, **bad})
    path = tmp_path / "w.yaml"
    path.write_text("pacs: {url: 'http://pacs/dicom-web'}\nwatch: {viewer_url: 'http://v/?s={study_uid}'}\n"
                    "models: [{model: m, write: [sr]}]\n")
    cfg = WatchConfig.from_yaml(path)
    assert cfg.study_url("9") == "http://v/?s=9" and cfg.writes(cfg.models[0]) == ["sr"]
