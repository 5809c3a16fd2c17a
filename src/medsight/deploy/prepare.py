"""`PreparePlan`: what turns one image as read into the model's input (channels, the bundle's
saved preprocessing, the shape check, out-of-distribution checks). Small and picklable, so decode
workers can prepare inputs in parallel with inference; the `Predictor` runs the same plan."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from medsight.deploy.ood import ood_warnings
from medsight.errors import InvalidConfig, MedsightError
from medsight.io.image import Image
from medsight.preprocess import Preprocess
from medsight.preprocess.channels import ToChannels

# per process: the parsed chain of each plan, by fingerprint (a worker parses it once)
_CHAINS: dict[str, Preprocess] = {}


@dataclass
class Prepared:
    """One input read and preprocessed: the model input (`tensor`, an `Image` whose metadata
    records its geometry), warnings, a summary of the image as read and the timings so far.
    `image` (the image as read) is kept only when a heatmap will be drawn on it. `spatial_shape`
    is the image's (rows, cols[, ...]) as read and `geometry_before` how many geometry records it
    already carried, so boxes map back through only what the preprocessing added."""

    source: str
    tensor: Image
    warnings: list[str]
    summary: dict[str, Any]
    read_ms: float
    preprocess_ms: float
    checks_ms: float
    image: Image | None = field(default=None, repr=False)
    spatial_shape: tuple[int, ...] = ()
    geometry_before: int = 0


@dataclass(frozen=True)
class PreparePlan:
    """The preparation of a bundle's inputs, as plain data (the chain as its JSON)."""

    preprocess_json: str
    fingerprint: str
    channels: int | None
    input_spec: dict[str, Any]
    input_shape: tuple[int, ...]

    @classmethod
    def of(cls, manifest: dict[str, Any], preprocess: Preprocess, input_shape: tuple[int, ...]
           ) -> PreparePlan:
        trained = (manifest["input"].get("raw") or {}).get("channels") or []
        fingerprint = preprocess.fingerprint()
        _CHAINS.setdefault(fingerprint, preprocess)
        return cls(preprocess.to_json(), fingerprint, int(trained[0]) if len(trained) == 1 else None,
                   dict(manifest["input"]), tuple(input_shape))

    @property
    def preprocess(self) -> Preprocess:
        chain = _CHAINS.get(self.fingerprint)
        if chain is None:
            chain = _CHAINS[self.fingerprint] = Preprocess.from_json(self.preprocess_json)
        return chain

    def prepare(self, source: str, image: Image, read_ms: float = 0.0, keep_image: bool = True
                ) -> Prepared | MedsightError:
        """`image` as the model takes it, or the `MedsightError` saying why it cannot be."""
        t0 = time.perf_counter()
        try:
            converted = image
            if self.channels is not None and image.channels != self.channels:
                converted = ToChannels(self.channels)(image)
            tensor = self.preprocess(converted)
        except MedsightError as exc:
            return exc
        if tuple(tensor.pixels.shape) != self.input_shape:
            return InvalidConfig(
                f"{source}: after the bundle's preprocessing the image has shape "
                f"{tuple(tensor.pixels.shape)}, the model takes {self.input_shape}")
        preprocess_ms = (time.perf_counter() - t0) * 1e3
        t1 = time.perf_counter()
        warnings = ood_warnings(image, tensor.pixels, self.input_spec)
        return Prepared(source, tensor, warnings, image_summary(image), read_ms, preprocess_ms,
                        (time.perf_counter() - t1) * 1e3, image if keep_image else None,
                        tuple(image.spatial_shape), len(image.metadata.get("geometry", [])))


def image_summary(image: Image) -> dict[str, Any]:
    """What was read, without patient identifiers."""
    px = image.pixels
    return {
        "shape": list(px.shape),
        "channels": image.channels,
        "modality": image.modality,
        "photometric": image.photometric,
        "spacing": list(image.spacing),
        "min": float(px.min()) if px.size else None,
        "max": float(px.max()) if px.size else None,
    }


__all__ = ["PreparePlan", "Prepared", "image_summary"]
