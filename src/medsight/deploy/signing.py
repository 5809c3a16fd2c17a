"""Ed25519 signatures of bundles: `signature.json` signs the manifest's exact bytes (which seal
every other file's sha256), so one signature vouches for the whole bundle. Verifying needs only
the public key: no network, no service."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from medsight.deploy.bundle_archive import MANIFEST
from medsight.deploy.manifest import SIGNATURE, canonical_json
from medsight.errors import BundleIntegrityError

ALGORITHM = "Ed25519"

if TYPE_CHECKING:  # cryptography loads only when a signature is made or checked (cold start)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey


@dataclass(frozen=True)
class BundleSignature:
    """Who signed a bundle: the key's id (sha256 of the raw public key, 16 hex) and the key."""

    key_id: str
    public_key: bytes


def key_id(public_key: bytes) -> str:
    return hashlib.sha256(public_key).hexdigest()[:16]


def raw_public_key(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(Encoding.Raw, PublicFormat.Raw)


def ring_public_keys(ring: Iterable[Mapping[str, object]]) -> list[bytes]:
    """The raw public keys of a key ring (entries with a base64 "public_key"), as a service's
    ring is stored and as activation hands it to the offline client."""
    return [base64.b64decode(str(k["public_key"])) for k in ring]


def parse_public_key(text: str) -> bytes:
    """A public key given as base64 of its 32 raw bytes (what medsight prints) or as PEM."""
    text = text.strip()
    if text.startswith("-----BEGIN"):
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        key = load_pem_public_key(text.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise BundleIntegrityError("the public key is not an Ed25519 key")
        return raw_public_key(key)
    try:
        raw = base64.b64decode(text, validate=True)
    except ValueError as exc:
        raise BundleIntegrityError(f"the public key is neither PEM nor base64 ({exc})") from exc
    if len(raw) != 32:
        raise BundleIntegrityError(f"an Ed25519 public key has 32 bytes, this one {len(raw)}")
    return raw


def sign_files(files: Mapping[str, bytes], private_key: Ed25519PrivateKey) -> dict[str, bytes]:
    """`files` with `signature.json` signing their manifest (replacing an older signature)."""
    manifest = files[MANIFEST]
    public = raw_public_key(private_key)
    doc = {"algorithm": ALGORITHM, "signed": MANIFEST, "key_id": key_id(public),
           "public_key": base64.b64encode(public).decode("ascii"),
           "signature": base64.b64encode(private_key.sign(manifest)).decode("ascii")}
    return {**{k: v for k, v in files.items() if k != SIGNATURE}, SIGNATURE: canonical_json(doc)}


def check_signature(files: Mapping[str, bytes], trusted: Iterable[bytes] | None = None,
                    where: str = "bundle") -> BundleSignature | None:
    """The bundle's signer after checking the signature over its manifest, or None when it is
    unsigned. With `trusted` public keys, the signer must be one of them."""
    raw = files.get(SIGNATURE)
    if raw is None:
        if trusted is not None:
            raise BundleIntegrityError(f"{where} is not signed; sign it with `medsight bundle sign`")
        return None
    try:
        doc = json.loads(raw.decode("utf-8"))
        public = base64.b64decode(doc["public_key"], validate=True)
        signature = base64.b64decode(doc["signature"], validate=True)
        algorithm = doc["algorithm"]
    except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
        raise BundleIntegrityError(f"{where}: {SIGNATURE} is malformed ({exc!r})") from exc
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    if algorithm != ALGORITHM or len(public) != 32:
        raise BundleIntegrityError(f"{where}: {SIGNATURE} is not an Ed25519 signature")
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, files[MANIFEST])
    except (InvalidSignature, ValueError) as exc:
        raise BundleIntegrityError(f"{where}: the signature does not match the manifest (forged, "
                                   "or the manifest changed after signing)") from exc
    signer = BundleSignature(key_id(public), public)
    if trusted is not None and public not in set(trusted):
        raise BundleIntegrityError(f"{where} is signed by key {signer.key_id}, which is not the "
                                   "public key given (or the service's keys); refused")
    return signer
