"""Batch augmentation: flips only where allowed, geometry/intensity/mixing maths, repeatability."""

from __future__ import annotations

import math

import pytest
import torch

from medsight.errors import InvalidConfig
from medsight.train.augment import PRESETS, AugmentConfig, BatchAugment, flip_variants


def _batch(n=16, shape=(1, 12, 10), seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, *shape), generator=g)


def test_default_config_is_the_identity():
    x = _batch()
    out = BatchAugment(AugmentConfig.from_config(None), 2)(x, torch.Generator().manual_seed(0))
    assert torch.equal(out, x)


def test_hflip_flips_width_of_about_half_the_samples_and_nothing_else():
    x = _batch(n=64)
    aug = BatchAugment(AugmentConfig(hflip=True), 2)
    out = aug(x, torch.Generator().manual_seed(1))
    flipped = [bool(torch.equal(o, s.flip(-1))) for o, s in zip(out, x, strict=True)]
    kept = [bool(torch.equal(o, s)) for o, s in zip(out, x, strict=True)]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert 16 < sum(flipped) < 48
    assert not any(torch.equal(o, s.flip(-2)) for o, s in zip(out, x, strict=True))


def test_presets_forbid_flips_where_laterality_matters():
    assert AugmentConfig.from_config("chest").flip_axes(2) == []
    assert AugmentConfig.from_config("volume").flip_axes(3) == []
    assert AugmentConfig.from_config("rotation_invariant").flip_axes(2) == [-1, -2]
    # overriding a preset keeps its other settings
    cfg = AugmentConfig.from_config({"preset": "chest", "rotate": 3})
    assert cfg.rotate == 3 and cfg.gamma == PRESETS["chest"]["gamma"] and not cfg.hflip
    # dflip only exists for volumes
    assert AugmentConfig(dflip=True).flip_axes(2) == []
    assert AugmentConfig(dflip=True).flip_axes(3) == [-3]


def test_bad_options_are_named():
    with pytest.raises(InvalidConfig, match="rotation"):
        AugmentConfig.from_config({"rotation": 10})
    with pytest.raises(InvalidConfig, match="preset"):
        AugmentConfig.from_config("sideways")
    with pytest.raises(InvalidConfig, match="scale"):
        AugmentConfig.from_config({"scale": [1.2, 0.8]})


@pytest.mark.parametrize("shape", [(1, 12, 10), (2, 6, 8, 10)])
def test_affine_keeps_shape_is_repeatable_and_fills_with_the_image_minimum(shape):
    x = _batch(n=8, shape=shape) + 5.0  # minimum of each image is >= 5
    cfg = AugmentConfig(rotate=30, scale=(0.6, 0.7), translate=0.2, crop=(0.5, 1.0))
    aug = BatchAugment(cfg, len(shape) - 1)
    a = aug(x, torch.Generator().manual_seed(3))
    b = aug(x, torch.Generator().manual_seed(3))
    c = aug(x, torch.Generator().manual_seed(4))
    assert a.shape == x.shape and torch.equal(a, b) and not torch.equal(a, c)
    assert torch.isfinite(a).all()
    # zooming out by 0.6-0.7 brings outside space in: filled with each image's minimum, not 0
    lows = x.flatten(1).min(1).values
    assert (a.flatten(1).min(1).values >= lows - 1e-4).all()


def test_p_affine_zero_skips_geometry():
    x = _batch()
    out = BatchAugment(AugmentConfig(rotate=45, p_affine=0.0), 2)(x, torch.Generator())
    assert torch.equal(out, x)


def test_intensity_changes_are_relative_to_each_image_range():
    x = _batch(n=8) * 1000 - 500  # HU-like range
    cfg = AugmentConfig(gamma=(0.5, 2.0))
    out = BatchAugment(cfg, 2)(x, torch.Generator().manual_seed(0))
    # gamma on the min-max scaled image keeps each image's min and max
    assert torch.allclose(out.flatten(1).min(1).values, x.flatten(1).min(1).values, atol=1e-3)
    assert torch.allclose(out.flatten(1).max(1).values, x.flatten(1).max(1).values, atol=1e-3)
    assert not torch.allclose(out, x)
    shifted = BatchAugment(AugmentConfig(brightness=0.2), 2)(x, torch.Generator().manual_seed(0))
    delta = (shifted - x).flatten(1)
    span = (x.flatten(1).max(1).values - x.flatten(1).min(1).values)
    assert torch.allclose(delta.std(1), torch.zeros(8), atol=1e-3)  # a uniform shift per image
    assert (delta[:, 0].abs() <= 0.2 * span + 1e-3).all()


def test_mixup_is_a_convex_combination_with_a_permutation():
    x = _batch(n=8)
    aug = BatchAugment(AugmentConfig(mixup=0.4), 2)
    mixed, perm, lam = aug.mix(x, torch.Generator().manual_seed(0))
    assert perm is not None and 0 <= lam <= 1
    assert sorted(perm.tolist()) == list(range(8))
    assert torch.allclose(mixed, lam * x + (1 - lam) * x[perm])


def test_cutmix_pastes_a_box_and_reports_the_kept_area():
    x = torch.zeros(4, 1, 20, 20)
    x[:, 0] = torch.arange(4).view(4, 1, 1).float()  # image i is constant i
    aug = BatchAugment(AugmentConfig(cutmix=1.0), 2)
    mixed, perm, lam = aug.mix(x, torch.Generator().manual_seed(5))
    assert perm is not None
    for i in range(4):
        own = (mixed[i] == i).float().mean().item()
        if int(perm[i]) != i:
            assert math.isclose(own, lam, abs_tol=1e-6)


def test_mixing_off_returns_the_batch_untouched():
    x = _batch()
    mixed, perm, lam = BatchAugment(AugmentConfig(), 2).mix(x, torch.Generator())
    assert mixed is x and perm is None and lam == 1.0


def test_strong_variant_for_fixmatch_keeps_flip_permissions_and_erases_a_box():
    weak = AugmentConfig.from_config("chest")
    strong = weak.strong()
    assert not strong.hflip and strong.rotate >= 30 and strong.cutout > 0 and not strong.has_mix
    x = _batch(n=4) + 1.0
    out = BatchAugment(AugmentConfig(cutout=0.5), 2)(x, torch.Generator().manual_seed(0))
    erased = (out == x.flatten(1).min(1).values.view(4, 1, 1, 1)).flatten(1).float().mean(1)
    assert (erased > 0.15).all()


def test_tta_views_follow_allowed_flips():
    assert flip_variants(AugmentConfig(), 2) == [()]
    assert flip_variants(AugmentConfig(hflip=True, vflip=True), 2) == [(), (-1,), (-2,)]
