"""`build_sr`: a model's findings as a DICOM Comprehensive SR (TID 1500 measurement report, built
with highdicom) that radiology viewers show beside the images: the decision, each class's
probability, the threshold, a detector's boxes as SCOORD regions on the source image, the model
as the observing device, UNVERIFIED and labelled not for diagnostic use."""

from __future__ import annotations

import uuid as uuid_lib
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from pydicom import Dataset
from pydicom.sr.codedict import codes

from medsight.deploy.prediction import Prediction
from medsight.errors import PacsError
from medsight.pacs.uids import result_uid

__all__ = ["CODING_SCHEME", "DEFAULT_SR_SERIES_NUMBER", "Finding", "build_sr", "class_code",
           "device_uid", "no_names_in_warnings", "not_for_diagnosis"]

CODING_SCHEME = "99MEDSIGHT"  # private coding scheme for the model's classes and values
DEFAULT_SR_SERIES_NUMBER = 9901
UNITY = hd.sr.CodedConcept("1", "UCUM", "no units")
COUNT_UNIT = hd.sr.CodedConcept("{count}", "UCUM", "count")
DECISION = hd.sr.CodedConcept("DECISION", CODING_SCHEME, "Model decision")
THRESHOLD = hd.sr.CodedConcept("THRESHOLD", CODING_SCHEME, "Decision threshold")
SCORE = hd.sr.CodedConcept("SCORE", CODING_SCHEME, "Detection score")
NO_FINDING = hd.sr.CodedConcept("NONE", CODING_SCHEME, "No class at or above the threshold")
COMMENT = hd.sr.CodedConcept("121106", "DCM", "Comment")
IMAGING = hd.sr.CodedConcept("363679005", "SCT", "Imaging")


@dataclass
class Finding:
    """One prediction and the images it is about: one image for a 2D model, the series for a
    volume model (header-only datasets are enough)."""

    sources: list[Dataset]
    prediction: Prediction


@contextmanager
def no_names_in_warnings() -> Iterator[None]:
    """highdicom warns about a person name it finds oddly formed, quoting it: a patient's name
    must not reach the logs that way, so that warning is silenced while results are built."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*unlikely to represent the intended person name")
        yield


def _meaning(text: str) -> str:
    return text if len(text) <= 64 else text[:61] + "..."


def class_code(index: int, name: str) -> hd.sr.CodedConcept:
    """The code of a model's class: ``CLASS-<index>`` in medsight's private scheme, its name as
    the meaning (CodeMeaning holds 64 characters)."""
    return hd.sr.CodedConcept(f"CLASS-{index}", CODING_SCHEME, _meaning(name))


def probability_code(index: int, name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(f"PROB-{index}", CODING_SCHEME, _meaning(f"Probability of {name}"))


def count_code(index: int, name: str) -> hd.sr.CodedConcept:
    return hd.sr.CodedConcept(f"COUNT-{index}", CODING_SCHEME, _meaning(f"Count of {name}"))


def device_uid(model: dict) -> str:
    """The model's UID as a device: its bundle UUID as a 2.25 UID (a derived one otherwise)."""
    raw = str(model.get("uuid") or "")
    try:
        return f"2.25.{uuid_lib.UUID(raw).int}"
    except ValueError:
        return result_uid("model", model.get("name"), model.get("version"), raw)


def not_for_diagnosis(model: dict, what: str) -> str:
    """A series description (64 characters at most) that says whose result it is and that it
    is not for diagnostic use."""
    tail = f" {what} - AI, NOT FOR DIAGNOSTIC USE"
    head = f"medsight {model.get('name', 'model')} {model.get('version', '')}".strip()
    return head[:max(0, 64 - len(tail))] + tail


def _decision_codes(pred: Prediction, classes: list[str]) -> list[hd.sr.CodedConcept]:
    if pred.is_detection:
        return []
    names = [n for n in pred.label.split("+") if n] if "+" in pred.label or not pred.label else [pred.label]
    if not names:
        return [NO_FINDING]
    return [class_code(classes.index(n), n) if n in classes else
            hd.sr.CodedConcept("LABEL", CODING_SCHEME, _meaning(n)) for n in names]


def _comments(pred: Prediction) -> list[hd.sr.TextContentItem]:
    return [hd.sr.TextContentItem(name=COMMENT, value=w[:1024],
                                  relationship_type=hd.sr.RelationshipTypeValues.HAS_PROPERTIES)
            for w in pred.warnings]


def _group(i: int, finding: Finding, algorithm: hd.sr.AlgorithmIdentification,
           tracking_root: str) -> list:
    pred = finding.prediction
    tracking = hd.sr.TrackingIdentifier(uid=result_uid(tracking_root, i), identifier=f"finding {i + 1}")
    sources = [hd.sr.SourceImageForMeasurementGroup.from_source_image(s) for s in finding.sources]
    if pred.is_detection:
        return _detection_groups(i, finding, algorithm, tracking_root, tracking, sources)
    classes = list(pred.probabilities)
    decisions = _decision_codes(pred, classes)
    measurements = [hd.sr.Measurement(name=probability_code(k, c), value=float(p), unit=UNITY,
                                      algorithm_id=algorithm)
                    for k, (c, p) in enumerate(pred.probabilities.items())]
    if pred.threshold is not None:
        measurements.append(hd.sr.Measurement(name=THRESHOLD, value=float(pred.threshold), unit=UNITY,
                                              algorithm_id=algorithm))
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, finding_type=decisions[0], algorithm_id=algorithm,
        measurements=measurements,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(DECISION, d) for d in decisions],
        source_images=sources)
    group[0].ContentSequence.extend(_comments(pred))
    return [group]


def _detection_groups(i: int, finding: Finding, algorithm: hd.sr.AlgorithmIdentification,
                      tracking_root: str, tracking: hd.sr.TrackingIdentifier,
                      sources: list) -> list:
    pred = finding.prediction
    if len(finding.sources) != 1:
        raise PacsError("a detector's boxes lie on one image: give its finding one source")
    classes = list(pred.counts or {})
    threshold = float(pred.threshold if pred.threshold is not None else 0.0)
    counts = [hd.sr.Measurement(name=count_code(k, c), value=float(n), unit=COUNT_UNIT,
                                algorithm_id=algorithm)
              for k, (c, n) in enumerate((pred.counts or {}).items())]
    counts.append(hd.sr.Measurement(name=THRESHOLD, value=threshold, unit=UNITY, algorithm_id=algorithm))
    summary = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=tracking, algorithm_id=algorithm, measurements=counts,
        source_images=sources)
    summary[0].ContentSequence.extend(_comments(pred))
    out: list = [summary]
    region_source = hd.sr.SourceImageForRegion.from_source_image(finding.sources[0])
    counted = [b for b in pred.boxes or [] if float(b["score"]) >= threshold]
    for j, b in enumerate(counted):
        x1, y1, x2, y2 = (float(v) for v in b["box"])
        corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]], dtype=float)
        region = hd.sr.ImageRegion(graphic_type=hd.sr.GraphicTypeValues.POLYLINE,
                                   graphic_data=corners, source_image=region_source)
        k = classes.index(b["label"]) if b["label"] in classes else -1
        code = class_code(k, b["label"]) if k >= 0 else hd.sr.CodedConcept(
            "LABEL", CODING_SCHEME, _meaning(str(b["label"])))
        out.append(hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(
            tracking_identifier=hd.sr.TrackingIdentifier(
                uid=result_uid(tracking_root, i, "box", j), identifier=f"finding {i + 1} box {j + 1}"),
            referenced_region=region, finding_type=code, algorithm_id=algorithm,
            measurements=[hd.sr.Measurement(name=SCORE, value=float(b["score"]), unit=UNITY,
                                            algorithm_id=algorithm)]))
    return out


def build_sr(findings: Sequence[Finding], *, series_uid: str, instance_uid: str,
             series_number: int = DEFAULT_SR_SERIES_NUMBER, instance_number: int = 1,
             institution: str | None = None) -> Dataset:
    """The Comprehensive SR of `findings` (all from one study and one model), in the sources' study."""
    if not findings or not all(f.sources for f in findings):
        raise PacsError("an SR needs at least one finding, each with its source images")
    sources = [s for f in findings for s in f.sources]
    studies = {str(s.StudyInstanceUID) for s in sources}
    if len(studies) != 1:
        raise PacsError(f"the findings come from {len(studies)} studies; an SR reports on one")
    model = dict(findings[0].prediction.model or {})
    name, version = str(model.get("name") or "model"), str(model.get("version") or "unknown")
    algorithm = hd.sr.AlgorithmIdentification(name=_meaning(name), version=_meaning(version))
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=device_uid(model), name=_meaning(name), manufacturer_name="medsight",
        model_name=_meaning(name))
    context = hd.sr.ObservationContext(observer_device_context=hd.sr.ObserverContext(
        observer_type=codes.DCM.Device, observer_identifying_attributes=device))
    groups = []
    for i, f in enumerate(findings):
        groups.extend(_group(i, f, algorithm, instance_uid))
    report = hd.sr.MeasurementReport(observation_context=context, procedure_reported=IMAGING,
                                     imaging_measurements=groups,
                                     title=codes.DCM.ImagingMeasurementReport)
    equipment = hd.ContributingEquipment(
        manufacturer="medsight", purpose_of_reference=codes.DCM.ProcessingEquipment,
        manufacturer_model_name=_meaning(name), software_versions=_meaning(version),
        contribution_description="AI model inference; not verified by a clinician")
    with no_names_in_warnings():
        sr = hd.sr.ComprehensiveSR(
            evidence=sources, content=report[0], series_instance_uid=series_uid,
            series_number=series_number, sop_instance_uid=instance_uid,
            instance_number=instance_number, manufacturer="medsight", is_complete=True,
            is_verified=False, institution_name=institution,
            series_description=not_for_diagnosis(model, "SR"), contributing_equipment=[equipment])
    for item in sr.ContributingEquipmentSequence:  # highdicom adds its own and the source's too
        if item.Manufacturer == "medsight":
            item.DeviceUID = device_uid(model)
    return sr
