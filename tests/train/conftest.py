"""Training tests: tiny networks registered (module `tiny_nets`), torch limited to 2 threads."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch


def _load_tiny_nets():
    """Import tests/train/tiny_nets.py as `tiny_nets` (test folders are not packages)."""
    if "tiny_nets" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "tiny_nets", Path(__file__).with_name("tiny_nets.py")
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["tiny_nets"] = module
        spec.loader.exec_module(module)
    return sys.modules["tiny_nets"]


_load_tiny_nets().register_tiny_networks()


@pytest.fixture(autouse=True)
def _two_threads():
    old = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(old)
