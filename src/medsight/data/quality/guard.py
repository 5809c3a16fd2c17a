"""`assert_no_leakage`: the gate evaluation passes through, so no metric is computed on splits
that share patients or images unless the user explicitly allows it."""

from __future__ import annotations

import logging
from collections import Counter

from medsight.data.dataset import Dataset
from medsight.data.quality.check import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    Progress,
    check_dataset,
    record_info,
)
from medsight.data.quality.leakage import patient_leakage
from medsight.data.quality.report import LeakageFinding, QualityReport
from medsight.errors import LeakageError

log = logging.getLogger(__name__)

__all__ = ["assert_no_leakage"]

_SHOWN = 5


def assert_no_leakage(
    ds: Dataset,
    allow: bool = False,
    *,
    images: bool = True,
    near_duplicates: bool = False,
    near_duplicate_threshold: int = DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    report: QualityReport | None = None,
    progress: Progress | None = None,
) -> list[LeakageFinding]:
    """Raise `LeakageError` when a patient or an identical image is in two splits.

    `images=False` checks patient ids only (no pixels read); `near_duplicates=True` also counts
    near-identical images (pHash). A precomputed `report` is reused instead of reading again.
    With `allow=True` the findings are logged as a warning and returned instead of raised.
    """
    kinds = {"patient", "exact_duplicate"} | ({"near_duplicate"} if near_duplicates else set())
    if report is not None:
        findings = report.leakage
    elif images:
        threshold = near_duplicate_threshold if near_duplicates else None
        findings = check_dataset(ds, threshold, progress=progress).leakage
    else:
        findings = patient_leakage([record_info(ds, i) for i in range(len(ds))])
    findings = [f for f in findings if f.kind in kinds]
    if not findings:
        return []
    counts = Counter(f.kind.replace("_", " ") for f in findings)
    summary = ", ".join(f"{n} {k}" for k, n in counts.items())
    examples = "\n  ".join(f.describe() for f in findings[:_SHOWN])
    more = f"\n  ... and {len(findings) - _SHOWN} more" if len(findings) > _SHOWN else ""
    message = (
        f"{ds.name}: leakage between splits ({summary}):\n  {examples}{more}\n"
        "Metrics on these splits would be optimistic. Split by patient "
        "(medsight.data.splits.holdout(ds, group_by_patient=True)), remove the duplicate "
        "images, or pass allow=True to evaluate anyway."
    )
    if allow:
        log.warning("%s", message)
        return findings
    raise LeakageError(message)
