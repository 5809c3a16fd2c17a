"""`result_uid`: deterministic DICOM UIDs for what medsight writes back, so that writing the same
result again (a retry, a watcher restarted mid-series) replaces the object in the PACS instead of
adding a duplicate next to it."""

from __future__ import annotations

import uuid

__all__ = ["result_uid"]

_NAMESPACE = uuid.UUID("5b0b7a52-6f5e-4d0e-9a43-6d6564736967")  # medsight's, fixed forever


def result_uid(*parts: object) -> str:
    """"2.25." + the integer of a UUID5 of `parts` (PS3.5 B.2: a UUID as a UID, at most 44
    characters here, under the 64 allowed): the same parts always give the same UID."""
    if not parts:
        raise ValueError("result_uid needs at least one part to derive the UID from")
    return f"2.25.{uuid.uuid5(_NAMESPACE, '|'.join(str(p) for p in parts)).int}"
