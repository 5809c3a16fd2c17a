"""Datasets as lazy tables of records, their sources, splits and quality checks.

Importing `medsight.data.sources` here registers the built-in reference schemes, so any
`medsight.data` import can resolve ``npz:``, ``phantom:``, ``region:`` ... refs.
"""

import medsight.data.sources  # noqa: F401  (registers the reference schemes)
from medsight.data.dataset import Dataset, Record, Sample, Task

__all__ = ["Dataset", "Record", "Sample", "Task"]
