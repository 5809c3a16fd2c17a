"""Registration on a real CT slice: known shifts, rotations and affine maps are recovered."""

from __future__ import annotations

import math

import numpy as np
import pytest
import SimpleITK as sitk
from scipy import ndimage

from medsight.errors import BundleIntegrityError, InvalidConfig
from medsight.io.image import Image
from medsight.preprocess import Align, Preprocess, Resize, build_template, register


def _warp(image: Image, tx: sitk.Transform) -> Image:
    """moving(p) = fixed(tx(p)): the content moved by the inverse of tx."""
    f = sitk.GetImageFromArray(image.pixels[0])
    m = sitk.Resample(f, f, tx, sitk.sitkLinear, float(image.pixels.min()))
    return image.with_pixels(sitk.GetArrayFromImage(m)[None])


def _transform(params: dict) -> sitk.Transform:
    tx = {"rigid": sitk.Euler2DTransform, "affine": lambda: sitk.AffineTransform(2)}[
        params["transform"]
    ]()
    tx.SetFixedParameters(params["fixed_parameters"])
    tx.SetParameters(params["parameters"])
    return tx


def _max_point_error(true_tx: sitk.Transform, found: sitk.Transform, shape) -> float:
    """found should invert true_tx: max |true(found(p)) - p| over a grid of points."""
    h, w = shape
    pts = [(x, y) for x in np.linspace(10, w - 10, 6) for y in np.linspace(10, h - 10, 6)]
    return max(float(np.hypot(*(np.array(true_tx.TransformPoint(found.TransformPoint(p))) - p)))
               for p in pts)


def test_register_recovers_known_shift(ct_slice):
    moved = ct_slice.with_pixels(ndimage.shift(ct_slice.pixels[0], (-2.0, 3.0), order=1,
                                               mode="nearest")[None])
    out, params = register(moved, ct_slice, transform="rigid")
    assert params["shift"] == pytest.approx([-2.0, 3.0], abs=1.0)  # (rows, cols)
    assert params["shift"] == pytest.approx([-2.0, 3.0], abs=0.1)
    assert abs(params["rotation_deg"]) < 1.0
    inner = (slice(None), slice(8, -8), slice(8, -8))
    err = np.abs(out.pixels[inner] - ct_slice.pixels[inner]).mean()
    assert err < 0.2 * np.abs(moved.pixels[inner] - ct_slice.pixels[inner]).mean()


def test_register_recovers_rotation_and_shift(ct_slice):
    h, w = ct_slice.spatial_shape
    true_tx = sitk.Euler2DTransform(((w - 1) / 2, (h - 1) / 2), math.radians(5.0), (3.0, -2.0))
    moved = _warp(ct_slice, true_tx)
    _, params = register(moved, ct_slice, transform="rigid", metric="mattes")
    assert params["rotation_deg"] == pytest.approx(-5.0, abs=1.0)
    assert _max_point_error(true_tx, _transform(params), (h, w)) < 1.0


def test_register_affine(ct_slice):
    h, w = ct_slice.spatial_shape
    true_tx = sitk.AffineTransform(2)
    true_tx.SetCenter(((w - 1) / 2, (h - 1) / 2))
    true_tx.SetMatrix((1.06, 0.04, -0.03, 0.96))
    true_tx.SetTranslation((2.0, 1.5))
    moved = _warp(ct_slice, true_tx)
    _, params = register(moved, ct_slice, transform="affine", metric="mean_squares")
    assert _max_point_error(true_tx, _transform(params), (h, w)) < 1.0
    assert np.asarray(params["matrix_xyz"]).shape == (2, 2)


def test_register_volume_translation():
    zz, yy, xx = np.mgrid[:24, :32, :32]
    vol = ((zz - 12) ** 2 / 49 + (yy - 16) ** 2 / 100 + (xx - 14) ** 2 / 64 <= 1) * 1.0
    vol += ((zz - 9) ** 2 + (yy - 20) ** 2 + (xx - 20) ** 2 <= 9) * 0.5
    vol = ndimage.gaussian_filter(vol, 1.0)
    moved = ndimage.shift(vol, (1.0, -2.0, 3.0), order=1)
    out, params = register(Image(moved[None]), Image(vol[None]), transform="translation",
                           metric="mean_squares")
    assert params["shift"] == pytest.approx([1.0, -2.0, 3.0], abs=0.25)
    assert out.pixels.shape == (1, 24, 32, 32)


def test_register_rejects_mixed_dimensions(ct_slice):
    with pytest.raises(InvalidConfig, match="dimensions"):
        register(Image(np.zeros((1, 8, 16, 16))), ct_slice)


def test_align_step_records_transform_and_replays(ct_slice, tmp_path):
    moved = ct_slice.with_pixels(ndimage.shift(ct_slice.pixels[0], (1.5, -2.5), order=1,
                                               mode="nearest")[None])
    chain = Preprocess([Align(reference=ct_slice, transform="rigid")])
    embedded = chain.to_dict()["steps"][0]["params"]["reference"]
    assert set(embedded) == {"npy", "spacing", "origin", "direction"}  # pixels inside the JSON
    out = chain(moved)
    rec = out.metadata["preprocess"][-1]
    assert rec["step"] == "align" and rec["shift"] == pytest.approx([1.5, -2.5], abs=0.2)
    again = Preprocess.from_json(chain.to_json())
    assert again == chain and again.fingerprint() == chain.fingerprint()
    assert again(moved).pixels.tobytes() == out.pixels.tobytes()
    # the same reference as a file: the same chain (identity is the content, not where it lives)
    from_file = Preprocess([chain[0].save_reference(tmp_path / "ref.npz")])
    assert from_file.fingerprint() == chain.fingerprint()
    assert from_file(moved).metadata["preprocess"][-1]["reference_pixels_sha256"] == \
        rec["reference_pixels_sha256"]
    assert "npy=" not in repr(chain) and "pixels>" in repr(chain)


def test_saved_chain_is_self_contained_without_the_reference_file(ct_slice, tmp_path):
    bundle = tmp_path / "bundle"
    Align(reference=ct_slice).save_reference(bundle / "ref.npz")
    from medsight.preprocess.align import file_sha256

    digest = file_sha256(bundle / "ref.npz")
    config = bundle / "prep.yaml"  # a config file resolves files next to itself
    config.write_text(
        f"- align: {{reference: ref.npz, reference_sha256: {digest}, transform: translation}}\n")
    from_yaml = Preprocess.from_config(config)
    out = from_yaml(ct_slice)
    assert out.pixels.shape == ct_slice.pixels.shape
    text = from_yaml.to_json()
    (bundle / "ref.npz").unlink()  # saved JSON needs no file, whatever base_dir says
    for base_dir in (None, tmp_path / "elsewhere"):
        loaded = Preprocess.from_json(text, base_dir=base_dir)
        assert loaded.fingerprint() == from_yaml.fingerprint()
        assert loaded(ct_slice).pixels.tobytes() == out.pixels.tobytes()
    np.save(bundle / "other.npy", ct_slice.pixels[:, ::2])
    (bundle / "ref.npz").write_bytes((bundle / "other.npy").read_bytes())
    with pytest.raises(BundleIntegrityError, match="changed"):  # a pinned file that changed
        Preprocess.from_config(config)(ct_slice)
    missing = Preprocess([Align(reference=str(tmp_path / "nope.npz"))])
    with pytest.raises(InvalidConfig, match="not found"):
        missing(ct_slice)
    with pytest.raises(InvalidConfig, match="not found"):
        missing.to_json()


def test_embedded_reference_is_checked_and_never_unpickled(ct_slice):
    import base64
    import io
    import pickle

    d = Preprocess([Align(reference=ct_slice)]).to_dict()
    params = d["steps"][0]["params"]
    buf = io.BytesIO()
    np.save(buf, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
    for bad, match in (
        ({**params["reference"], "npy": base64.b64encode(buf.getvalue()).decode()}, "base64 .npy"),
        ({**params["reference"], "npy": "not base64!"}, "base64 .npy"),
        ({**params["reference"], "npy": base64.b64encode(pickle.dumps([1])).decode()}, "base64 .npy"),
        ({"npy": params["reference"]["npy"]}, "keys"),
    ):
        with pytest.raises(InvalidConfig, match=match):
            Preprocess.from_dict({**d, "steps": [{"name": "align", "params": {**params, "reference": bad}}]})


def test_saved_model_copied_elsewhere_aligns_without_its_reference_file(tmp_path):
    """A model trained with an align step keeps the reference inside its saved folder."""
    import shutil

    from medsight.data.sources import make_phantoms
    from medsight.models import load_estimator
    from medsight.models.classical import ClassicalClassifier
    from medsight.preprocess import save_reference

    ds = make_phantoms(n=24, size=28, seed=0)
    reference = tmp_path / "templates" / "ref.npz"
    save_reference(ds.image(0), reference)
    steps = [{"align": {"reference": str(reference), "transform": "translation", "iterations": 20}},
             {"minmax": {}}]
    est = ClassicalClassifier("logistic_regression", features=["stats"], preprocess=steps,
                              calibrate=None).fit(ds)
    proba = est.predict_proba(ds)
    est.save(tmp_path / "run" / "model")
    shutil.copytree(tmp_path / "run" / "model", tmp_path / "server" / "model")
    shutil.rmtree(tmp_path / "run")
    reference.unlink()
    loaded = load_estimator(tmp_path / "server" / "model")
    assert loaded.preprocess_ == est.preprocess_
    np.testing.assert_array_equal(loaded.predict_proba(ds), proba)
    aligned = loaded.preprocess_(ds.image(3))
    assert aligned.pixels.tobytes() == est.preprocess_(ds.image(3)).pixels.tobytes()


def test_build_template_refined_is_sharper(ct_slice, tmp_path):
    rng = np.random.default_rng(0)
    small = Resize((64, 64))(ct_slice)
    samples = [
        small.with_pixels(ndimage.shift(small.pixels[0], rng.uniform(-3, 3, 2), order=1,
                                        mode="nearest")[None])
        for _ in range(4)
    ]

    def sharpness(img: Image) -> float:
        return float(np.mean(np.abs(np.diff(img.pixels[0], axis=1))))

    blurry = build_template(samples, n=4, refine=0)
    sharp = build_template(samples, n=4, refine=1)
    assert blurry.pixels.shape == small.pixels.shape
    assert blurry.metadata["template"]["n"] == 4
    assert sharpness(sharp) > 1.2 * sharpness(blurry)
    step = Align.from_template(samples, tmp_path / "template.npz", n=2, transform="rigid")
    assert step.reference_sha256 is not None and (tmp_path / "template.npz").is_file()
    assert step(samples[0]).pixels.shape == small.pixels.shape
