"""Activation: sign in to a medsight service once (API key, or user name and password) and get a
signed licence for a bundle, checked here against the bundle before it is kept. Standard library
HTTP only, so the offline command needs no extra client library."""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from medsight.deploy.bundle import open_bundle
from medsight.deploy.licence import Licence, check_licence, machine_fingerprint
from medsight.deploy.licence_store import LicenceStore
from medsight.deploy.manifest import canonical_json
from medsight.deploy.signing import ring_public_keys
from medsight.errors import LicenceError

TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Activation:
    """A kept licence: its checked terms, where it is stored and the server that issued it."""

    licence: Licence
    path: Path
    server: str
    renewed_from: str | None


class _Client:
    """JSON over HTTP(S) to one service, with a Bearer key or a session cookie and CSRF token."""

    def __init__(self, server: str, api_key: str | None) -> None:
        parts = urlsplit(server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise LicenceError(f"--server {server!r} must be a URL such as https://medsight.example.org")
        self.base = server.rstrip("/")
        self.headers = {"Accept": "application/json"}
        if api_key:
            self.headers["Authorization"] = f"Bearer {api_key}"
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(CookieJar()),
            urllib.request.HTTPSHandler(context=ssl.create_default_context()))

    def sign_in(self, username: str, password: str) -> None:
        body = self.call("POST", "/v1/session", {"username": username, "password": password})
        self.headers["X-CSRF-Token"] = str(body["csrf_token"])

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode("utf-8")
        headers = {**self.headers, **({"Content-Type": "application/json"} if data else {})}
        request = urllib.request.Request(self.base + path, data=data, headers=headers, method=method)
        try:
            with self.opener.open(request, timeout=TIMEOUT_S) as resp:
                return json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise LicenceError(f"{self.base} refused ({exc.code}): {_detail(exc)}") from exc
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise LicenceError(f"cannot reach {self.base} ({reason}); activation needs the network "
                               "once: check the URL and your connection") from exc
        except ValueError as exc:
            raise LicenceError(f"{self.base} did not answer JSON: is it a medsight service?") from exc


def _detail(exc: urllib.error.HTTPError) -> str:
    try:
        return str(json.loads(exc.read().decode("utf-8"))["detail"])
    except (ValueError, KeyError, TypeError, OSError):
        return exc.reason if isinstance(exc.reason, str) else "no reason given"


def activate(server: str, bundle: str | Path, *, api_key: str | None = None,
             username: str | None = None, password: str | None = None, renew: bool = False,
             bind_machine: bool = True, store: LicenceStore | None = None) -> Activation:
    """Ask `server` for a licence to run `bundle` offline (renewing the stored one when `renew`),
    check it against the bundle and keep it in `store` (the user's config folder)."""
    store = store or LicenceStore()
    opened = open_bundle(bundle)
    manifest = opened.manifest
    uuid = str(manifest["model"]["uuid"])
    if opened.signature is None:
        raise LicenceError(f"the bundle {bundle} is not signed: only a signed bundle can be "
                           "licensed; get the signed bundle from your service")
    previous = store.load(uuid, missing_ok=True)
    if renew and previous is None:
        raise LicenceError(f"--renew: no licence for this bundle is kept here ({store.path_for(uuid)}); "
                           "activate without --renew")
    client = _Client(server, api_key)
    if not api_key:
        if not username or password is None:
            raise LicenceError("give --api-key, or a user name and password")
        client.sign_in(username, password)
    machine = machine_fingerprint() if bind_machine else None
    answer = client.call("POST", "/v1/licences", {
        "bundle_uuid": uuid, "manifest_sha256": manifest["manifest_sha256"], "machine": machine,
        "renew": previous.licence_id if renew and previous else None})
    try:
        doc, keys = dict(answer["licence"]), list(answer["service_keys"])
    except (KeyError, TypeError, ValueError) as exc:
        raise LicenceError(f"{server} answered without a licence ({exc!r})") from exc
    trusted = ring_public_keys(keys)
    if opened.signature.public_key not in set(trusted):
        raise LicenceError(f"the bundle is signed by key {opened.signature.key_id}, which is not "
                           f"one of {server}'s keys: this bundle does not come from that service")
    licence = check_licence(canonical_json(doc), manifest, trusted_keys=trusted, machine=machine)
    path = store.save(uuid, client.base, doc, keys)
    return Activation(licence, path, client.base, answer.get("renewed_from"))


__all__ = ["Activation", "activate"]
