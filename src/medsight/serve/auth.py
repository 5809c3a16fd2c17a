"""Credentials: argon2id hashes of passwords and API keys, the API-key format, session tokens.

Only hashes are ever stored. An API key reads `msk_<key_id>_<secret>`: the key id (16 hex digits)
finds the stored hash in one lookup and may be shown in lists and logs; the secret (32 random
bytes, urlsafe base64) is shown once, when the key is created.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import threading

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

__all__ = [
    "ROLES",
    "hash_secret",
    "needs_rehash",
    "new_api_key",
    "new_token",
    "parse_api_key",
    "token_digest",
    "verify_secret",
]

ROLES = ("clinician", "reviewer", "admin")

KEY_PREFIX = "msk"
_KEY_RE = re.compile(r"msk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")

# argon2-cffi's defaults: argon2id, t=3, m=64 MiB, p=4 (RFC 9106's second recommended profile).
_HASHER = PasswordHasher()
# Each hash takes 64 MiB for ~50 ms: a burst of sign-ins or forged keys queues here instead of
# taking the server's memory.
_SLOTS = threading.BoundedSemaphore(4)


def hash_secret(value: str) -> str:
    """The argon2id hash (PHC string, salt included) of a password or an API-key secret."""
    with _SLOTS:
        return _HASHER.hash(_bytes(value))


def verify_secret(hash: str, value: str) -> bool:
    """True when `value` matches `hash`; False on a mismatch or a malformed hash."""
    try:
        with _SLOTS:
            return _HASHER.verify(hash, _bytes(value))
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(hash: str) -> bool:
    """True when `hash` was made with weaker parameters than today's and should be replaced."""
    try:
        return _HASHER.check_needs_rehash(hash)
    except (InvalidHashError, ValueError):
        return True


def new_api_key() -> tuple[str, str]:
    """(key_id, full_key): a fresh key `msk_<key_id>_<secret>`."""
    key_id = secrets.token_hex(8)
    return key_id, f"{KEY_PREFIX}_{key_id}_{secrets.token_urlsafe(32)}"


def parse_api_key(full_key: str) -> tuple[str, str] | None:
    """(key_id, secret) of a well-formed key, or None for anything else."""
    if not isinstance(full_key, str) or len(full_key) > 80:
        return None
    m = _KEY_RE.fullmatch(full_key)
    return (m.group(1), m.group(2)) if m else None


def new_token() -> str:
    """A random session or CSRF token (32 bytes, urlsafe base64)."""
    return secrets.token_urlsafe(32)


def token_digest(token: str) -> str:
    """sha256 hex of a token or key: what is stored, or used as a cache key, instead of it."""
    return hashlib.sha256(_bytes(token)).hexdigest()


def _bytes(value: str) -> bytes:
    # surrogatepass: any str a JSON body can carry (lone surrogates too) hashes, deterministically
    return value.encode("utf-8", "surrogatepass")
