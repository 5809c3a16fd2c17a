"""Datasets as lazy tables of records, their sources, splits and quality checks."""

from medsight.data.dataset import Dataset, Record, Sample, Task

__all__ = ["Dataset", "Record", "Sample", "Task"]
