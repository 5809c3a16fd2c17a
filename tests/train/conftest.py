"""Training tests: tiny networks registered (module `tiny_nets`), torch limited to 2 threads."""

from __future__ import annotations

import pytest
from conftest import tiny_nets

tiny_nets()  # registers tiny_cnn_test / tiny_cnn3d_test for every training test


@pytest.fixture(autouse=True)
def _two_threads(two_torch_threads):
    """Every training test runs with torch on 2 threads (tests/conftest.py)."""
