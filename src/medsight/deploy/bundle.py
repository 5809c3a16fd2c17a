"""`open_bundle`: a verified, ready-to-run deployment bundle (no torch, nothing unpickled).

Opening checks the container byte for byte, refuses pickled content, verifies the manifest's
own hash and every file's sha256 (unlisted or missing files too), parses each file strictly and
builds one shared `ModelRuntime`. Any failure is a `BundleIntegrityError` naming the file.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medsight.deploy.bundle_archive import read_bundle
from medsight.deploy.manifest import verify
from medsight.deploy.model_card import CARD_FILE, summary_lines
from medsight.deploy.runtime import ModelRuntime
from medsight.deploy.signing import BundleSignature, check_signature
from medsight.errors import BundleIntegrityError, MedsightError
from medsight.preprocess import Preprocess


@dataclass(frozen=True)
class Bundle:
    """An opened bundle: ``manifest`` (dict), ``preprocess`` (the saved chain), ``runtime``
    (the model), ``model_card_html`` and where it came from."""

    path: Path
    manifest: dict[str, Any]
    preprocess: Preprocess
    runtime: ModelRuntime = field(repr=False)
    model_card_html: str = field(repr=False)
    signature: BundleSignature | None = None

    @property
    def classes(self) -> list[str]:
        return list(self.manifest["classes"])

    def summary(self) -> list[str]:
        """A few plain lines describing the model (name, task, input, threshold, test metrics)."""
        return summary_lines(self.manifest)


def open_bundle(path: str | Path, trusted_keys: Iterable[bytes] | None = None) -> Bundle:
    """Open and verify the bundle at `path` (a ``.msb`` zip or a bundle folder). A signature,
    when present, must match; with `trusted_keys` the bundle must be signed by one of them."""
    p = Path(path)
    files = read_bundle(p)
    manifest = verify(files, where=str(p))
    signer = check_signature(files, trusted_keys, where=str(p))
    for name, data in files.items():
        if name.endswith(".json") and name != "manifest.json":
            _json(name, data)
    try:
        preprocess_text = files[manifest["preprocess"]["file"]].decode("utf-8")
        preprocess = Preprocess.from_json(preprocess_text)
    except (KeyError, UnicodeDecodeError) as exc:
        raise BundleIntegrityError(f"{p}: the preprocessing chain is missing or unreadable "
                                   f"({exc})") from exc
    except MedsightError as exc:
        raise BundleIntegrityError(f"{p}: preprocess.json cannot be replayed: {exc}") from exc
    if preprocess.fingerprint() != manifest["preprocess"].get("fingerprint"):
        raise BundleIntegrityError(f"{p}: preprocess.json does not match the fingerprint in the "
                                   "manifest")
    try:
        card = files[CARD_FILE].decode("utf-8")
    except (KeyError, UnicodeDecodeError) as exc:
        raise BundleIntegrityError(f"{p}: {CARD_FILE} is missing or not UTF-8") from exc
    try:
        runtime = ModelRuntime(manifest, files)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleIntegrityError(f"{p}: the manifest's runtime section is incomplete ({exc!r}); "
                                   "was the bundle written by another medsight version?") from exc
    return Bundle(p, manifest, preprocess, runtime, card, signer)


def verify_bundle(path: str | Path, trusted_keys: Iterable[bytes] | None = None) -> list[str]:
    """Run every check of `open_bundle` (including building the runtime) and return the
    bundle's summary lines and who signed it; `BundleIntegrityError` on the first failure."""
    bundle = open_bundle(path, trusted_keys)
    signed = (f"signed by Ed25519 key {bundle.signature.key_id}" if bundle.signature
              else "not signed")
    return [*bundle.summary(), signed]


def _json(name: str, data: bytes) -> Any:
    try:
        return json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(f"bundle member {name!r} is not valid JSON ({exc})") from exc
