"""The target of the processes in test_replicas that create a data folder's first signing key at
once (a module of its own so that spawning one imports only this)."""

from __future__ import annotations

from pathlib import Path

from medsight.serve.signing_keys import SigningKeys, public_key_text


def first_key(folder: str, start, out) -> None:
    """Wait for every process (`start`, a Barrier), then put this one's current public key in `out`."""
    start.wait()
    out.put(public_key_text(SigningKeys(Path(folder)).current()))
