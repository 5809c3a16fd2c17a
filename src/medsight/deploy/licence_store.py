"""Where this machine keeps its offline licences: one 0600 JSON file per bundle in the user's
config folder (platformdirs), holding the signed licence, the service's public keys fetched at
activation (the trust anchor for offline checks) and when the licence was last used."""

from __future__ import annotations

import json
import os
import re
import stat
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from medsight.atomic import write_atomic
from medsight.deploy.signing import ring_public_keys
from medsight.errors import LicenceError

CONFIG_ENV = "MEDSIGHT_CONFIG_DIR"
_UUID = re.compile(r"[0-9A-Za-z-]{1,64}")


def config_dir() -> Path:
    """$MEDSIGHT_CONFIG_DIR, else the platform's per-user config folder for medsight."""
    given = os.environ.get(CONFIG_ENV)
    if given:
        return Path(given)
    from platformdirs import user_config_dir

    return Path(user_config_dir("medsight", appauthor=False))


@dataclass(frozen=True)
class StoredLicence:
    """An activation's result as kept on disk."""

    path: Path
    server: str
    licence: dict[str, Any]  # the signed document {"licence": terms, "signature": ...}
    service_keys: list[dict[str, Any]]
    last_use: datetime | None

    @property
    def licence_id(self) -> str:
        return str(self.licence.get("licence", {}).get("licence_id", ""))

    @property
    def expires(self) -> str:
        return str(self.licence.get("licence", {}).get("expires", ""))

    def trusted_keys(self) -> list[bytes]:
        return ring_public_keys(self.service_keys)


class LicenceStore:
    """`save` an activation, `load` the licence of a bundle, `record_use` after a successful run."""

    def __init__(self, folder: str | Path | None = None) -> None:
        self.folder = Path(folder) if folder is not None else config_dir() / "licences"

    def path_for(self, bundle_uuid: str) -> Path:
        if not _UUID.fullmatch(bundle_uuid):
            raise LicenceError(f"the bundle's UUID {bundle_uuid!r} is not a UUID")
        return self.folder / f"{bundle_uuid}.json"

    def save(self, bundle_uuid: str, server: str, licence: dict[str, Any],
             service_keys: list[dict[str, Any]]) -> Path:
        """Keep a licence (replacing the bundle's earlier one; its last use is kept)."""
        old = self.load(bundle_uuid, missing_ok=True)
        doc = {"server": server, "licence": licence, "service_keys": service_keys,
               "last_use": old.last_use.isoformat() if old and old.last_use else None}
        return self._write(bundle_uuid, doc)

    def load(self, bundle_uuid: str, missing_ok: bool = False) -> StoredLicence | None:
        """The bundle's stored licence; None when there is none (and `missing_ok`)."""
        path = self.path_for(bundle_uuid)
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            if missing_ok:
                return None
            raise LicenceError(f"no licence for this bundle on this machine (looked for {path}); "
                               "while online, run `medsight activate --server URL --bundle B` "
                               "once") from None
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise LicenceError(f"{path} is readable or writable by other users (mode "
                               f"{mode & 0o777:04o}); run `chmod 600 {path}`")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
            last = doc.get("last_use")
            return StoredLicence(path, str(doc["server"]), dict(doc["licence"]),
                                 list(doc["service_keys"]),
                                 datetime.fromisoformat(last) if last else None)
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
            raise LicenceError(f"the licence file {path} is damaged ({exc!r}); run `medsight "
                               "activate` again") from exc

    def record_use(self, stored: StoredLicence, now: datetime | None = None) -> None:
        """Remember the latest successful use (never moving it back), so a clock set back
        before it is noticed next time."""
        now = now or datetime.now(UTC)
        if stored.last_use is not None and stored.last_use >= now:
            return
        doc = json.loads(stored.path.read_text(encoding="utf-8"))
        doc["last_use"] = now.isoformat()
        self._write(stored.path.stem, doc)

    def _write(self, bundle_uuid: str, doc: dict[str, Any]) -> Path:
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        # mkstemp creates the file 0600, and the rename keeps that mode
        return write_atomic(self.path_for(bundle_uuid),
                            (json.dumps(doc, indent=2, sort_keys=True) + "\n").encode("utf-8"))


__all__ = ["CONFIG_ENV", "LicenceStore", "StoredLicence", "config_dir"]
