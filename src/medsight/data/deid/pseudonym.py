"""Keyed, repeatable pseudonyms: patient ids, UIDs and per-patient date offsets from one secret.

Each value is an HMAC-SHA256 of the original under the secret, so the same patient gets the same
pseudonym in every file and every run with the same secret, and nobody without the secret can
recompute or reverse it. The originals are remembered only to write an optional mapping file.
"""

from __future__ import annotations

import hashlib
import hmac

from medsight.errors import InvalidConfig

__all__ = ["DEFAULT_DATE_SHIFT_DAYS", "Pseudonymizer"]

DEFAULT_DATE_SHIFT_DAYS = (-3652, -366)  # one to ten years into the past
_UID_MAX = 64


class Pseudonymizer:
    """Derives pseudonyms from `secret`; records what it mapped for the mapping file."""

    def __init__(
        self,
        secret: bytes | str,
        date_shift_days_range: tuple[int, int] = DEFAULT_DATE_SHIFT_DAYS,
        prefix: str = "ANON",
    ):
        if isinstance(secret, str):
            secret = secret.encode("utf-8")
        if not secret:
            raise InvalidConfig("the de-identification secret must not be empty")
        low, high = (int(v) for v in date_shift_days_range)
        if low > high:
            raise InvalidConfig(
                f"date_shift_days_range must be (low, high) with low <= high, got {(low, high)}"
            )
        self._secret = bytes(secret)
        self.date_shift_days_range = (low, high)
        self.prefix = prefix
        self.patients: dict[str, str] = {}
        self.uids: dict[str, tuple[str, str]] = {}
        self.offsets: dict[str, int] = {}

    def _digest(self, domain: str, value: str) -> bytes:
        return hmac.new(self._secret, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()

    def patient_id(self, original: str) -> str:
        """``ANON-<16 hex>``: the same for the same original id and secret."""
        original = str(original)
        if original not in self.patients:
            code = self._digest("patient", original).hex()[:16].upper()
            self.patients[original] = f"{self.prefix}-{code}"
        return self.patients[original]

    def uid(self, original: str, attribute: str = "") -> str:
        """A valid UID ``2.25.<decimal of 128 HMAC bits>`` (at most 64 characters)."""
        original = str(original).strip().rstrip("\x00")
        if not original:
            return original
        if original not in self.uids:
            number = int.from_bytes(self._digest("uid", original)[:16], "big")
            new = f"2.25.{number}"
            assert len(new) <= _UID_MAX
            self.uids[original] = (new, attribute)
        return self.uids[original][0]

    def date_offset(self, patient_key: str) -> int:
        """Days to add to every date of this patient, inside `date_shift_days_range`."""
        if patient_key not in self.offsets:
            low, high = self.date_shift_days_range
            span = high - low + 1
            value = int.from_bytes(self._digest("date", patient_key)[:8], "big")
            self.offsets[patient_key] = low + value % span
        return self.offsets[patient_key]
