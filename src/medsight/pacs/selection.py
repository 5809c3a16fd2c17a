"""Series selection: does a model's `Rules` accept a series (its QIDO answer and its instances'
headers)? `select` says yes, or no with a reason a person can read."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any

from medsight.pacs.watch_config import Rules

__all__ = ["HEADER_FIELDS", "OWN_MANUFACTURER", "orientation_of", "select"]

# the instance-level fields the rules read (asked of QIDO so that no pixel data is fetched)
HEADER_FIELDS = ("Modality", "BodyPartExamined", "ImageType", "ImageOrientationPatient",
                 "SeriesDescription", "SOPClassUID", "Manufacturer")
_SR_CLASSES = "1.2.840.10008.5.1.4.1.1.88."  # structured reports (medsight's SR among them)
OWN_MANUFACTURER = "medsight"  # what medsight's results say made them: never run a model on them
_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}


def _get(header: Any, keyword: str) -> Any:
    value = header.get(keyword) if isinstance(header, Mapping) else getattr(header, keyword, None)
    return None if value in ("", None) else value


def _values(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [v.strip().upper() for v in value.split("\\") if v.strip()]
    return [str(v).strip().upper() for v in value]


def orientation_of(iop: Sequence[float] | None, tolerance_deg: float = 20.0) -> str:
    """"axial", "sagittal" or "coronal" from ImageOrientationPatient (row and column cosines):
    the axis the slice normal points along, within `tolerance_deg`; "oblique" or "unknown" else."""
    try:
        r = [float(v) for v in iop or ()]
    except (TypeError, ValueError):
        return "unknown"
    if len(r) != 6:
        return "unknown"
    n = (r[1] * r[5] - r[2] * r[4], r[2] * r[3] - r[0] * r[5], r[0] * r[4] - r[1] * r[3])
    norm = math.sqrt(sum(c * c for c in n))
    if norm < 1e-6:
        return "unknown"
    for name, axis in _AXES.items():
        angle = math.degrees(math.acos(min(1.0, abs(n[axis]) / norm)))
        if angle <= tolerance_deg:
            return name
    return "oblique"


def _one_of(what: str, found: list[str], allowed: list[str]) -> str | None:
    if not allowed:
        return None
    if not found:
        return f"{what} missing, rule wants one of [{', '.join(allowed)}]"
    if not set(found) & set(allowed):
        return f"{what} {'/'.join(found)} not in [{', '.join(allowed)}]"
    return None


def select(rules: Rules, series: Mapping[str, Any],
           headers: Sequence[Any] = ()) -> tuple[bool, str]:
    """``(True, "matches")`` when every rule holds for the series, else ``(False, reason)``.
    `series` is the QIDO series answer; `headers` the instances' headers (datasets or QIDO
    instance answers with `HEADER_FIELDS`), which give the slice count when present."""
    first = headers[0] if headers else {}
    if str(_get(first, "SOPClassUID") or "").startswith(_SR_CLASSES):
        return False, "a structured report, not images"
    if str(_get(first, "Manufacturer") or "").strip().lower() == OWN_MANUFACTURER:
        return False, "medsight's own result"
    for what, keyword, allowed in (("modality", "Modality", rules.modality),
                                   ("body part", "BodyPartExamined", rules.body_part)):
        found = _values(_get(series, keyword) or _get(first, keyword))
        if (why := _one_of(what, found, allowed)) is not None:
            return False, why
    slices = len(headers) if headers else int(_get(series, "NumberOfSeriesRelatedInstances") or 0)
    if slices < rules.min_slices:
        return False, f"{slices} slices < min_slices {rules.min_slices}"
    if rules.max_slices is not None and slices > rules.max_slices:
        return False, f"{slices} slices > max_slices {rules.max_slices}"
    if rules.series_description is not None:
        text = str(_get(series, "SeriesDescription") or _get(first, "SeriesDescription") or "")
        if not re.search(rules.series_description, text):
            return False, f"series description {text!r} does not match {rules.series_description!r}"
    for h in headers:
        if rules.image_type:
            found = _values(_get(h, "ImageType"))
            missing = [t for t in rules.image_type if t not in found]
            if missing:
                return False, (f"image type {'/'.join(found) or '(none)'} lacks "
                               f"{', '.join(missing)}")
        if rules.orientation is not None:
            seen = orientation_of(_get(h, "ImageOrientationPatient"), rules.orientation_tolerance_deg)
            if seen != rules.orientation:
                return False, f"orientation {seen}, rule wants {rules.orientation}"
    return True, "matches"
