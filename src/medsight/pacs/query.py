"""PACS queries from one line (``Modality=CT&StudyDate=2020-2021``): keywords checked against the DICOM
dictionary, friendly dates turned into DICOM date ranges, and a query split by the level (study,
series, instance) each attribute is matched at."""

from __future__ import annotations

import difflib
import re
from datetime import date

from pydicom.datadict import dictionary_VR, keyword_dict

from medsight.errors import InvalidConfig
from medsight.pacs.client import Level

__all__ = ["INSTANCE_KEYS", "STUDY_KEYS", "at_level", "parse_date_range", "parse_query",
           "split_query"]

# Attributes a PACS matches at the patient / study level (PS3.4 C.6.2.1 and PS3.18 table 10.6.1-5).
STUDY_KEYS = frozenset({
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex",
    "StudyInstanceUID", "StudyDate", "StudyTime", "AccessionNumber", "StudyID",
    "StudyDescription", "ReferringPhysicianName", "ModalitiesInStudy", "InstitutionName",
    "NumberOfStudyRelatedSeries", "NumberOfStudyRelatedInstances",
})
# Attributes matched per instance; everything else is matched per series.
INSTANCE_KEYS = frozenset({
    "SOPInstanceUID", "SOPClassUID", "InstanceNumber", "ImageType", "AcquisitionDate",
    "ContentDate", "Rows", "Columns", "NumberOfFrames",
})

_DATE = re.compile(r"^(\d{4})(?:-?(\d{2})(?:-?(\d{2}))?)?$")


def _date_bound(text: str, end: bool) -> str:
    """``2020`` / ``202003`` / ``2020-03`` / ``20200315`` / ``2020-03-15`` as YYYYMMDD, the first
    (or with `end` the last) day of what it names."""
    m = _DATE.match(text)
    if m is None:
        raise ValueError(text)
    year, month, day = int(m[1]), int(m[2] or (12 if end else 1)), m[3]
    if day is None:
        last = (date(year + month // 12, month % 12 + 1, 1) - date.resolution).day
        day_n = last if end else 1
    else:
        day_n = int(day)
    return date(year, month, day_n).strftime("%Y%m%d")


def parse_date_range(value: str, keyword: str = "StudyDate") -> str:
    """A DICOM date or range: ``2020`` -> ``20200101-20201231``, ``2020-2021``,
    ``2020-03-01-2020-06-30``, open ``2020-`` / ``-2021``; an exact day stays one day."""
    text = value.strip()
    try:
        low, high = _date_bound(text, False), _date_bound(text, True)
        return low if low == high else f"{low}-{high}"
    except ValueError:
        pass
    for i in (i for i, c in enumerate(text) if c == "-"):
        left, right = text[:i].strip(), text[i + 1:].strip()
        try:
            low = _date_bound(left, False) if left else ""
            high = _date_bound(right, True) if right else ""
        except ValueError:
            continue
        if not (low or high):
            break
        if low and high and low > high:
            raise InvalidConfig(f"{keyword}={value}: the range ends before it starts")
        return f"{low}-{high}"
    raise InvalidConfig(f"{keyword}={value!r} is not a date or range: use YYYY, YYYYMM, YYYYMMDD "
                        "or YYYY-MM-DD, and FROM-TO, FROM- or -TO (e.g. StudyDate=2020-2021)")


def _check_keyword(keyword: str) -> None:
    if keyword not in keyword_dict:
        close = difflib.get_close_matches(keyword, list(keyword_dict), n=3, cutoff=0.7)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise InvalidConfig(f"query: {keyword!r} is not a DICOM keyword{hint} (keywords are "
                            "spelled as in the DICOM dictionary, e.g. Modality, StudyDate)")


def parse_query(text: str | None) -> dict[str, str]:
    """``KEY=VALUE&KEY=VALUE`` as a dict of DICOM keyword -> matching value. Dates (VR DA) accept
    friendly forms and ranges; ``*`` / ``?`` wildcards pass through (note that matching on
    PatientName or PatientID puts identifying values into the PACS's request logs)."""
    query: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in (text or "").split("&"))):
        keyword, sep, value = part.partition("=")
        keyword, value = keyword.strip(), value.strip()
        if not sep or not keyword:
            raise InvalidConfig(f"query: {part!r} is not KEY=VALUE (e.g. Modality=CT&StudyDate=2020)")
        _check_keyword(keyword)
        if keyword in query:
            raise InvalidConfig(f"query: {keyword} is given twice")
        if dictionary_VR(keyword) == "DA" and value:
            value = parse_date_range(value, keyword)
        query[keyword] = value
    return query


def at_level(query: dict[str, str], level: Level) -> dict[str, str]:
    """`query` as the PACS expects it at `level`: a study has ``ModalitiesInStudy``, a series or an
    instance ``Modality`` (whichever of the two the user wrote)."""
    out = dict(query)
    if level == "study" and "Modality" in out:
        out.setdefault("ModalitiesInStudy", out.pop("Modality"))
        out.pop("Modality", None)
    elif level != "study" and "ModalitiesInStudy" in out:
        out.setdefault("Modality", out.pop("ModalitiesInStudy"))
        out.pop("ModalitiesInStudy", None)
    return out


def split_query(query: dict[str, str]) -> dict[Level, dict[str, str]]:
    """The part of `query` matched at each level (a modality is matched for the study, as
    ``ModalitiesInStudy``, and again for each series, so a mixed study yields only those series)."""
    study = {k: v for k, v in query.items() if k in STUDY_KEYS}
    instance = {k: v for k, v in query.items() if k in INSTANCE_KEYS}
    series = {k: v for k, v in query.items() if k not in STUDY_KEYS and k not in INSTANCE_KEYS}
    modality = query.get("Modality") or query.get("ModalitiesInStudy")
    if modality:
        study["ModalitiesInStudy"] = modality
        series["Modality"] = modality
    return {"study": study, "series": series, "instance": instance}
