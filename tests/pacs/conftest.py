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


@pytest.fixture(scope="session")
def ct_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny CAM-able CNN trained one epoch on 32 px CT slices (contrast: True / False), bundled.
    Its numbers mean nothing; it makes real predictions (and heatmaps) on real CT DICOMs."""
    from conftest import tiny_nets
    from tiny_runs import torch_model

    from medsight.config import parse_config
    from medsight.deploy import create_bundle
    from medsight.experiment import run_experiment

    tiny_nets()
    root = shared_path("ct_medical_images")
    out = tmp_path_factory.mktemp("pacs") / "ct_contrast"
    cfg = parse_config({
        "name": "ct-contrast",
        "data": {"source": str(root / "dicom_dir"), "positive_class": "True",
                 "options": {"labels_csv": str(root / "overview.csv"), "label_column": "Contrast",
                             "path_column": "dicom_name"},
                 "split": {"method": "holdout"}},
        "preprocess": [{"resize": {"size": [32, 32]}}, {"minmax": {}}],
        "model": torch_model("tiny_cnn_test", epochs=1),
        "evaluation": {"n_boot": 100}, "output": str(out)})
    run_experiment(cfg)
    return create_bundle(out, out.parent / "ct_contrast.msb")
