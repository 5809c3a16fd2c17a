"""Estimator kinds by name: the one place a new kind registers (one line in `_KINDS`).

`load_estimator`, the experiment config (``kind:``) and `experiment` find classes here. Each
entry imports its module when asked for, so a classical run never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from medsight.errors import InvalidConfig

if TYPE_CHECKING:
    from medsight.models.base import MedsightEstimator


def _classical() -> type[MedsightEstimator]:
    from medsight.models.classical import ClassicalClassifier

    return ClassicalClassifier


def _torch() -> type[MedsightEstimator]:
    from medsight.models.torch_classifier import TorchClassifier

    return TorchClassifier


def _torch_ensemble() -> type[MedsightEstimator]:
    from medsight.models.torch_ensemble import TorchEnsemble

    return TorchEnsemble


def _detector() -> type[MedsightEstimator]:
    from medsight.models.torch_detector import TorchDetector

    return TorchDetector


_KINDS: dict[str, Callable[[], type[MedsightEstimator]]] = {
    "classical": _classical,
    "torch": _torch,
    "torch_ensemble": _torch_ensemble,
    "detector": _detector,
}


def estimator_kinds() -> list[str]:
    """The registered kind names, in registration order."""
    return list(_KINDS)


def estimator_class(kind: str) -> type[MedsightEstimator]:
    """The estimator class of `kind`; InvalidConfig naming the known kinds otherwise."""
    if kind not in _KINDS:
        raise InvalidConfig(f"unknown estimator kind {kind!r}; known: {estimator_kinds()}")
    cls = _KINDS[kind]()
    if cls.kind != kind:
        raise InvalidConfig(f"estimator kind {kind!r} is registered with {cls.__name__}, "
                            f"whose kind is {cls.kind!r}")
    return cls
