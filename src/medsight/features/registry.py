"""Feature extractors by name: one decorated class or factory per extractor, timm style.

Built-in names: ``stats``, ``hog``, ``lbp``, ``glcm``, ``shape``, ``cnn``; each module registers
its extractor with ``register_feature(name)`` on its class or factory when ``medsight.features``
imports it, and ``make_features`` builds it by name.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from medsight.errors import InvalidConfig

Factory = Callable[..., Any]
F = TypeVar("F", bound=Factory)

_FACTORIES: dict[str, Factory] = {}


def register_feature(name: str, *, replace: bool = False) -> Callable[[F], F]:
    """Decorator registering a transformer class or factory under `name`.

    The factory is called with keyword parameters and must return a scikit-learn transformer
    with ``get_feature_names_out``. Registering a taken name raises unless ``replace=True``.
    """

    def decorate(factory: F) -> F:
        if name in _FACTORIES and not replace and _FACTORIES[name] is not factory:
            raise InvalidConfig(f"feature extractor name {name!r} is already registered")
        _FACTORIES[name] = factory
        return factory

    return decorate


def feature_factory(name: str) -> Factory:
    """The factory registered under `name`; InvalidConfig listing the known names otherwise."""
    try:
        return _FACTORIES[name]
    except KeyError:
        raise InvalidConfig(
            f"unknown feature extractor {name!r}; available: {available_features()}"
        ) from None


def available_features() -> list[str]:
    """Registered extractor names, sorted."""
    return sorted(_FACTORIES)
