"""Leakage between splits: one patient, or one image, seen on both sides of an evaluation.

A model tested on a patient (or a copy of an image) it was trained on scores better than it will
on new patients; these finders name every such patient and image with its records and splits.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from medsight.data.quality.report import DuplicateGroup, LeakageFinding, RecordInfo

__all__ = ["duplicate_leakage", "patient_leakage"]


def patient_leakage(infos: Sequence[RecordInfo]) -> list[LeakageFinding]:
    """Patients whose records fall in more than one (assigned) split."""
    by_patient: dict[str, list[RecordInfo]] = defaultdict(list)
    for info in infos:
        if info.patient_id is not None and str(info.patient_id) != "" and info.split is not None:
            by_patient[str(info.patient_id)].append(info)
    findings = []
    for pid, members in by_patient.items():
        if len({m.split for m in members}) > 1:
            findings.append(LeakageFinding("patient", pid, members))
    return findings


def duplicate_leakage(groups: Sequence[DuplicateGroup]) -> list[LeakageFinding]:
    """Duplicate groups (exact or near) whose members fall in more than one split."""
    kind = {"exact": "exact_duplicate", "near": "near_duplicate"}
    return [LeakageFinding(kind[g.kind], g.key, list(g.members)) for g in groups if g.crosses_splits]
