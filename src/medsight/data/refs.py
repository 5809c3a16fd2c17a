"""Pixel references: a record names its pixels by a string, resolved lazily to an `Image`.

A plain path (or ``file:`` URL) is read with `medsight.io.read_image`. Other sources register a
scheme (``npz:``, ``phantom:``, ``cifar:``, ``series:``, ``region:`` ...) with a resolver when
`medsight.data.sources` is imported (which `medsight.data` does), so a dataset table stays small
and pixels are only decoded when a sample is asked for.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from medsight.errors import UnreadableImage
from medsight.io.image import Image

Resolver = Callable[[str, dict[str, Any]], Image]
_RESOLVERS: dict[str, Resolver] = {}


def register_scheme(scheme: str, resolver: Resolver) -> None:
    """Make ``scheme:...`` references resolvable by `resolver(ref_without_scheme, meta)`."""
    _RESOLVERS[scheme] = resolver


def split_ref(ref: str) -> tuple[str | None, str]:
    """Return (scheme, rest) for registered schemes, or (None, ref) for a file path."""
    head, sep, rest = ref.partition(":")
    if sep and head in _RESOLVERS:
        return head, rest
    if ref.startswith("file://"):
        return None, ref[len("file://") :]
    return None, ref


def resolve(ref: str, meta: dict[str, Any] | None = None) -> Image:
    """Load the pixels a reference points to; raises `UnreadableImage` on any failure."""
    from medsight.io import read_image

    scheme, rest = split_ref(ref)
    if scheme is None:
        return read_image(rest)
    try:
        return _RESOLVERS[scheme](rest, meta or {})
    except UnreadableImage:
        raise
    except Exception as exc:  # a resolver's library error becomes our error, naming the ref
        raise UnreadableImage(ref, f"{type(exc).__name__}: {exc}") from exc

