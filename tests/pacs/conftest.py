"""Fixtures of the PACS tests: a real Orthanc (see orthanc.py) and the shared CT DICOMs."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import shared_path
from pacs.orthanc import orthanc, orthanc_server  # noqa: F401  (fixtures)

CT_DIR = ("ct_medical_images", "dicom_dir")


@pytest.fixture(scope="session")
def ct_files() -> list[Path]:
    """The 100 real CT slices (one or two per series), sorted by name."""
    files = sorted(shared_path(*CT_DIR).glob("*.dcm"))
    if not files:
        pytest.skip("the shared CT DICOMs are missing (../shared/data/ct_medical_images/dicom_dir)")
    return files
