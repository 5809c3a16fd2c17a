"""Tiny real training runs for tests (seconds each): `run_experiment` on a few dozen real images
from shared/data, with the settings given; `torch_model` is the params of a small torch model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from medsight.config import parse_config
from medsight.experiment import run_experiment


def tiny_run(out: Path, source: Path, preprocess: list[dict[str, Any]], model: dict[str, Any],
             limit: int = 24, positive: str | None = None) -> Path:
    data: dict[str, Any] = {"source": str(source), "limit": limit}
    if positive:
        data["positive_class"] = positive
    cfg = parse_config({"name": out.name, "data": data, "preprocess": preprocess, "model": model,
                        "evaluation": {"n_boot": 100}, "output": str(out)})
    run_experiment(cfg)
    return out


def torch_model(network: str, epochs: int = 1, **extra: Any) -> dict[str, Any]:
    return {"kind": "torch", "params": {"network": network, "epochs": epochs, "batch_size": 8,
                                        "seed": 0, "threads": 2, **extra}}
