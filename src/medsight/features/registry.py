"""Feature extractors by name: one decorated class or factory per extractor, timm style.

Built-in names: ``stats``, ``hog``, ``lbp``, ``glcm``, ``shape``. Another extractor (e.g. CNN
embeddings) joins with ``register_feature("cnn")`` on its class or factory function;
``make_features`` then builds it by name like the others.
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


# Extractors living in heavier packages register when first asked for, not at import.
_LAZY = {"cnn": "medsight.models.torch_classifier"}


def feature_factory(name: str) -> Factory:
    """The factory registered under `name`; InvalidConfig listing the known names otherwise."""
    if name not in _FACTORIES and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    try:
        return _FACTORIES[name]
    except KeyError:
        raise InvalidConfig(
            f"unknown feature extractor {name!r}; available: {available_features()}"
        ) from None


def available_features() -> list[str]:
    """Registered extractor names (including lazily registered ones), sorted."""
    return sorted(set(_FACTORIES) | set(_LAZY))
