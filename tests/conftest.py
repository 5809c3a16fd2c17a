"""Shared fixtures: where the real data lives, and skips that say why when it is absent."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

SHARED_DATA = Path(
    os.environ.get("MEDSIGHT_SHARED_DATA", Path(__file__).resolve().parents[1] / ".." / "shared" / "data")
).resolve()


def shared_path(*parts: str) -> Path:
    """Path inside ../shared/data; skips the calling test, naming the path, when it is missing."""
    p = SHARED_DATA.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"real data not found at {p} (set MEDSIGHT_SHARED_DATA or see shared/data/MANIFEST.md)")
    return p


@pytest.fixture
def shared_data() -> Path:
    return shared_path()


@pytest.fixture
def breastmnist() -> Path:
    return shared_path("medmnist", "breastmnist.npz")


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file outside any package (a bench script, a test helper) once, as `name`.

    Every user gets the one module object; a second import would, e.g., register the tiny test
    networks twice.
    """
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def tiny_nets() -> ModuleType:
    """tests/train/tiny_nets.py imported once as `tiny_nets` (it registers the tiny test networks)."""
    return load_module("tiny_nets", Path(__file__).resolve().parent / "train" / "tiny_nets.py")


@pytest.fixture
def two_torch_threads():
    """Torch on 2 threads for one test (CI has 2 cores), the previous count restored after."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
