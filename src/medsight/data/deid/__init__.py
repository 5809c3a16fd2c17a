"""DICOM de-identification (PS3.15 Annex E Basic Profile) with keyed, repeatable pseudonyms."""

from medsight.data.deid.apply import DEIDENTIFICATION_METHOD, deidentify_dataset, patient_key
from medsight.data.deid.profile import BASIC_PROFILE, BASIC_PROFILE_TAGS, effective_action
from medsight.data.deid.pseudonym import DEFAULT_DATE_SHIFT_DAYS, Pseudonymizer
from medsight.data.deid.run import DeidSummary, deidentify

__all__ = [
    "BASIC_PROFILE",
    "BASIC_PROFILE_TAGS",
    "DEFAULT_DATE_SHIFT_DAYS",
    "DEIDENTIFICATION_METHOD",
    "DeidSummary",
    "Pseudonymizer",
    "deidentify",
    "deidentify_dataset",
    "effective_action",
    "patient_key",
]
