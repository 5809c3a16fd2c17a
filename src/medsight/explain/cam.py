"""Class activation maps (Zhou et al. 2016): the last feature maps weighted by the linear head, for
networks whose head reads a global average pool, so the map says where the class evidence lies."""

from __future__ import annotations

import numpy as np

from medsight.errors import InvalidConfig


def class_weights(weights: np.ndarray, class_index: int, softmax: bool = True) -> np.ndarray:
    """The head row that moves class `class_index`'s probability: for a softmax head (K > 1
    rows) the row minus the mean row (logit differences are what softmax sees); for independent
    sigmoids (``softmax=False``, multilabel) the row itself; a single row (one sigmoid) is the
    positive direction, negated for class 0 of a binary task."""
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim != 2:
        raise InvalidConfig(f"CAM head weights must be (classes, features), got shape {w.shape}")
    if w.shape[0] == 1:
        return w[0] if class_index != 0 else -w[0]
    if not 0 <= class_index < w.shape[0]:
        raise InvalidConfig(f"class index {class_index} is outside the head's {w.shape[0]} rows")
    return w[class_index] - w.mean(axis=0) if softmax else w[class_index]


def class_activation_map(features: np.ndarray, weights: np.ndarray, class_index: int,
                         softmax: bool = True) -> np.ndarray:
    """CAM of one sample: `features` (F, *spatial) weighted by the head row of `class_index`,
    negative evidence cut at zero and scaled to [0, 1] (all zeros when nothing supports it)."""
    maps = np.asarray(features, dtype=np.float64)
    w = class_weights(weights, class_index, softmax)
    if maps.ndim < 2 or maps.shape[0] != w.shape[0]:
        raise InvalidConfig(
            f"feature maps of shape {maps.shape} do not match the head's {w.shape[0]} features"
        )
    cam = np.tensordot(w, maps, axes=(0, 0))
    return normalise(cam)


def normalise(heat: np.ndarray) -> np.ndarray:
    """Positive part scaled so the maximum is 1 (all zeros stay zeros)."""
    heat = np.clip(np.nan_to_num(np.asarray(heat, dtype=np.float64)), 0.0, None)
    top = float(heat.max()) if heat.size else 0.0
    return heat / top if top > 0 else heat
