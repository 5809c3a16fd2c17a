"""A prediction's cold start loads only what a PNG and a simple chain need: in a new process,
`medsight predict` and `Predictor.predict` on one PNG (resized 28 -> 20 px, min-max) import none of
the DICOM, NIfTI, registration, scikit-image, SciPy image or pandas libraries (nor torch)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from deploy.run_pngs import write_test_pngs

pytestmark = pytest.mark.xdist_group("deploy_runs")

NOT_NEEDED = ["pydicom", "gdcm", "nibabel", "SimpleITK", "skimage", "scipy.ndimage", "pandas", "torch"]

_SCRIPT = """
import json, sys
import medsight.cli.predict, medsight.deploy.predictor
from medsight.cli import app
from medsight.deploy.predictor import Predictor

bundle, png, out = sys.argv[1:4]
try:
    app(["predict", "--bundle", bundle, png, "--out", out, "--allow-unsigned"])
except SystemExit as exc:
    assert not exc.code, exc.code
prediction = Predictor(bundle).predict(png)  # read in this process, no decode pool
print(json.dumps({"probabilities": list(prediction.probabilities.values()),
                  "loaded": [m for m in json.loads(sys.argv[4]) if m in sys.modules]}))
"""


def test_predicting_a_png_imports_no_heavy_reader_or_filter_library(cnn2d_run, bundle_of, tmp_path):
    paths, expected = write_test_pngs(cnn2d_run, tmp_path / "pngs")
    out = tmp_path / "one.json"
    run = subprocess.run([sys.executable, "-c", _SCRIPT, str(bundle_of(cnn2d_run)), str(paths[0]),
                          str(out), json.dumps(NOT_NEEDED)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    got = json.loads(run.stdout.strip().splitlines()[-1])
    assert got["loaded"] == []
    assert got["probabilities"] == pytest.approx(list(expected[0]), abs=1e-5)
    assert out.exists()
