"""`check_sr` / `check_sc`: what the PACS gives back after a write is checked against what was
meant (SOP class, study, source references, the values, UNVERIFIED, the model), because a PACS may
alter, drop or refuse parts of what it stores; every problem is named at once."""

from __future__ import annotations

from collections.abc import Sequence

import highdicom as hd
from pydicom import Dataset
from pydicom.uid import ComprehensiveSRStorage, SecondaryCaptureImageStorage

from medsight.errors import PacsError
from medsight.pacs.sr import (
    CODING_SCHEME,
    THRESHOLD,
    Finding,
    class_code,
    device_uid,
    probability_code,
)

__all__ = ["check_sc", "check_sr"]

TOLERANCE = 1e-6


def _common(ds: Dataset, sop_class: str, study: str, problems: list[str]) -> None:
    if str(ds.get("SOPClassUID")) != sop_class:
        problems.append(f"SOP class {ds.get('SOPClassUID')} is not {sop_class}")
    if str(ds.get("StudyInstanceUID")) != study:
        problems.append("it is filed in another study than its source")
    if "NOT FOR DIAGNOSTIC USE" not in str(ds.get("SeriesDescription", "")):
        problems.append("its series description no longer says NOT FOR DIAGNOSTIC USE")


def _raise(ds: Dataset, what: str, problems: list[str]) -> None:
    if problems:
        raise PacsError(f"{what} {ds.get('SOPInstanceUID')} read back from the PACS is not what "
                        "was written: " + "; ".join(problems))


def _measured(group, code) -> list[float]:
    return [float(m.value) for m in group.get_measurements(name=code)]


def check_sr(ds: Dataset, findings: Sequence[Finding]) -> None:
    """Raise `PacsError` unless `ds` is the SR of `findings` as `build_sr` wrote it."""
    problems: list[str] = []
    sources = [s for f in findings for s in f.sources]
    _common(ds, ComprehensiveSRStorage, str(sources[0].StudyInstanceUID), problems)
    if ds.get("VerificationFlag") != "UNVERIFIED":
        problems.append(f"VerificationFlag is {ds.get('VerificationFlag')!r}, not 'UNVERIFIED'")
    evidence = {str(i.ReferencedSOPInstanceUID)
                for st in ds.get("CurrentRequestedProcedureEvidenceSequence", [])
                for se in st.get("ReferencedSeriesSequence", [])
                for i in se.get("ReferencedSOPSequence", [])}
    missing = {str(s.SOPInstanceUID) for s in sources} - evidence
    if missing:
        problems.append(f"{len(missing)} source instance(s) missing from the evidence")
    model = findings[0].prediction.model or {}
    uids = {str(e.get("DeviceUID", "")) for e in ds.get("ContributingEquipmentSequence", [])}
    if device_uid(model) not in uids:
        problems.append("the model's UID is not among the contributing equipment")
    try:
        report = hd.sr.ComprehensiveSR.from_dataset(ds, copy=True).content
        groups = report.get_image_measurement_groups()
    except (AttributeError, ValueError, TypeError, KeyError, IndexError) as exc:
        problems.append(f"highdicom cannot read it as a TID 1500 measurement report ({exc})")
        _raise(ds, "SR", problems)
        return
    by_id = {g.tracking_identifier: g for g in groups}
    for i, f in enumerate(findings):
        group = by_id.get(f"finding {i + 1}")
        if group is None:
            problems.append(f"finding {i + 1} is missing")
            continue
        referenced = {str(r.referenced_sop_instance_uid) for r in group.source_images}
        if referenced != {str(s.SOPInstanceUID) for s in f.sources}:
            problems.append(f"finding {i + 1} references other images than its sources")
        pred = f.prediction
        if pred.is_detection:
            values = {c: n for c, n in (pred.counts or {}).items()}
            expected = [(f"count of {c}", [float(n)], _measured(group, hd.sr.CodedConcept(
                f"COUNT-{k}", CODING_SCHEME, "x"))) for k, (c, n) in enumerate(values.items())]
            rois = [g for g in report.get_planar_roi_measurement_groups()
                    if str(g.tracking_identifier).startswith(f"finding {i + 1} box ")]
            counted = sum(values.values())
            if len(rois) != counted:
                problems.append(f"finding {i + 1} has {len(rois)} box regions, not {counted}")
        else:
            expected = [(f"probability of {c}", [float(p)], _measured(group, probability_code(k, c)))
                        for k, (c, p) in enumerate(pred.probabilities.items())]
            decided = [str(q.value.meaning) for q in group.get_qualitative_evaluations()]
            labels = [n for n in pred.label.split("+") if n]
            if labels and sorted(decided) != sorted(class_code(0, n).meaning for n in labels):
                problems.append(f"finding {i + 1} decides {decided}, not {labels}")
        if pred.threshold is not None:
            expected.append(("threshold", [float(pred.threshold)], _measured(group, THRESHOLD)))
        for what, want, got in expected:
            if len(got) != 1 or abs(got[0] - want[0]) > TOLERANCE:
                problems.append(f"finding {i + 1}: {what} reads {got}, not {want[0]:.6g}")
    _raise(ds, "SR", problems)


def check_sc(ds: Dataset, source: Dataset) -> None:
    """Raise `PacsError` unless `ds` is a secondary capture of `source` as `build_sc` wrote it."""
    problems: list[str] = []
    _common(ds, SecondaryCaptureImageStorage, str(source.StudyInstanceUID), problems)
    refs = {str(r.ReferencedSOPInstanceUID) for r in ds.get("SourceImageSequence", [])}
    if str(source.SOPInstanceUID) not in refs:
        problems.append("it does not reference its source image")
    if ds.get("BurnedInAnnotation") != "YES":
        problems.append("BurnedInAnnotation is not YES")
    if ds.get("PatientID") != source.get("PatientID"):
        problems.append("its patient is not the source's")
    if "PixelData" not in ds or ds.get("SamplesPerPixel") != 3:
        problems.append("it holds no RGB picture")
    _raise(ds, "secondary capture", problems)
