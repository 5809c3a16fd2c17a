"""Batch augmentation for 2D images and 3D volumes: flips, affine, random resized crop, intensity.

Augmentation runs on whole batches, on the training device, with per-sample random parameters
drawn from one seeded CPU `torch.Generator` (so a run is repeatable on any device and its state
can be checkpointed). One code path serves ``(N,C,H,W)`` and ``(N,C,D,H,W)``: geometry is a
per-sample affine matrix applied with `affine_grid`/`grid_sample`.

Flips are off unless allowed: a left-right flip turns a normal chest X-ray into situs inversus,
so each modality preset says which flips are anatomically harmless (``hflip: false`` for chest).
Intensity changes are relative to each image's own range, so they work the same on HU, raw
ultrasound or [0, 1]-scaled pixels.

Detection batches use `BoxAugment` (configured by `BoxAugmentConfig`, presets in
`DETECTION_PRESETS`), which moves boxes with their image::

    aug = BoxAugment(BoxAugmentConfig.from_config("detection"))
    x, boxes, labels = aug(x, boxes, labels, generator)

``x`` is a 2D batch ``(N, C, H, W)``; ``boxes[i]`` is image i's ``(N_i, 4)`` xyxy array (numpy or
torch, pixel edges as in `medsight.boxes`) and ``labels[i]`` its ``(N_i,)`` class indices.
It returns the new batch (same shape) and, per image, the moved boxes as float32 and their
labels as int64 tensors on ``x``'s device; boxes left with less than ``min_visible`` of their
area inside the image are dropped together with their labels.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from medsight.errors import InvalidConfig
from medsight.models.torch_inference import FlipView, flip_views

# Named starting points; a config may name one (``{"preset": "chest", "rotate": 5}``).
PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "light": {"hflip": True, "rotate": 10, "scale": (0.9, 1.1), "translate": 0.05,
              "brightness": 0.1, "contrast": 0.1},
    # Chest X-ray / CT slices: laterality matters, so no left-right flip.
    "chest": {"rotate": 7, "scale": (0.9, 1.1), "translate": 0.05, "brightness": 0.1,
              "contrast": 0.1, "gamma": (0.8, 1.25)},
    "ultrasound": {"hflip": True, "rotate": 10, "scale": (0.9, 1.1), "translate": 0.05,
                   "brightness": 0.15, "contrast": 0.15, "gamma": (0.8, 1.25), "noise": 0.02},
    # Fundus, dermoscopy, histology, blood smears: no preferred orientation.
    "rotation_invariant": {"hflip": True, "vflip": True, "rotate": 180, "scale": (0.9, 1.1),
                           "brightness": 0.1, "contrast": 0.1},
    # CT/MR volumes: small rotations and zoom, laterality kept.
    "volume": {"rotate": 10, "scale": (0.9, 1.1), "translate": 0.05, "brightness": 0.1,
               "contrast": 0.1},
    # Binary masks / segmentations (e.g. AdrenalMNIST3D): geometry only, since intensity changes
    # would only blur the two labels; left-right flip, as left and right organs mirror each other.
    "mask": {"hflip": True, "rotate": 15, "scale": (0.9, 1.1), "translate": 0.05},
}


@dataclass(frozen=True)
class AugmentConfig:
    """What to randomise. Every field off by default (``AugmentConfig()`` is the identity).

    hflip/vflip/dflip: flip the width/height/depth axis with probability 0.5 each.
    rotate: max angle in degrees (2D in-plane; 3D about each axis). scale: zoom range.
    translate: max shift as a fraction of the size. crop: random resized crop, the kept area
    fraction range (aspect ratio within ``crop_ratio``). p_affine: chance a sample gets the
    geometric transform. brightness: shift of up to this fraction of the image range;
    contrast: factor in [1-c, 1+c] about the mean; gamma: exponent range on the min-max scaled
    image; noise: Gaussian std as a fraction of the range. cutout: side of one erased box as a
    fraction of the size. mixup / cutmix: Beta(alpha, alpha) mixing of pairs, applied to a batch
    with probability ``mix_prob``.
    """

    hflip: bool = False
    vflip: bool = False
    dflip: bool = False
    rotate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    translate: float = 0.0
    crop: tuple[float, float] | None = None
    crop_ratio: tuple[float, float] = (3 / 4, 4 / 3)
    p_affine: float = 1.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: tuple[float, float] | None = None
    noise: float = 0.0
    cutout: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0
    mix_prob: float = 1.0

    @classmethod
    def from_config(cls, config: str | Mapping[str, Any] | AugmentConfig | None) -> AugmentConfig:
        """Build from a preset name, a mapping (optionally with ``preset``) or None (= none)."""
        if isinstance(config, AugmentConfig):
            return config
        return _config_from(
            cls, config, PRESETS, ("scale", "crop", "crop_ratio", "gamma"),
            ("rotate", "translate", "brightness", "contrast", "noise", "cutout", "mixup", "cutmix"),
        )

    @property
    def has_affine(self) -> bool:
        return bool(self.rotate or self.translate or self.scale != (1.0, 1.0) or self.crop)

    @property
    def has_mix(self) -> bool:
        return bool(self.mixup or self.cutmix)

    def strong(self) -> AugmentConfig:
        """A heavier variant for consistency training (FixMatch); flip permissions are kept."""
        return replace(
            self,
            rotate=max(self.rotate, 30.0),
            scale=(min(self.scale[0], 0.8), max(self.scale[1], 1.2)),
            translate=max(self.translate, 0.125),
            p_affine=1.0,
            brightness=max(self.brightness, 0.3),
            contrast=max(self.contrast, 0.3),
            gamma=(0.7, 1.5) if self.gamma is None else (min(self.gamma[0], 0.7),
                                                          max(self.gamma[1], 1.5)),
            noise=max(self.noise, 0.03),
            cutout=max(self.cutout, 0.25),
            mixup=0.0,
            cutmix=0.0,
        )

    def flip_axes(self, spatial_dims: int) -> list[int]:
        """Tensor axes (negative) that may be flipped: width, height, depth as allowed."""
        axes = []
        if self.hflip:
            axes.append(-1)
        if self.vflip:
            axes.append(-2)
        if self.dflip and spatial_dims == 3:
            axes.append(-3)
        return axes


def _config_from(
    cls: Any,
    config: str | Mapping[str, Any] | None,
    presets: Mapping[str, Mapping[str, Any]],
    ranges: tuple[str, ...],
    non_negative: tuple[str, ...],
) -> Any:
    """A config dataclass from a preset name or a mapping (optionally naming a ``preset``), with
    `ranges` checked as [low, high] > 0 pairs, `non_negative` as >= 0 and ``crop`` within (0, 1]."""
    if config is None or config is False:
        return cls()
    if isinstance(config, str):
        config = {"preset": config}
    if not isinstance(config, Mapping):
        raise InvalidConfig(f"augment must be a preset name or a mapping, got {config!r}")
    values = dict(config)
    preset = values.pop("preset", "none")
    if preset not in presets:
        raise InvalidConfig(f"unknown augmentation preset {preset!r}; known: {sorted(presets)}")
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise InvalidConfig(f"unknown augmentation option(s) {unknown}; known: {sorted(names)}")
    merged = {**presets[preset], **values}
    for key in ranges:
        if merged.get(key) is not None:
            pair = tuple(float(v) for v in merged[key])
            if len(pair) != 2 or pair[0] > pair[1] or pair[0] <= 0:
                raise InvalidConfig(f"augment {key} must be a range [low, high] > 0, got {pair}")
            merged[key] = pair
    cfg = cls(**merged)
    for key in non_negative:
        if float(getattr(cfg, key)) < 0:
            raise InvalidConfig(f"augment {key} must be >= 0, got {getattr(cfg, key)}")
    if cfg.crop is not None and cfg.crop[1] > 1:
        raise InvalidConfig(f"augment crop is a kept-area fraction in (0, 1], got {cfg.crop}")
    return cfg


class BatchAugment:
    """Apply an `AugmentConfig` to a batch: ``aug(x, generator) -> x`` (input left untouched)."""

    def __init__(self, config: AugmentConfig, spatial_dims: int):
        if spatial_dims not in (2, 3):
            raise InvalidConfig(f"augmentation supports 2D and 3D images, not {spatial_dims}D")
        self.config = config
        self.spatial_dims = spatial_dims

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        c = self.config
        n = x.shape[0]
        if n == 0:
            return x
        for axis in c.flip_axes(self.spatial_dims):
            mask = _rand(n, generator, x.device) < 0.5
            x = torch.where(_bcast(mask, x), x.flip(axis), x)
        if c.has_affine:
            x = self._affine(x, generator)
        if c.brightness or c.contrast or c.gamma or c.noise:
            x = self._intensity(x, generator)
        if c.cutout:
            x = self._cutout(x, generator)
        return x

    # -- geometry ------------------------------------------------------------------------
    def _affine(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, n, d = self.config, x.shape[0], self.spatial_dims
        rot = _rotations(n, d, math.radians(c.rotate), g)
        zoom = _uniform(n, *c.scale, g)
        # per-axis fraction of the input seen by the output (crop) and its offset
        frac = torch.ones(n, d)
        if c.crop is not None:
            area = _uniform(n, *c.crop, g)
            log_r = _uniform(n, math.log(c.crop_ratio[0]), math.log(c.crop_ratio[1]), g)
            ratio = torch.exp(log_r)  # width / height (2D); volumes are cropped as cubes
            if d == 2:
                frac[:, 0] = torch.sqrt(area * ratio).clamp(max=1.0)
                frac[:, 1] = torch.sqrt(area / ratio).clamp(max=1.0)
            else:
                frac[:] = area.pow(1 / 3).unsqueeze(1)
        offset = (2 * torch.rand(n, d, generator=g) - 1) * (1 - frac)
        offset = offset + (2 * torch.rand(n, d, generator=g) - 1) * 2 * c.translate
        # affine_grid works in normalised coordinates with axes (x=W, y=H, z=D): rotate in
        # physical (pixel) units so non-square images are not sheared.
        sizes = torch.tensor(list(reversed(x.shape[2:])), dtype=torch.float32)
        to_px = torch.diag_embed(sizes.expand(n, d))
        from_px = torch.diag_embed((1 / sizes).expand(n, d))
        lin = from_px @ rot @ to_px @ torch.diag_embed(frac / zoom.unsqueeze(1))
        theta = torch.cat([lin, offset.unsqueeze(2)], dim=2)
        apply = _rand(n, g, torch.device("cpu")) < c.p_affine
        if not bool(apply.any()):
            return x
        theta = theta[apply].to(device=x.device, dtype=torch.float32)
        sub = x[apply.to(x.device)]
        grid = F.affine_grid(theta, list(sub.shape), align_corners=False)
        # fill what comes from outside the image with each image's own minimum (background)
        low = sub.amin(dim=tuple(range(1, sub.ndim)), keepdim=True)
        moved = F.grid_sample(
            (sub - low).float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False
        ).to(sub.dtype) + low
        out = x.clone()
        out[apply.to(x.device)] = moved
        return out

    # -- intensity -----------------------------------------------------------------------
    def _intensity(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        c, n = self.config, x.shape[0]
        dims = tuple(range(1, x.ndim))
        low = x.amin(dim=dims, keepdim=True)
        high = x.amax(dim=dims, keepdim=True)
        span = (high - low).clamp_min(1e-6)
        if c.gamma is not None:
            gamma = torch.exp(_uniform(n, math.log(c.gamma[0]), math.log(c.gamma[1]), g))
            unit = ((x - low) / span).clamp(0, 1)
            x = unit.pow(_bcast(gamma.to(x.device), x)) * span + low
        if c.contrast:
            factor = _uniform(n, 1 - c.contrast, 1 + c.contrast, g).to(x.device)
            mean = x.mean(dim=dims, keepdim=True)
            x = (x - mean) * _bcast(factor, x) + mean
        if c.brightness:
            shift = _uniform(n, -c.brightness, c.brightness, g).to(x.device)
            x = x + _bcast(shift, x) * span
        if c.noise:
            noise = torch.randn(x.shape, generator=g).to(x.device)
            x = x + noise * c.noise * span
        return x

    def _cutout(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, shape = x.shape[0], x.shape[2:]
        mask = torch.zeros((n, 1, *shape), dtype=torch.bool)
        for i in range(n):
            box = _random_box(shape, self.config.cutout ** len(shape), g)
            mask[(i, 0, *box)] = True
        low = x.amin(dim=tuple(range(1, x.ndim)), keepdim=True)
        return torch.where(mask.to(x.device), low.expand_as(x), x)

    # -- batch mixing --------------------------------------------------------------------
    def mix(
        self, x: torch.Tensor, g: torch.Generator
    ) -> tuple[torch.Tensor, torch.Tensor | None, float]:
        """Mixup or CutMix: ``(mixed, perm, lam)``; the loss is lam*L(y) + (1-lam)*L(y[perm]).

        Returns ``perm=None`` (and lam 1) when mixing is off or skipped for this batch.
        """
        c, n = self.config, x.shape[0]
        if not c.has_mix or n < 2 or float(torch.rand(1, generator=g)) >= c.mix_prob:
            return x, None, 1.0
        use_cutmix = bool(c.cutmix) and (not c.mixup or float(torch.rand(1, generator=g)) < 0.5)
        alpha = c.cutmix if use_cutmix else c.mixup
        lam = _sample_beta(float(alpha), g)
        perm = torch.randperm(n, generator=g)
        perm_dev = perm.to(x.device)
        if not use_cutmix:
            return lam * x + (1 - lam) * x[perm_dev], perm_dev, lam
        shape = x.shape[2:]
        box = _random_box(shape, 1 - lam, g)
        out = x.clone()
        region = (slice(None), slice(None), *box)
        out[region] = x[perm_dev][region]
        kept = 1 - math.prod(s.stop - s.start for s in box) / math.prod(shape)
        return out, perm_dev, kept


def flip_variants(config: AugmentConfig, spatial_dims: int) -> list[FlipView]:
    """Test-time augmentation views: identity plus each allowed single-axis flip."""
    return flip_views(config.flip_axes(spatial_dims))


# -- detection: boxes move with their image -------------------------------------------------
# Named starting points for `BoxAugmentConfig` (``{"preset": "detection", "rotate": 5}``).
DETECTION_PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    # Blood smears, microscopy, dermoscopy: no preferred orientation, cells of varying size.
    "detection": {"hflip": True, "vflip": True, "scale": (0.8, 1.25), "crop": (0.6, 1.0),
                  "brightness": 0.1, "contrast": 0.1, "saturation": 0.1, "hue": 0.02},
    # Chest radiographs and CT slices: laterality kept, mild zoom and intensity changes only.
    "detection_chest": {"scale": (0.9, 1.1), "crop": (0.8, 1.0), "brightness": 0.1,
                        "contrast": 0.1},
}


@dataclass(frozen=True)
class BoxAugmentConfig:
    """What `BoxAugment` randomises for a detection batch; ``BoxAugmentConfig()`` is the identity.

    hflip/vflip: flip width/height with probability 0.5 each. scale: zoom range (> 1 enlarges
    objects, < 1 shrinks them and pads the border). crop: kept-area fraction range of a random
    crop resized to the full image (a zoom in by 1/sqrt(area) at a random position). translate:
    extra shift of up to this fraction of the size. rotate: max in-plane angle in degrees, off by
    default (a rotated box is the enclosing box of its rotated corners, so it loosens).
    p_geometric: chance a sample gets the geometric transform. brightness/contrast: as in
    `AugmentConfig` (relative to each image's range); saturation: blend factor in [1-s, 1+s]
    with the grey image, hue: rotation of the chroma by up to this fraction of a full turn (both
    RGB only; single-channel images get brightness/contrast alone). min_visible: a box keeping
    less than this fraction of its (transformed) area inside the image is dropped.
    """

    hflip: bool = False
    vflip: bool = False
    scale: tuple[float, float] = (1.0, 1.0)
    crop: tuple[float, float] | None = None
    translate: float = 0.0
    rotate: float = 0.0
    p_geometric: float = 1.0
    brightness: float = 0.0
    contrast: float = 0.0
    saturation: float = 0.0
    hue: float = 0.0
    min_visible: float = 0.4

    @classmethod
    def from_config(
        cls, config: str | Mapping[str, Any] | BoxAugmentConfig | None
    ) -> BoxAugmentConfig:
        """Build from a preset name of `DETECTION_PRESETS`, a mapping or None (= none)."""
        if isinstance(config, BoxAugmentConfig):
            return config
        cfg = _config_from(
            cls, config, DETECTION_PRESETS, ("scale", "crop"),
            ("translate", "rotate", "brightness", "contrast", "saturation", "hue", "min_visible"),
        )
        if cfg.min_visible > 1 or cfg.hue > 0.5:
            raise InvalidConfig(
                f"augment min_visible must be in [0, 1] and hue in [0, 0.5], got "
                f"{cfg.min_visible} and {cfg.hue}"
            )
        return cfg

    @property
    def has_geometry(self) -> bool:
        return bool(self.hflip or self.vflip or self.rotate or self.translate or self.crop
                    or self.scale != (1.0, 1.0))


class BoxAugment:
    """Apply a `BoxAugmentConfig` to a 2D batch and its boxes with one random transform per image:
    ``aug(x, boxes, labels, generator) -> (x, boxes, labels)`` (inputs left untouched)."""

    def __init__(self, config: BoxAugmentConfig):
        self.config = config
        self._levels = BatchAugment(
            AugmentConfig(brightness=config.brightness, contrast=config.contrast), 2
        )

    def __call__(
        self,
        x: torch.Tensor,
        boxes: Sequence[torch.Tensor | np.ndarray],
        labels: Sequence[torch.Tensor | np.ndarray],
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, list[torch.Tensor], list[torch.Tensor]]:
        if x.ndim != 4:
            raise InvalidConfig(f"box augmentation needs a (N, C, H, W) batch, got {tuple(x.shape)}")
        n, _, h, w = x.shape
        if not len(boxes) == len(labels) == n:
            raise ValueError(f"{n} images need {n} box arrays and label arrays, got "
                             f"{len(boxes)} and {len(labels)}")
        xyxy = [torch.as_tensor(b, dtype=torch.float64).reshape(-1, 4).cpu() for b in boxes]
        lab = [torch.as_tensor(v, dtype=torch.int64).reshape(-1).cpu() for v in labels]
        for b, v in zip(xyxy, lab, strict=True):
            if len(b) != len(v):
                raise ValueError(f"{len(b)} boxes but {len(v)} labels in one image")
        if n and self.config.has_geometry:
            forward = self._forward_matrices(n, h, w, generator)
            x = _warp(x, forward)
            moved = [_move_boxes(b, m, h, w, self.config.min_visible) for b, m in zip(xyxy, forward,
                                                                                     strict=True)]
            xyxy = [b[keep] for b, keep in moved]
            lab = [v[keep] for v, (_, keep) in zip(lab, moved, strict=True)]
        if n and (self.config.saturation or self.config.hue) and x.shape[1] == 3:
            x = self._colour(x, generator)
        if n and (self.config.brightness or self.config.contrast):
            x = self._levels(x, generator)
        device = x.device
        return (x, [b.to(device=device, dtype=torch.float32) for b in xyxy],
                [v.to(device) for v in lab])

    def _forward_matrices(self, n: int, h: int, w: int, g: torch.Generator) -> torch.Tensor:
        """(n, 3, 3) maps from input to output pixel coordinates (x = column, y = row, edges)."""
        c = self.config
        size = torch.tensor([w, h], dtype=torch.float64)
        flip = torch.ones(n, 2, dtype=torch.float64)
        if c.hflip:
            flip[:, 0] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        if c.vflip:
            flip[:, 1] = torch.where(torch.rand(n, generator=g) < 0.5, -1.0, 1.0)
        zoom = _uniform(n, *c.scale, g).double()
        if c.crop is not None:
            zoom = zoom / _uniform(n, *c.crop, g).double().sqrt()
        # the window of the (flipped) input that fills the output, centred at `centre`
        slack = (size / 2 - size / (2 * zoom.unsqueeze(1))).abs()
        centre = size / 2 + (2 * torch.rand(n, 2, generator=g).double() - 1) * slack
        if c.translate:
            centre = centre + (2 * torch.rand(n, 2, generator=g).double() - 1) * c.translate * size
        angle = _uniform(n, -math.radians(c.rotate), math.radians(c.rotate), g).double()
        eye = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        flip_m, shift_in, rot, shift_out = eye.clone(), eye.clone(), eye.clone(), eye.clone()
        flip_m[:, 0, 0], flip_m[:, 1, 1] = flip[:, 0], flip[:, 1]
        flip_m[:, :2, 2] = (1 - flip) / 2 * size  # x -> W - x where flipped
        shift_in[:, :2, 2] = -centre
        cos, sin = torch.cos(angle) * zoom, torch.sin(angle) * zoom
        rot[:, 0, 0], rot[:, 0, 1], rot[:, 1, 0], rot[:, 1, 1] = cos, -sin, sin, cos
        shift_out[:, :2, 2] = size / 2
        forward = shift_out @ rot @ shift_in @ flip_m
        skip = torch.rand(n, generator=g) >= c.p_geometric
        forward[skip] = eye[skip]
        return forward

    def _colour(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Saturation and hue jitter of RGB images, linear in the pixel values (any scale)."""
        c, n = self.config, x.shape[0]
        yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322],
                            [0.211, -0.523, 0.312]], dtype=torch.float64)
        sat = _uniform(n, 1 - c.saturation, 1 + c.saturation, g).double()
        turn = _uniform(n, -c.hue, c.hue, g).double() * 2 * math.pi
        mix = torch.eye(3, dtype=torch.float64).repeat(n, 1, 1)
        mix[:, 1, 1], mix[:, 1, 2] = sat * torch.cos(turn), -sat * torch.sin(turn)
        mix[:, 2, 1], mix[:, 2, 2] = sat * torch.sin(turn), sat * torch.cos(turn)
        m = (torch.linalg.inv(yiq) @ mix @ yiq).to(device=x.device, dtype=x.dtype)
        return torch.einsum("nij,njhw->nihw", m, x)


def _warp(x: torch.Tensor, forward: torch.Tensor) -> torch.Tensor:
    """Resample each image by its input->output pixel map; the border is filled with the image's
    per-channel mean. Images whose map is the identity are copied exactly."""
    n, _, h, w = x.shape
    moving = ~torch.all((forward - torch.eye(3, dtype=forward.dtype)).abs() < 1e-12, dim=(1, 2))
    if not bool(moving.any()):
        return x
    to_norm = torch.tensor([[2 / w, 0, -1], [0, 2 / h, -1], [0, 0, 1]], dtype=torch.float64)
    theta = to_norm @ torch.linalg.inv(forward[moving]) @ torch.linalg.inv(to_norm)
    sub = x[moving.to(x.device)]
    grid = F.affine_grid(theta[:, :2].to(device=x.device, dtype=torch.float32), list(sub.shape),
                         align_corners=False)
    mean = sub.mean(dim=(2, 3), keepdim=True)
    moved = F.grid_sample((sub - mean).float(), grid, mode="bilinear", padding_mode="zeros",
                          align_corners=False).to(sub.dtype) + mean
    out = x.clone()
    out[moving.to(x.device)] = moved
    return out


def _move_boxes(
    xyxy: torch.Tensor, forward: torch.Tensor, h: int, w: int, min_visible: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Boxes mapped by `forward` (enclosing box of the moved corners), clipped to the image, and
    the mask of those keeping at least `min_visible` of their area and a positive size."""
    if not len(xyxy):
        return xyxy, torch.zeros(0, dtype=torch.bool)
    x1, y1, x2, y2 = xyxy.unbind(1)
    corners = torch.stack([torch.stack([x1, y1], 1), torch.stack([x2, y1], 1),
                           torch.stack([x1, y2], 1), torch.stack([x2, y2], 1)], 1)  # (B, 4, 2)
    moved = corners @ forward[:2, :2].T + forward[:2, 2]
    low, high = moved.amin(dim=1), moved.amax(dim=1)
    full = (high - low).prod(dim=1)
    limit = torch.tensor([w, h], dtype=torch.float64)
    low_c, high_c = low.clamp(min=0).minimum(limit), high.clamp(min=0).minimum(limit)
    side = high_c - low_c
    kept = side.prod(dim=1)
    keep = (side > 0).all(dim=1) & (kept >= min_visible * full)
    return torch.cat([low_c, high_c], dim=1), keep


# -- helpers ---------------------------------------------------------------------------------
def _rand(n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=g).to(device)


def _uniform(n: int, low: float, high: float, g: torch.Generator) -> torch.Tensor:
    return low + (high - low) * torch.rand(n, generator=g)


def _bcast(v: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    return v.view(-1, *([1] * (x.ndim - 1)))


def _sample_beta(alpha: float, g: torch.Generator) -> float:
    """Beta(alpha, alpha) draw seeded from `g`, so the global generators are not consumed."""
    seed = int(torch.randint(0, 2**62, (1,), generator=g))
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def _rotations(n: int, d: int, max_angle: float, g: torch.Generator) -> torch.Tensor:
    if d == 2:
        a = _uniform(n, -max_angle, max_angle, g)
        cos, sin = torch.cos(a), torch.sin(a)
        return torch.stack([torch.stack([cos, -sin], 1), torch.stack([sin, cos], 1)], 1)
    rot = torch.eye(3).expand(n, 3, 3)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        a = _uniform(n, -max_angle, max_angle, g)
        r = torch.eye(3).repeat(n, 1, 1)
        r[:, i, i] = torch.cos(a)
        r[:, j, j] = torch.cos(a)
        r[:, i, j] = -torch.sin(a)
        r[:, j, i] = torch.sin(a)
        rot = r @ rot
    return rot


def _random_box(shape: torch.Size | tuple[int, ...], area: float, g: torch.Generator) -> tuple:
    """Slices of a random box covering about `area` of an array of `shape` (one side ratio)."""
    side = max(0.0, min(1.0, area)) ** (1 / len(shape))
    slices = []
    for size in shape:
        length = int(round(size * side))
        centre = int(torch.randint(0, size, (1,), generator=g))
        start = max(0, min(size - length, centre - length // 2))
        slices.append(slice(start, start + length))
    return tuple(slices)
