"""Shape features: digitised balls, ellipsoids, discs and boxes against analytic values; real masks."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from conftest import shared_path
from sklearn.metrics import roc_auc_score

from medsight.errors import InvalidConfig
from medsight.features import ShapeFeatures, available_features, make_features


def ellipsoid(semi_axes: tuple[float, ...], size: int = 28, centre: tuple[float, ...] | None = None):
    """Float mask (0/1) of the pixels whose centres lie in an axis-aligned ellipsoid (or ellipse)."""
    centre = centre or ((size - 1) / 2,) * len(semi_axes)
    grid = np.mgrid[(slice(0, size),) * len(semi_axes)]
    inside = sum(((g - c) / a) ** 2 for g, c, a in zip(grid, centre, semi_axes, strict=True)) <= 1
    return inside.astype(float)


def features(mask: np.ndarray, **params) -> dict[str, float]:
    """Feature name -> value of one image or volume (given without sample/channel axes)."""
    x = mask[None, None]
    f = ShapeFeatures(**params).fit(x)
    return dict(zip(f.get_feature_names_out(), f.transform(x)[0], strict=True))


def test_ball_volume_sphericity_and_axes_match_analytic_values():
    r = 8
    row = features(ellipsoid((r, r, r)))
    assert row["shape_volume"] == pytest.approx(4 / 3 * np.pi * r**3, rel=0.02)
    # Marching cubes over-estimates the area of a voxelised sphere by ~10%: sphericity 0.905.
    assert 0.88 < row["shape_sphericity"] < 0.93
    assert row["shape_surface_volume_ratio"] == pytest.approx(
        row["shape_surface_area"] / row["shape_volume"]
    )
    # A solid ball's coordinate variance is r^2 / 5 on every axis: length 4 sqrt(r^2 / 5).
    for axis in ("major", "minor", "least"):
        assert row[f"shape_{axis}_axis_length"] == pytest.approx(4 * r / np.sqrt(5), rel=0.01)
    assert row["shape_elongation"] == pytest.approx(1.0, abs=1e-6)
    assert row["shape_flatness"] == pytest.approx(1.0, abs=1e-6)
    assert row["shape_solidity"] == 1.0
    assert row["shape_maximum_diameter"] == pytest.approx(2 * r, abs=0.5)
    assert [row[f"shape_bbox_{k}"] for k in range(3)] == [16, 16, 16]  # centres 6..21
    assert (row["shape_n_components"], row["shape_largest_component_fraction"]) == (1, 1)
    assert row["shape_euler_number"] == 1
    assert all(row[f"shape_centroid_offset_{k}"] == pytest.approx(0, abs=1e-9) for k in range(3))


def test_ellipsoid_axis_ratios_elongation_and_flatness():
    row = features(ellipsoid((10, 5, 3)))
    major, minor, least = (row[f"shape_{a}_axis_length"] for a in ("major", "minor", "least"))
    assert major / minor == pytest.approx(2.0, rel=0.03)
    assert major / least == pytest.approx(10 / 3, rel=0.05)
    assert row["shape_elongation"] == pytest.approx(0.5, abs=0.02)
    assert row["shape_flatness"] == pytest.approx(0.3, abs=0.02)
    assert [row[f"shape_bbox_{k}"] for k in range(3)] == [20, 10, 6]
    assert row["shape_sphericity"] < 0.85


def test_disc_is_circular_and_rectangle_is_full_and_eccentric():
    disc = features(ellipsoid((20, 20), size=64))
    assert disc["shape_area"] == pytest.approx(np.pi * 400, rel=0.01)
    assert disc["shape_perimeter"] == pytest.approx(2 * np.pi * 20, rel=0.02)
    assert disc["shape_circularity"] == pytest.approx(1.0, abs=0.03)
    assert disc["shape_eccentricity"] < 0.05
    assert disc["shape_solidity"] == 1.0
    rect = np.zeros((32, 32))
    rect[4:24, 10:15] = 1
    box = features(rect)
    assert box["shape_area"] == 100
    assert box["shape_extent"] == 1.0 and box["shape_solidity"] == 1.0
    assert (box["shape_bbox_0"], box["shape_bbox_1"]) == (20, 5)
    # Axis ratio of a 20 x 5 box is sqrt((20^2 - 1) / (5^2 - 1)) ~ 4.08: eccentricity ~0.97.
    assert box["shape_eccentricity"] == pytest.approx(np.sqrt(1 - 24 / 399), abs=1e-6)
    assert box["shape_circularity"] < 0.6
    assert box["shape_maximum_diameter"] == pytest.approx(np.hypot(19, 4))
    # Centroid (13.5, 12) against the image centre 15.5: offsets -2/32 and -3.5/32.
    assert box["shape_centroid_offset_0"] == pytest.approx(-2 / 32)
    assert box["shape_centroid_offset_1"] == pytest.approx(-3.5 / 32)


def test_concave_and_holed_shapes_have_lower_solidity_and_euler_number():
    ring = ellipsoid((10, 10), size=28) - ellipsoid((5, 5), size=28)
    row = features(ring)
    assert row["shape_euler_number"] == 0  # one component, one hole
    assert row["shape_solidity"] == pytest.approx(ring.sum() / ellipsoid((10, 10), size=28).sum())
    shell = ellipsoid((10, 10, 10)) - ellipsoid((6, 6, 6))
    assert features(shell)["shape_euler_number"] == 2  # a sphere: one component, one cavity


def test_two_balls_are_two_components():
    vol = np.maximum(ellipsoid((4, 4, 4), centre=(7, 7, 7)), ellipsoid((3, 3, 3), centre=(20, 20, 20)))
    row = features(vol)
    assert row["shape_n_components"] == 2
    big = ellipsoid((4, 4, 4), centre=(7, 7, 7)).sum()
    assert row["shape_largest_component_fraction"] == pytest.approx(big / vol.sum())
    assert row["shape_volume"] == vol.sum()


def test_empty_and_constant_images_give_zeros_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for blank in (np.zeros((28, 28, 28)), np.full((16, 16), 7.0)):
            row = features(blank)
            assert all(v == 0.0 for v in row.values()), row


def test_single_voxel_and_flat_masks_are_handled():
    vol = np.zeros((9, 9, 9))
    vol[4, 4, 4] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        row = features(vol)
    assert row["shape_volume"] == 1 and row["shape_solidity"] == 1 and row["shape_extent"] == 1
    assert row["shape_maximum_diameter"] == 0 and row["shape_elongation"] == 1
    assert row["shape_surface_area"] > 0 and np.isfinite(list(row.values())).all()
    sheet = np.zeros((9, 9, 9))
    sheet[4, 2:7, 1:8] = 1  # coplanar voxels: Qhull cannot build a 3D hull
    row = features(sheet)
    assert row["shape_solidity"] == 1 and row["shape_flatness"] == 0
    assert row["shape_maximum_diameter"] == pytest.approx(np.hypot(4, 6))


def test_threshold_midrange_or_fixed():
    vol = ellipsoid((6, 6, 6)) * 200 + 20  # background 20, object 220: midrange 120
    assert features(vol)["shape_volume"] == ellipsoid((6, 6, 6)).sum()
    assert features(vol, threshold=10.0)["shape_volume"] == vol.size
    assert features(vol, threshold=300)["shape_volume"] == 0
    for bad in ("otsu", None, float("nan"), True):
        with pytest.raises(InvalidConfig, match="threshold"):
            ShapeFeatures(threshold=bad).fit(vol[None, None])


def test_names_columns_registry_and_input_forms():
    vols = np.stack([ellipsoid((4, 5, 6)), ellipsoid((6, 3, 3))])[:, None] * 255  # (N, C, D, H, W)
    f = ShapeFeatures().fit(vols)
    names = list(f.get_feature_names_out())
    out = f.transform(vols)
    assert out.shape == (2, len(names)) == (2, 21)
    assert names[:3] == ["shape_volume", "shape_surface_area", "shape_sphericity"]
    assert "shape" in available_features()
    union = make_features("shape")
    np.testing.assert_array_equal(union.fit_transform(vols), out)
    assert list(union.get_feature_names_out()) == names
    planes = vols[:, 0, 14]  # (N, H, W): 2D masks
    f2 = ShapeFeatures().fit(planes)
    assert len(f2.get_feature_names_out()) == 17 and "shape_circularity" in f2.get_feature_names_out()
    np.testing.assert_array_equal(f2.transform(list(planes[:, None])), f2.transform(planes))


def test_adrenal_masks_give_finite_features_that_separate_the_classes():
    data = np.load(shared_path("medmnist", "adrenalmnist3d.npz"))
    x = data["train_images"][:40, None]  # (N, 1, 28, 28, 28) masks with values 0/255
    y = data["train_labels"][:40, 0]
    f = ShapeFeatures().fit(x)
    feats = dict(zip(f.get_feature_names_out(), f.transform(x).T, strict=True))
    assert np.isfinite(np.column_stack(list(feats.values()))).all()
    assert (feats["shape_volume"] > 0).all()
    np.testing.assert_array_equal(feats["shape_volume"], (x > 127).sum(axis=(1, 2, 3, 4)))
    # Measured on these 40 (10 hyperplasia): AUC 0.87 for surface/volume, 0.84 for sphericity;
    # over the first 200 volumes 0.80 and 0.71.
    assert y.sum() == 10
    assert 1 - roc_auc_score(y, feats["shape_surface_volume_ratio"]) > 0.75
    assert roc_auc_score(y, feats["shape_sphericity"]) > 0.7
