"""Data quality checks: unreadable files, duplicates, leakage between splits, image summary, boxes."""

from medsight.data.quality.box_stats import BoxStats, ClassBoxStats, box_statistics
from medsight.data.quality.check import (
    DEFAULT_NEAR_DUPLICATE_THRESHOLD,
    check_dataset,
    record_info,
)
from medsight.data.quality.duplicates import close_hash_pairs, exact_groups, near_groups
from medsight.data.quality.guard import assert_no_leakage
from medsight.data.quality.hashing import file_hash, hamming, phash, pixel_hash
from medsight.data.quality.leakage import duplicate_leakage, patient_leakage
from medsight.data.quality.report import (
    DuplicateGroup,
    ImageSummary,
    LeakageFinding,
    QualityReport,
    RecordInfo,
    UnreadableEntry,
)

__all__ = [
    "BoxStats",
    "ClassBoxStats",
    "DEFAULT_NEAR_DUPLICATE_THRESHOLD",
    "DuplicateGroup",
    "ImageSummary",
    "LeakageFinding",
    "QualityReport",
    "RecordInfo",
    "UnreadableEntry",
    "assert_no_leakage",
    "box_statistics",
    "check_dataset",
    "close_hash_pairs",
    "duplicate_leakage",
    "exact_groups",
    "file_hash",
    "hamming",
    "near_groups",
    "patient_leakage",
    "phash",
    "pixel_hash",
    "record_info",
]
