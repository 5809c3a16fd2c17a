"""Shared fixtures: where the real data lives, and skips that say why when it is absent."""

from __future__ import annotations

import os
from pathlib import Path

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
