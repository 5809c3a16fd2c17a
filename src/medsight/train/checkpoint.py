"""Training checkpoints: atomic writes, RNG state capture, and safe loading.

A checkpoint is a plain dict of tensors and Python values saved with `torch.save`; it is first
written to a temporary file in the same folder and then moved over the old one with
`os.replace`, so a crash while writing leaves the previous checkpoint intact. Random number
generator states (Python, NumPy, torch CPU and CUDA, and any named `torch.Generator`, such as
the loader's) are stored so a resumed run draws exactly the numbers an uninterrupted one would.
Loading uses ``weights_only=True``: a checkpoint can hold data, never code.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from medsight.atomic import write_atomic
from medsight.errors import BundleIntegrityError

LAST = "last.pt"


def save_checkpoint(path: str | Path, state: Mapping[str, Any]) -> Path:
    """Write `state` to `path` atomically (temporary file in the same folder, then rename)."""
    return write_atomic(path, lambda f: torch.save(dict(state), f))


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint written by `save_checkpoint` (tensors load on the CPU)."""
    path = Path(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise BundleIntegrityError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # truncated / foreign file
        raise BundleIntegrityError(f"checkpoint {path} cannot be read: {exc}") from exc


def capture_rng(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """The state of every random generator a training run draws from."""
    py_version, py_state, py_gauss = random.getstate()
    np_state = np.random.get_state(legacy=False)
    state: dict[str, Any] = {
        "python": [py_version, list(py_state), py_gauss],
        "numpy": {
            "bit_generator": np_state["bit_generator"],
            "key": torch.as_tensor(np.asarray(np_state["state"]["key"], dtype=np.int64)),
            "pos": int(np_state["state"]["pos"]),
            "has_gauss": int(np_state["has_gauss"]),
            "gauss": float(np_state["gauss"]),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {k: g.get_state() for k, g in (generators or {}).items()},
    }
    return state


def restore_rng(state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
                ) -> None:
    """Put every generator back to a state from `capture_rng`."""
    py_version, py_state, py_gauss = state["python"]
    random.setstate((py_version, tuple(py_state), py_gauss))
    npst = state["numpy"]
    np.random.set_state({
        "bit_generator": npst["bit_generator"],
        "state": {"key": npst["key"].numpy().astype(np.uint32), "pos": npst["pos"]},
        "has_gauss": npst["has_gauss"],
        "gauss": npst["gauss"],
    })
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    saved = state.get("generators", {})
    for name, gen in (generators or {}).items():
        if name in saved:
            gen.set_state(saved[name])


def copy_state(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A deep copy of a state_dict (fresh tensors), independent of the live model."""
    return {k: v.detach().clone() for k, v in state.items()}
