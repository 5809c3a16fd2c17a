"""The `Step` base class, the step registry and the helpers every preprocessing step shares.

A step is a small class whose constructor arguments are its parameters (stored as-is, validated
at construction so a bad config fails when it is loaded) and whose ``__call__`` maps an `Image`
to a new `Image` without touching its input. Steps register under a name so a chain can be
written as JSON/YAML and replayed anywhere.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

import numpy as np

from medsight.errors import InvalidConfig, MedsightError
from medsight.io.image import Image
from medsight.jsonable import jsonable

_STEPS: dict[str, type[Step]] = {}
S = TypeVar("S", bound="type[Step]")


class PreprocessingFailed(MedsightError):
    """A preprocessing step could not process an image; names the step, the image and why."""

    def __init__(self, step: str, source: str, reason: str):
        self.step = step
        self.source = source
        self.reason = reason
        super().__init__(f"preprocessing step {step!r} failed on {source}: {reason}")


def register_step(name: str) -> Callable[[S], S]:
    """Class decorator: make a `Step` subclass available to configs under `name`."""

    def deco(cls: S) -> S:
        if name in _STEPS and _STEPS[name] is not cls:
            raise ValueError(f"preprocessing step name {name!r} is already taken by {_STEPS[name]}")
        cls.name = name
        _STEPS[name] = cls
        return cls

    return deco


def known_steps() -> list[str]:
    """The registered step names, sorted."""
    return sorted(_STEPS)


def get_step(name: str) -> type[Step]:
    """The step class registered as `name`; `InvalidConfig` naming the known steps otherwise."""
    try:
        return _STEPS[name]
    except (KeyError, TypeError):
        raise InvalidConfig(
            f"unknown preprocessing step {name!r}; known steps: {', '.join(known_steps())}"
        ) from None


def build_step(name: str, params: Mapping[str, Any] | None = None) -> Step:
    """Instantiate step `name` with `params`; a wrong parameter gives `InvalidConfig`."""
    cls = get_step(name)
    params = dict(params or {})
    accepted = cls.param_names()
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        raise InvalidConfig(
            f"preprocessing step {name!r} has no parameter(s) {unknown}; "
            f"it accepts {accepted}"
        )
    try:
        return cls(**params)
    except TypeError as exc:
        raise InvalidConfig(f"preprocessing step {name!r}: {exc}") from exc


def to_plain(value: Any) -> Any:
    """A JSON-ready copy of `value` (`medsight.jsonable`); InvalidConfig for non-JSON data."""
    try:
        return jsonable(value, strict=True)
    except TypeError as exc:
        raise InvalidConfig(f"{exc}: it cannot be written to a preprocessing config") from None


class Step:
    """Base class of preprocessing steps (TorchIO/MONAI style, sklearn-style parameters).

    Subclasses store every constructor argument under an attribute of the same name, validate
    them in ``__init__`` and implement ``apply(image) -> Image``. ``__call__`` wraps `apply` so a
    library failure becomes `PreprocessingFailed` naming the step and the image.
    """

    name: ClassVar[str] = ""

    # -- parameters ---------------------------------------------------------------------
    @classmethod
    def param_names(cls) -> list[str]:
        sig = inspect.signature(cls.__init__)
        return [p for p in sig.parameters if p != "self"]

    def params(self) -> dict[str, Any]:
        """The constructor arguments, as given."""
        return {p: getattr(self, p) for p in self.param_names()}

    def to_dict(self) -> dict[str, Any]:
        """``{"name": ..., "params": {...}}`` with JSON-ready parameter values."""
        return {"name": self.name, "params": to_plain(self.params())}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Step:
        """Rebuild a step from `to_dict` output (called on `Step` it dispatches by name)."""
        if not isinstance(d, Mapping) or "name" not in d:
            raise InvalidConfig(f"a step must be a mapping with 'name' and 'params'; got {d!r}")
        step_cls = get_step(d["name"])
        if cls is not Step and not issubclass(step_cls, cls):
            raise InvalidConfig(f"{d['name']!r} is a {step_cls.__name__}, not a {cls.__name__}")
        return build_step(d["name"], d.get("params") or {})

    def with_base_dir(self, base_dir: str) -> Step:
        """This step with relative file parameters resolved against `base_dir` (default: self)."""
        return self

    # -- running ---------------------------------------------------------------------------
    def apply(self, image: Image) -> Image:  # pragma: no cover - abstract
        raise NotImplementedError

    def __call__(self, image: Image) -> Image:
        if not isinstance(image, Image):
            raise TypeError(f"{self.name} expects a medsight Image, got {type(image).__name__}")
        try:
            return self.apply(image)
        except MedsightError:
            raise
        except Exception as exc:
            reason = f"{type(exc).__name__}: {exc}"
            raise PreprocessingFailed(self.name, image.source, reason) from exc

    # -- description ----------------------------------------------------------------------
    def summary(self) -> str:
        """First line of the class docstring: what the step does, for reports."""
        doc = inspect.getdoc(type(self)) or ""
        return doc.splitlines()[0] if doc else ""

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={_short_repr(v)}" for k, v in self.params().items())
        return f"{self.name}({args})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Step):
            return NotImplemented
        try:
            return self.to_dict() == other.to_dict()
        except InvalidConfig:
            return self is other

    def __hash__(self) -> int:
        # agrees with __eq__: equal serialised forms hash alike; an unserialisable step is itself
        try:
            return hash(json.dumps(self.to_dict(), sort_keys=True))
        except InvalidConfig:
            return object.__hash__(self)


def _short_repr(value: Any) -> str:
    if isinstance(value, Image):
        return f"<Image {tuple(value.pixels.shape)} from {value.source}>"
    return repr(value)


def record(image: Image, step: str, **details: Any) -> Image:
    """Append what `step` did to ``image.metadata["preprocess"]`` (a fresh list; returns image).

    `image` must be the new image a step produced: the list is copied so the input image, which
    shares its metadata dict's values through `Image.with_pixels`, is left untouched.
    """
    entry = {"step": step, **to_plain(details)}
    image.metadata = dict(image.metadata)
    image.metadata["preprocess"] = [*image.metadata.get("preprocess", []), entry]
    return image


def spatial_size(size: int | Any, ndim: int, what: str) -> tuple[int, ...]:
    """Normalise a size (an int, or one int per spatial axis) to a tuple of `ndim` positive ints."""
    if isinstance(size, (int, np.integer)):
        out = (int(size),) * ndim
    else:
        try:
            out = tuple(int(s) for s in size)
        except TypeError:
            raise InvalidConfig(
                f"{what}: size must be an int or a list of ints, got {size!r}"
            ) from None
    if len(out) != ndim:
        raise InvalidConfig(f"{what}: size {list(out)} has {len(out)} axes, the image has {ndim}")
    if any(s < 1 for s in out):
        raise InvalidConfig(f"{what}: size {list(out)} must be positive")
    return out


def check_size_param(size: Any, what: str) -> None:
    """Validate a size parameter at construction: a positive int or a list of 2-3 positive ints."""
    if isinstance(size, bool):
        raise InvalidConfig(f"{what}: size must be an int or a list of ints, got {size!r}")
    if isinstance(size, (int, np.integer)):
        ok = size >= 1
    else:
        try:
            vals = list(size)
        except TypeError:
            ok = False
        else:
            ok = len(vals) in (2, 3) and all(
                isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1
                for v in vals
            )
    if not ok:
        raise InvalidConfig(
            f"{what}: size must be a positive int or a list of 2 or 3 positive ints, got {size!r}"
        )


def gray(pixels: np.ndarray) -> np.ndarray:
    """The channel mean of a channels-first array (spatial array, float64)."""
    return pixels.astype(np.float64).mean(axis=0)
