"""De-identify one pydicom dataset in memory: the Basic Profile actions, recursively.

Attributes in the profile table get their action; every other UID is replaced consistently
(well-known DICOM UIDs such as SOP classes and transfer syntaxes are kept); every other date is
shifted by the patient's offset; private attributes, curves and overlays are removed; group
lengths are dropped (they would be wrong after editing). Pixel data is never touched.
"""

from __future__ import annotations

from datetime import date, timedelta

from pydicom.dataset import Dataset as DicomDataset
from pydicom.dataset import FileMetaDataset
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import UID_dictionary

from medsight.data.deid.profile import BASIC_PROFILE_TAGS, effective_action
from medsight.data.deid.pseudonym import Pseudonymizer

__all__ = ["DEIDENTIFICATION_METHOD", "deidentify_dataset", "patient_key"]

DEIDENTIFICATION_METHOD = "PS3.15 E.1 Basic Profile, Modified Dates (medsight)"  # LO: <= 64
_METHOD_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
)
_DUMMY_TEXT = "ANONYMIZED"
_DUMMY_BY_VR = {"PN": "ANONYMOUS", "AS": "000Y", "DS": "0", "IS": "0", "TM": "000000"}
_NUMERIC_VRS = {"US", "SS", "UL", "SL", "FL", "FD", "UV", "SV"}
_TEXT_VRS = {"AE", "CS", "LO", "SH", "ST", "LT", "UT", "UC", "UR"}
_META_REMOVE = (0x00020016, 0x00020017, 0x00020018)  # source/sending/receiving AE titles


def patient_key(ds: DicomDataset) -> str:
    """What identifies the patient of a file for date offsets: PatientID, else the study."""
    pid = str(ds.get("PatientID", "") or "").strip()
    if pid:
        return pid
    study = str(ds.get("StudyInstanceUID", "") or "").strip()
    return f"study:{study}" if study else "unknown"


def _shift_date(value: str, days: int) -> str:
    """Shift a DA ``YYYYMMDD`` (or the date part of a DT); unparseable values become empty."""
    text = str(value).strip()
    if len(text) < 8 or not text[:8].isdigit():
        return ""
    try:
        day = date(int(text[:4]), int(text[4:6]), int(text[6:8]))
    except ValueError:
        return ""
    return (day + timedelta(days=days)).strftime("%Y%m%d") + text[8:]


def _map_values(value, fn):
    if value is None or value == "":
        return value
    if isinstance(value, (list, tuple, MultiValue)):
        return [fn(v) for v in value]
    return fn(value)


def _is_standard_uid(value: str) -> bool:
    return str(value) in UID_dictionary


class _Cleaner:
    def __init__(self, pz: Pseudonymizer, offset: int, keep_private: bool):
        self.pz = pz
        self.offset = offset
        self.keep_private = keep_private

    def uid(self, value: str, keyword: str) -> str:
        text = str(value).strip().rstrip("\x00")
        if not text or _is_standard_uid(text):
            return text
        return self.pz.uid(text, keyword)

    def dummy(self, elem) -> None:
        vr = elem.VR
        if vr == "SQ":
            for item in elem.value:
                self.clean(item)
        elif vr == "UI":
            elem.value = _map_values(elem.value, lambda v: self.uid(v, elem.keyword))
        elif vr in _DUMMY_BY_VR:
            elem.value = _DUMMY_BY_VR[vr]
        elif vr in _TEXT_VRS:
            elem.value = _DUMMY_TEXT[:16] if vr in ("AE", "CS", "SH") else _DUMMY_TEXT
        elif vr in _NUMERIC_VRS:
            elem.value = 0
        else:  # binary (OB/OW/UN/...) or anything else: no identifying content left
            elem.value = None

    def clean(self, ds: DicomDataset) -> None:
        for tag in list(ds.keys()):
            if tag not in ds:
                continue
            t = int(tag)
            group, element = t >> 16, t & 0xFFFF
            if element == 0 and group != 0x0002:  # group length: stale after editing
                del ds[tag]
                continue
            if tag.is_private:
                if not self.keep_private:
                    del ds[tag]
                continue
            if 0x5000 <= group <= 0x50FF or 0x6000 <= group <= 0x60FF:  # curves, overlays
                del ds[tag]
                continue
            elem = ds[tag]
            keyword = elem.keyword
            if keyword == "PatientID":  # pseudonym, the same wherever the id appears
                if elem.value not in (None, ""):
                    elem.value = self.pz.patient_id(str(elem.value))
                continue
            if keyword == "PatientName":  # emptied; the top level gets the pseudonym
                elem.value = None
                continue
            code = BASIC_PROFILE_TAGS.get(t)
            if code is not None:
                self.apply(ds, elem, effective_action(keyword, code, elem.VR))
            elif elem.VR == "SQ":
                for item in elem.value:
                    self.clean(item)
            elif elem.VR == "UI":
                elem.value = _map_values(elem.value, lambda v, k=keyword: self.uid(v, k))
            elif elem.VR in ("DA", "DT"):
                elem.value = _map_values(elem.value, lambda v: _shift_date(v, self.offset))

    def apply(self, ds: DicomDataset, elem, action: str) -> None:
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = Sequence() if elem.VR == "SQ" else None
        elif action == "SHIFT":
            elem.value = _map_values(elem.value, lambda v: _shift_date(v, self.offset))
        elif action == "KEEP":
            return
        elif action == "U":
            if elem.VR == "SQ":
                for item in elem.value:
                    self.clean(item)
            else:
                elem.value = _map_values(elem.value, lambda v: self.uid(v, elem.keyword))
        else:  # "D"
            self.dummy(elem)


def _mark(ds: DicomDataset, offset: int) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
    codes = []
    for value, meaning in _METHOD_CODES:
        item = DicomDataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED" if offset else "UNMODIFIED"


def deidentify_dataset(ds: DicomDataset, pz: Pseudonymizer, keep_private: bool = False) -> str:
    """De-identify `ds` in place with `pz`'s pseudonyms; returns the patient's pseudonym."""
    key = patient_key(ds)
    offset = pz.date_offset(key)
    pseudonym = pz.patient_id(key)
    _Cleaner(pz, offset, keep_private).clean(ds)
    ds.PatientID = pseudonym
    ds.PatientName = pseudonym
    _mark(ds, offset)
    meta = getattr(ds, "file_meta", None)
    if isinstance(meta, FileMetaDataset):
        for tag in _META_REMOVE:
            if tag in meta:
                del meta[tag]
        if "MediaStorageSOPInstanceUID" in meta:
            meta.MediaStorageSOPInstanceUID = pz.uid(
                str(meta.MediaStorageSOPInstanceUID), "MediaStorageSOPInstanceUID"
            )
    return pseudonym
