"""The DICOM results medsight writes back: a Comprehensive SR and a Secondary Capture built from real
predictions on real CT slices, read back (bytes, pydicom, highdicom, dcmtk, and through the real
Orthanc) and checked; a tampered value is caught."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
from PIL import Image
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from medsight.deploy import Predictor
from medsight.deploy.prediction import Prediction
from medsight.errors import PacsError
from medsight.pacs.result_check import check_sc, check_sr
from medsight.pacs.sc import build_sc, overlay_for, patient_orientation
from medsight.pacs.sr import Finding, build_sr, device_uid
from medsight.pacs.uids import result_uid

MODEL = {"name": "ct-contrast", "version": "1.0.0", "uuid": "eaded31c-c001-4fd5-8b12-69b6bb5dca60"}


def _bytes(ds: pydicom.Dataset) -> bytes:
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


def _reread(ds: pydicom.Dataset) -> pydicom.Dataset:
    return pydicom.dcmread(io.BytesIO(_bytes(ds)))


def _header(path: Path) -> pydicom.Dataset:
    return pydicom.dcmread(path, stop_before_pixels=True)


@pytest.fixture(scope="module")
def predicted(ct_bundle: Path, ct_files: list[Path]) -> tuple[list[Path], list[Prediction]]:
    files = ct_files[:2]
    predictor = Predictor(ct_bundle)
    return files, [predictor.predict(f, heatmap=True) for f in files]


def _sr(findings: list[Finding], tag: str = "sr") -> pydicom.Dataset:
    return build_sr(findings, series_uid=result_uid(tag, "series"), instance_uid=result_uid(tag, "sop"))


def test_result_uids_are_valid_and_repeatable() -> None:
    a, b = result_uid("pacs", "1.2.3", "model", "sr"), result_uid("pacs", "1.2.3", "model", "sc")
    assert a == result_uid("pacs", "1.2.3", "model", "sr") and a != b
    assert a.startswith("2.25.") and len(a) <= 64 and pydicom.uid.UID(a).is_valid


def test_sr_of_a_real_prediction_says_what_the_model_found(predicted) -> None:
    files, preds = predicted
    source = _header(files[0])
    finding = Finding([source], preds[0])
    back = _reread(_sr([finding]))
    assert back.SOPClassUID == ComprehensiveSRStorage
    assert back.VerificationFlag == "UNVERIFIED" and back.CompletionFlag == "COMPLETE"
    assert "NOT FOR DIAGNOSTIC USE" in back.SeriesDescription and "ct-contrast" in back.SeriesDescription
    for key in ("PatientID", "PatientName", "StudyInstanceUID", "StudyDate", "AccessionNumber"):
        assert back.get(key) == source.get(key), key
    assert back.SeriesInstanceUID != source.SeriesInstanceUID
    (ours,) = [e for e in back.ContributingEquipmentSequence if e.Manufacturer == "medsight"]
    assert (ours.Manufacturer, ours.ManufacturerModelName, ours.SoftwareVersions) == (
        "medsight", "ct-contrast", "1.0.0")
    uuid_int = int(preds[0].model["uuid"].replace("-", ""), 16)
    assert ours.DeviceUID == device_uid(preds[0].model) == f"2.25.{uuid_int}"
    check_sr(back, [finding])
    # highdicom's own reading: one TID 1501 group per finding, the numbers and the decision
    report = hd.sr.ComprehensiveSR.from_dataset(back).content
    (group,) = report.get_image_measurement_groups()
    probs = {m.name.meaning: m.value for m in group.get_measurements()}
    for cls, p in preds[0].probabilities.items():
        assert float(probs[f"Probability of {cls}"]) == pytest.approx(p, abs=1e-6)
    assert float(probs["Decision threshold"]) == pytest.approx(preds[0].threshold, abs=1e-6)
    (decision,) = group.get_qualitative_evaluations()
    assert decision.value.meaning == preds[0].label
    assert [str(s.referenced_sop_instance_uid) for s in group.source_images] == [source.SOPInstanceUID]
    device = report.get_observer_contexts(observer_type=pydicom.sr.codedict.codes.DCM.Device)
    assert device and str(device[0].observer_identifying_attributes[0].value) == device_uid(preds[0].model)


def test_one_finding_per_instance_and_a_volume_finding_references_every_slice(predicted) -> None:
    files, preds = predicted
    sources = [_header(f) for f in files]
    # give both slices one study, as a series' instances have
    sources[1].StudyInstanceUID = sources[0].StudyInstanceUID
    per_image = [Finding([s], p) for s, p in zip(sources, preds, strict=True)]
    back = _reread(_sr(per_image))
    check_sr(back, per_image)
    groups = hd.sr.ComprehensiveSR.from_dataset(back).content.get_image_measurement_groups()
    assert len(groups) == 2
    volume = [Finding(sources, preds[0])]
    back = _reread(_sr(volume, "volume"))
    check_sr(back, volume)
    (group,) = hd.sr.ComprehensiveSR.from_dataset(back).content.get_image_measurement_groups()
    assert {str(s.referenced_sop_instance_uid) for s in group.source_images} == {
        s.SOPInstanceUID for s in sources}


def test_an_sr_over_two_studies_is_refused(predicted) -> None:
    files, preds = predicted
    a, b = _header(files[0]), _header(files[1])
    assert a.StudyInstanceUID != b.StudyInstanceUID
    with pytest.raises(PacsError, match="2 studies"):
        _sr([Finding([a], preds[0]), Finding([b], preds[1])])


def test_detector_boxes_become_scoord_regions_on_the_source_image(ct_files) -> None:
    source = _header(ct_files[0])
    boxes = [{"label": "nodule", "score": 0.91, "box": [10.5, 20.0, 50.0, 64.25]},
             {"label": "nodule", "score": 0.62, "box": [100.0, 120.0, 150.0, 160.0]},
             {"label": "mass", "score": 0.7, "box": [200.0, 210.0, 300.0, 330.0]},
             {"label": "mass", "score": 0.2, "box": [1.0, 2.0, 3.0, 4.0]}]  # below the threshold
    pred = Prediction(source="x", probabilities={}, label="2 nodule, 1 mass", confidence=0.91,
                      threshold=0.5, boxes=boxes, counts={"nodule": 2, "mass": 1}, model=MODEL)
    finding = Finding([source], pred)
    back = _reread(_sr([finding], "det"))
    check_sr(back, [finding])
    report = hd.sr.ComprehensiveSR.from_dataset(back).content
    rois = report.get_planar_roi_measurement_groups()
    assert len(rois) == 3  # the counted boxes only
    for roi, box in zip(rois, boxes[:3], strict=True):
        x1, y1, x2, y2 = box["box"]
        assert roi.reference_type == pydicom.sr.codedict.codes.DCM.ImageRegion
        assert roi.roi.graphic_type == hd.sr.GraphicTypeValues.POLYLINE
        np.testing.assert_allclose(roi.roi.value, [[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]])
        (image,) = roi.roi.ContentSequence
        assert image.ReferencedSOPSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
        assert roi.finding_type.meaning == box["label"]
        (score,) = roi.get_measurements()
        assert float(score.value) == pytest.approx(box["score"])
    (summary,) = report.get_image_measurement_groups()
    counts = {m.name.meaning: float(m.value) for m in summary.get_measurements()}
    assert counts["Count of nodule"] == 2 and counts["Count of mass"] == 1


def test_a_tampered_result_is_caught(predicted) -> None:
    files, preds = predicted
    source = _header(files[0])
    finding = Finding([source], preds[0])
    ds = _reread(_sr([finding]))
    # change a probability in the content tree, as a PACS rewriting values would
    def num_items(items):
        for item in items:
            if item.ValueType == "NUM" and item.ConceptNameCodeSequence[0].CodeValue == "PROB-0":
                yield item
            yield from num_items(item.get("ContentSequence", []))

    (item,) = num_items(ds.ContentSequence)
    item.MeasuredValueSequence[0].NumericValue = "0.123456"
    item.MeasuredValueSequence[0].FloatingPointValue = 0.123456
    with pytest.raises(PacsError, match="reads"):
        check_sr(ds, [finding])
    ds = _reread(_sr([finding]))
    ds.VerificationFlag = "VERIFIED"
    with pytest.raises(PacsError, match="UNVERIFIED"):
        check_sr(ds, [finding])


def test_secondary_capture_of_the_heatmap(predicted) -> None:
    files, preds = predicted
    source = _header(files[0])
    png = overlay_for(preds[0])
    sc = build_sc(source, png, series_uid=result_uid("sc", "series"),
                  instance_uid=result_uid("sc", "sop"), model=preds[0].model)
    back = _reread(sc)
    check_sc(back, source)
    assert back.SOPClassUID == SecondaryCaptureImageStorage and back.BurnedInAnnotation == "YES"
    assert back.PhotometricInterpretation == "RGB" and back.SamplesPerPixel == 3
    assert "NOT FOR DIAGNOSTIC USE" in back.SeriesDescription
    assert list(back.PatientOrientation) == ["L", "P"] == list(patient_orientation(source))
    np.testing.assert_array_equal(back.pixel_array, np.asarray(Image.open(io.BytesIO(png)).convert("RGB")))
    assert back.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    other = _header(files[1])
    with pytest.raises(PacsError, match="reference its source"):
        check_sc(back, other)


def test_a_prediction_without_a_picture_is_refused_clearly(predicted, ct_bundle, ct_files) -> None:
    plain = Predictor(ct_bundle).predict(ct_files[0])
    with pytest.raises(PacsError, match="heatmap=True"):
        overlay_for(plain)


@pytest.mark.skipif(shutil.which("dsrdump") is None, reason="dcmtk's dsrdump not installed "
                    "(Debian's dcmtk comes with `make system-deps`' orthanc)")
def test_dcmtk_reads_the_sr(predicted, tmp_path) -> None:
    files, preds = predicted
    path = tmp_path / "sr.dcm"
    path.write_bytes(_bytes(_sr([Finding([_header(files[0])], preds[0])])))
    done = subprocess.run(["dsrdump", "-Ee", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "Comprehensive SR" in done.stdout and "Imaging Measurement Report" in done.stdout
    assert "UNVERIFIED" in done.stdout.upper()


def test_round_trip_through_orthanc(orthanc, predicted) -> None:
    files, preds = predicted
    orthanc.upload([files[0]])
    source = _header(files[0])
    finding = Finding([source], preds[0])
    sr = _sr([finding])
    sc = build_sc(source, overlay_for(preds[0]), series_uid=result_uid("sc", "series"),
                  instance_uid=result_uid("sc", "sop"), model=preds[0].model)
    ids = orthanc.upload([_bytes(sr), _bytes(sc)])
    sr_back = pydicom.dcmread(io.BytesIO(orthanc.http.get(f"/instances/{ids[0]}/file").content))
    sc_back = pydicom.dcmread(io.BytesIO(orthanc.http.get(f"/instances/{ids[1]}/file").content))
    check_sr(sr_back, [finding])
    check_sc(sc_back, source)
    # filed in the source's study, in their own series
    tags = [orthanc.instance_tags(i) for i in ids]
    assert {t["StudyInstanceUID"] for t in tags} == {source.StudyInstanceUID}
    assert len({t["SeriesInstanceUID"] for t in tags} | {source.SeriesInstanceUID}) == 3
    # written again (a retry): replaced, not added
    orthanc.upload([_bytes(sr)])
    assert len(orthanc.instances()) == 3


def test_stow_and_wado_of_built_results(orthanc, predicted) -> None:
    """Built in memory (no preamble), stored over STOW-RS, they come back whole over WADO-RS."""
    from medsight.pacs import open_pacs

    files, preds = predicted
    orthanc.upload([files[0]])
    source = _header(files[0])
    finding = Finding([source], preds[0])
    sr = _sr([finding], "stow")
    sr.preamble = None  # as a dataset built in memory without one
    pacs = open_pacs(orthanc.config())
    try:
        pacs.store([sr])
        (back,) = pacs.retrieve(source.StudyInstanceUID, sr.SeriesInstanceUID, sr.SOPInstanceUID)
    finally:
        pacs.close()
    check_sr(back, [finding])
    assert getattr(sr, "preamble", None) is None  # the caller's dataset is left as it was


def test_no_patient_name_reaches_warnings_or_logs(predicted, recwarn) -> None:
    """highdicom warns about odd person names by quoting them; building results must not."""
    files, preds = predicted
    source = _header(files[0])
    _sr([Finding([source], preds[0])], "quiet")
    build_sc(source, overlay_for(preds[0]), series_uid=result_uid("q", "series"),
             instance_uid=result_uid("q", "sop"), model=preds[0].model)
    said = " ".join(str(w.message) for w in recwarn.list)
    assert str(source.PatientName) not in said and str(source.PatientID) not in said


def test_a_stored_prediction_comes_back_whole(predicted) -> None:
    """The watcher rebuilds the SR of a series cut short from the predictions it stored."""
    _, preds = predicted
    stored = preds[0].to_dict()
    again = Prediction.from_dict(stored)
    assert again.to_dict() == stored and again.heatmap is None
