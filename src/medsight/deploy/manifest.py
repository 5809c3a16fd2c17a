"""The bundle manifest: one canonical JSON document that describes the model and seals every file.

``files`` maps each other member (but ``signature.json``, see `medsight.deploy.signing`) to its
sha256 and size; ``manifest_sha256`` is the sha256 of the
manifest's own canonical JSON without that key. The manifest is written in that canonical form
(sorted keys, two-space indent), so an edit of one byte -- even whitespace -- is detected.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping
from typing import Any

from medsight.deploy.bundle_archive import MANIFEST
from medsight.errors import BundleIntegrityError

FORMAT = "medsight.bundle"
FORMAT_VERSION = 1
SEAL_KEY = "manifest_sha256"
SIGNATURE = "signature.json"  # signs the manifest itself, so it cannot be listed in it


def canonical_json(document: Any) -> bytes:
    """Sorted keys, two-space indent, UTF-8, no NaN: the only form a manifest is written in."""
    return (json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            + "\n").encode("utf-8")


def json_clean(value: Any) -> Any:
    """`value` with NaN/inf turned into None and tuples into lists, for canonical JSON."""
    if isinstance(value, Mapping):
        return {str(k): json_clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_clean(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return json_clean(value.item())
    return value


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def seal(manifest: Mapping[str, Any], files: Mapping[str, bytes]) -> bytes:
    """The manifest bytes, with the hash and size of every file in `files` and its own hash."""
    doc = json_clean(dict(manifest))
    doc.pop(SEAL_KEY, None)
    doc["files"] = {name: {"sha256": sha256(data), "bytes": len(data)}
                    for name, data in sorted(files.items()) if name != MANIFEST}
    doc[SEAL_KEY] = sha256(canonical_json(doc))
    return canonical_json(doc)


def verify(files: Mapping[str, bytes], where: str = "bundle") -> dict[str, Any]:
    """The manifest of a bundle's `files` after checking every hash, and that no file is missing
    or unlisted; `BundleIntegrityError` naming the file otherwise."""
    raw = files.get(MANIFEST)
    if raw is None:
        raise BundleIntegrityError(f"{where}: no {MANIFEST}; not a medsight bundle")
    try:
        doc = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleIntegrityError(f"{where}: {MANIFEST} is not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise BundleIntegrityError(f"{where}: {MANIFEST} is not a {FORMAT} manifest")
    if doc.get("format_version") != FORMAT_VERSION:
        raise BundleIntegrityError(
            f"{where}: bundle format version {doc.get('format_version')!r}; this medsight reads "
            f"version {FORMAT_VERSION}: install the medsight version that wrote it")
    stated = doc.pop(SEAL_KEY, None)
    if stated != sha256(canonical_json(doc)) or canonical_json({**doc, SEAL_KEY: stated}) != raw:
        raise BundleIntegrityError(f"{where}: {MANIFEST} was edited after the bundle was made "
                                   "(its sha256 does not match)")
    listed = doc.get("files")
    if not isinstance(listed, dict):
        raise BundleIntegrityError(f"{where}: {MANIFEST} lists no files")
    for name in sorted(set(files) - set(listed) - {MANIFEST, SIGNATURE}):
        raise BundleIntegrityError(f"{where}: {name!r} is not listed in {MANIFEST}; refused")
    for name, entry in sorted(listed.items()):
        if name not in files:
            raise BundleIntegrityError(f"{where}: {name!r} is listed in {MANIFEST} but missing")
        if sha256(files[name]) != entry.get("sha256") or len(files[name]) != entry.get("bytes"):
            raise BundleIntegrityError(
                f"{where}: {name!r} fails its sha256 check (changed after the bundle was made)")
    doc[SEAL_KEY] = stated
    return doc
