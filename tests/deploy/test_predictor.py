"""`Predictor`: parity with the run's predict_proba through PNG files, no torch, threads, OOD
warnings, heatmaps on the original grid, failures reported per input, 3D and DICOM series."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from conftest import shared_path
from deploy.run_pngs import write_test_pngs
from PIL import Image as PILImage

from medsight.deploy.bundle_facts import open_run
from medsight.deploy.inputs import SeriesInput, gather_inputs
from medsight.deploy.predictor import Predictor
from medsight.errors import MedsightError, UnreadableImage
from medsight.io.image import Image

pytestmark = pytest.mark.xdist_group("deploy_runs")
CT_SLICE = shared_path("ct_medical_images", "dicom_dir", "ID_0000_AGE_0060_CONTRAST_1_CT.dcm")
CT_SERIES = shared_path("dicom", "pydicom", "dicomdirtests", "98892001", "CT5N")


@pytest.mark.parametrize("kind", ["classical_run", "cnn2d_run"])
def test_predictor_on_pngs_reproduces_the_runs_test_probabilities(kind, request, bundle_of,
                                                                  tmp_path) -> None:
    run = request.getfixturevalue(kind)
    paths, expected = write_test_pngs(run, tmp_path)
    predictor = Predictor(bundle_of(run), batch_size=5)
    got = predictor.predict([str(p) for p in paths])
    proba = np.array([[g.probabilities[c] for c in predictor.classes] for g in got])
    assert np.max(np.abs(proba - expected)) < 1e-5
    assert [g.source for g in got] == [str(p) for p in paths]
    first = got[0]
    assert first.label in predictor.classes and first.threshold == predictor.threshold
    assert first.model["uuid"] == predictor.bundle.manifest["model"]["uuid"]
    assert set(first.timings_ms) >= {"read", "preprocess", "inference", "total"}
    json.dumps([g.to_dict() for g in got])  # JSON-ready


def test_decisions_follow_the_bundle_threshold(classical_run, bundle_of) -> None:
    predictor = Predictor(bundle_of(classical_run))
    saved = json.loads((classical_run / "model" / "estimator.json").read_text())
    assert predictor.threshold == pytest.approx(saved["threshold"]) != 0.5  # chosen on validation
    test = open_run(classical_run).dataset.split("test")
    for pred in predictor.predict([test.image(i) for i in range(len(test))]):
        p_pos = pred.probabilities[predictor.classes[predictor.positive]]
        positive = p_pos >= predictor.threshold
        assert (pred.label == predictor.classes[predictor.positive]) == positive
        assert pred.confidence == pytest.approx(pred.probabilities[pred.label])


def test_using_medsight_deploy_never_imports_torch(cnn2d_run, bundle_of, tmp_path) -> None:
    png = tmp_path / "one.png"
    PILImage.fromarray(np.arange(784, dtype=np.uint8).reshape(28, 28)).save(png)
    code = (
        "import sys\n"
        "sys.modules['torch'] = None  # any `import torch` now raises ImportError\n"
        "from medsight.deploy.predictor import Predictor\n"
        f"p = Predictor({str(bundle_of(cnn2d_run))!r})\n"
        f"r = p.predict({str(png)!r}, heatmap=True)\n"
        "assert r.heatmap is not None and r.heatmap_png\n"
        "print('ok', 'torch' in sys.modules and sys.modules['torch'] is not None)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["ok", "False"]


def test_threads_share_one_predictor(cnn2d_run, bundle_of) -> None:
    predictor = Predictor(bundle_of(cnn2d_run), batch_size=3)
    test = open_run(cnn2d_run).dataset.split("test")
    images = [test.image(i) for i in range(len(test))]
    sequential = [p.probabilities for p in predictor.predict_batch(images)]
    with ThreadPoolExecutor(4) as pool:
        threaded = list(pool.map(lambda im: predictor.predict(im).probabilities, images * 3))
    assert threaded == sequential * 3


def test_colour_photograph_and_ct_slice_sent_to_an_ultrasound_model_warn(classical_run,
                                                                        bundle_of) -> None:
    predictor = Predictor(bundle_of(classical_run))  # BreastMNIST: grey breast ultrasound
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:28, 0:28]
    photo = np.stack([xx * 9.0, yy * 9.0, 255 - xx * 4.5]) + rng.normal(0, 5, (3, 28, 28))
    warned = predictor.predict(Image(np.clip(photo, 0, 255).astype(np.float32))).warnings
    assert any("colour image" in w for w in warned), warned
    ct = predictor.predict(str(CT_SLICE))
    assert any("outside the training range" in w for w in ct.warnings), ct.warnings
    assert any("size 512x512" in w for w in ct.warnings), ct.warnings
    assert predictor.bundle.manifest["input"]["modality"] == "US"  # from the MedMNIST catalogue
    assert any("modality CT" in w for w in ct.warnings), ct.warnings
    test = open_run(classical_run).dataset.split("test")
    assert predictor.predict(test.image(0)).warnings == []  # in-distribution: no warning


def test_modality_mismatch_warns() -> None:
    from medsight.deploy.ood import ood_warnings

    spec = {"modality": "US", "modalities_seen": {"US": 10}}
    image = Image(np.zeros((1, 8, 8), np.float32), modality="CT")
    assert any("modality CT" in w for w in ood_warnings(image, image.pixels, spec))
    assert ood_warnings(Image(np.zeros((1, 8, 8), np.float32), modality="US"),
                        image.pixels, spec) == []


def test_intensity_mean_std_are_numpys() -> None:
    from medsight.deploy.ood import _mean_std

    rng = np.random.default_rng(0)
    for n in (1, 7, 784, 4096, 8191):
        x = (rng.random(n) * 255 + rng.normal() * 50).astype(np.float32).astype(np.float64)
        assert _mean_std(x) == (float(x.mean()), float(x.std()))


@pytest.mark.parametrize("kind,method", [("cnn2d_run", "cam"), ("classical_run", "occlusion")])
def test_heatmap_lies_on_the_original_image(kind, method, request, bundle_of) -> None:
    predictor = Predictor(bundle_of(request.getfixturevalue(kind)))
    pred = predictor.predict(str(CT_SLICE), heatmap=True)
    assert pred.heatmap_info["method"] == method and pred.heatmap_info["grid"] == "original"
    assert pred.heatmap.shape == (512, 512) and 0.0 <= pred.heatmap.min() <= pred.heatmap.max() <= 1.0
    assert pred.heatmap_png.startswith(b"\x89PNG")
    assert pred.to_dict(with_png=True)["heatmap"]["png_base64"]


def test_an_unreadable_input_is_reported_and_the_rest_predicted(classical_run, bundle_of,
                                                                tmp_path) -> None:
    paths, _ = write_test_pngs(classical_run, tmp_path)
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(paths[0].read_bytes()[:60])
    predictor = Predictor(bundle_of(classical_run), batch_size=2)
    items = [str(paths[0]), str(bad), str(paths[1]), str(tmp_path / "missing.png"), str(paths[2])]
    results = [r for _, r in predictor.stream(items)]
    assert [isinstance(r, MedsightError) for r in results] == [False, True, False, True, False]
    assert isinstance(results[1], UnreadableImage) and "corrupt.png" in str(results[1])
    with pytest.raises(UnreadableImage):
        predictor.predict(str(bad))


def test_decode_pool_reads_for_the_predictor(classical_run, bundle_of, tmp_path) -> None:
    from medsight.deploy.inputs import read_input
    from medsight.io.decode_pool import DecodePool

    paths, expected = write_test_pngs(classical_run, tmp_path)
    with DecodePool(work=read_input, workers=1, timeout_s=30) as pool:
        predictor = Predictor(bundle_of(classical_run), pool=pool)
        got = predictor.predict([str(p) for p in paths[:4]] + [paths[4].read_bytes()])
    proba = np.array([[g.probabilities[c] for c in predictor.classes] for g in got])
    assert np.max(np.abs(proba - expected[:5])) < 1e-5
    assert got[-1].source == "<bytes>"


def test_volumes_and_dicom_series_work_like_images(cnn3d_run, bundle_of) -> None:
    predictor = Predictor(bundle_of(cnn3d_run))
    assert predictor.is_volume
    test = open_run(cnn3d_run).dataset.split("test")
    pred = predictor.predict(test.image(0), heatmap=True)
    assert pred.heatmap.shape == test.image(0).spatial_shape
    series = list(gather_inputs([CT_SERIES], volumes=True))
    assert len(series) == 1 and isinstance(series[0], SeriesInput) and len(series[0].files) == 5
    pred = predictor.predict(series[0])
    assert pred.input["shape"] == [1, 5, 16, 16] and pred.warnings  # CT head, not adrenal masks
    assert sum(pred.probabilities.values()) == pytest.approx(1.0)
