"""May this bundle run here, offline? Every file's hash, the bundle's signature by a key of the
service the user activated against, and the user's licence for it (signature, expiry, bundle,
machine, clock); or, with `allow_unsigned`, an unsigned bundle whose results then say so."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from medsight.deploy.bundle import Bundle, open_bundle
from medsight.deploy.licence import Licence, check_licence, machine_fingerprint
from medsight.deploy.licence_store import LicenceStore, StoredLicence
from medsight.deploy.manifest import canonical_json
from medsight.errors import BundleIntegrityError, LicenceError

UNSIGNED_WARNING = ("unsigned bundle run with --allow-unsigned: nobody vouches for this model "
                    "and no licence was checked; for research use only")


@dataclass(frozen=True)
class Entitlement:
    """An opened, verified bundle and what entitles this run: a licence, or `allow_unsigned`."""

    bundle: Bundle
    licence: Licence | None
    stored: StoredLicence | None

    @property
    def warnings(self) -> list[str]:
        return [UNSIGNED_WARNING] if self.licence is None else []

    def describe(self) -> str:
        if self.licence is None:
            return UNSIGNED_WARNING
        lic = self.licence
        bound = "this machine" if lic.machine else "any machine"
        return (f"bundle signed by key {self.bundle.signature.key_id}; licensed to {lic.user} "
                f"({lic.role}) on {bound} until {lic.expires:%Y-%m-%d %H:%M} UTC")

    def still_valid(self, now: datetime | None = None) -> None:
        """Re-check expiry and clock for a long-running process (the local app)."""
        if self.stored is not None:
            check_entitlement(self.bundle, store=None, stored=self.stored, now=now)


def entitle(path: str | Path, *, allow_unsigned: bool = False, store: LicenceStore | None = None,
            machine: str | None = None, now: datetime | None = None) -> Entitlement:
    """Open and verify the bundle at `path`, then check what entitles this run to use it.
    Raises `BundleIntegrityError` or `LicenceError` naming what is wrong and how to fix it."""
    bundle = open_bundle(path)  # every hash, and the signature when there is one
    return check_entitlement(bundle, store=store or LicenceStore(), allow_unsigned=allow_unsigned,
                             machine=machine, now=now)


def check_entitlement(bundle: Bundle, *, store: LicenceStore | None,
                      stored: StoredLicence | None = None, allow_unsigned: bool = False,
                      machine: str | None = None, now: datetime | None = None) -> Entitlement:
    """The offline checks on an opened bundle (see `entitle`)."""
    model = bundle.manifest["model"]
    name = f"{model.get('name')} {model.get('version') or ''}".strip()
    if bundle.signature is None:
        if allow_unsigned:
            return Entitlement(bundle, None, None)
        raise LicenceError(f"the bundle {bundle.path} ({name}) is not signed, so nothing proves "
                           "where it comes from: use the signed bundle your service gives out "
                           "(and `medsight activate` it), or, for a model you trained yourself, "
                           "run with --allow-unsigned")
    uuid = str(model["uuid"])
    if stored is None:
        assert store is not None
        stored = store.load(uuid)
    trusted = stored.trusted_keys()
    if bundle.signature.public_key not in set(trusted):
        raise BundleIntegrityError(
            f"the bundle {bundle.path} is signed by key {bundle.signature.key_id}, which is not a "
            f"key of {stored.server}, the service this licence came from: the bundle was re-signed "
            "by someone else; get it again from your service")
    now = now or datetime.now(UTC)
    licence = check_licence(canonical_json(stored.licence), bundle.manifest, trusted_keys=trusted,
                            machine=machine or machine_fingerprint(), now=now,
                            last_use=stored.last_use)
    return Entitlement(bundle, licence, stored)


def record_use(entitlement: Entitlement, now: datetime | None = None) -> None:
    """After a successful run: remember when, so a clock set back later is refused."""
    if entitlement.stored is not None:
        LicenceStore(entitlement.stored.path.parent).record_use(entitlement.stored, now)


__all__ = ["UNSIGNED_WARNING", "Entitlement", "check_entitlement", "entitle", "record_use"]
