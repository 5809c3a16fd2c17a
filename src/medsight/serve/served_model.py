"""`ServedModel`: one verified bundle being served: its `Predictor`, the batcher that gathers its
requests, and the public description `GET /v1/models` gives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from medsight.deploy.bundle import Bundle
from medsight.deploy.predictor import Predictor
from medsight.serve.batcher import Batcher


class ServedModel:
    """A bundle opened (and so verified: a tampered bundle raises `BundleIntegrityError` here,
    before the service starts) with its batcher; `key` is how requests name it."""

    def __init__(self, bundle: Bundle | Path, run_batch: Callable[[ServedModel, list[Any]], list[Any]],
                 max_batch: int, max_wait_ms: float,
                 on_batch: Callable[[str, int, float], None] | None = None) -> None:
        self.predictor = Predictor(bundle, batch_size=max_batch)
        m = self.predictor.bundle.manifest
        self.name: str = str(m["model"].get("name") or self.predictor.bundle.path.stem)
        self.version: str = str(m["model"].get("version") or "")
        self.key = self.name
        self.manifest = m
        self.in_flight = 0  # requests for this model accepted and not answered (event-loop owned)
        self.batcher: Batcher[Any, Any] = Batcher(
            lambda items: run_batch(self, items), max_batch=max_batch, max_wait_ms=max_wait_ms,
            name=self.name,
            on_batch=None if on_batch is None else (lambda n, s: on_batch(self.key, n, s)),
            waiting=lambda: self.in_flight)

    def describe(self, default: bool) -> dict[str, Any]:
        m = self.manifest
        spec = m.get("input") or {}
        return {"name": self.key, "version": self.version, "uuid": m["model"].get("uuid"),
                "task": m.get("task"), "classes": list(self.predictor.classes),
                "threshold": self.predictor.threshold, "default": default,
                "modality": spec.get("modality"), "volume": self.predictor.is_volume,
                "input": {"shape": list(self.predictor.runtime.input_shape)},
                "intended_use": m.get("intended_use")}

    def close(self) -> None:
        self.batcher.close()
