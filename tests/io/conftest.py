"""Fixtures for the reader tests: pydicom's shipped files and the shared DICOM corpus."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from conftest import shared_path
from pydicom.data import get_testdata_file


def _pydicom_file(name: str) -> Path:
    """A test file shipped inside the pydicom wheel (never one that would be downloaded)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} is not shipped with this pydicom")
    return Path(str(path))


def _shared_dicom(*parts: str) -> Path:
    """A file of ../shared/data/dicom (skips, naming it, when the corpus is absent)."""
    return shared_path("dicom", *parts)


@pytest.fixture
def pydicom_file() -> Callable[[str], Path]:
    return _pydicom_file


@pytest.fixture
def shared_dicom() -> Callable[..., Path]:
    return _shared_dicom
