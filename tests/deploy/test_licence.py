"""Offline licence checks, each refusal with its own message: a licence for the bundle verifies
with no network; expired (a fixed clock), another bundle, another machine, forged, an unknown
signer, a clock set back, a damaged file are refused."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from medsight.deploy import open_bundle
from medsight.deploy.licence import check_licence, issue_licence, machine_fingerprint
from medsight.deploy.signing import raw_public_key
from medsight.errors import LicenceError

pytestmark = pytest.mark.xdist_group("deploy_runs")
T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)


@pytest.fixture
def setting(classical_run, bundle_of):
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    manifest = open_bundle(bundle_of(classical_run)).manifest
    here = machine_fingerprint()
    data = issue_licence(key, user="dr_li", role="clinician", manifest=manifest, machine=here,
                         days=30, now=T0)
    return key, manifest, here, data


def test_a_licence_for_this_bundle_and_machine_verifies(setting) -> None:
    key, manifest, here, data = setting
    lic = check_licence(data, manifest, trusted_keys=[raw_public_key(key)], machine=here,
                        now=T0 + timedelta(days=29), last_use=T0 + timedelta(days=1))
    assert (lic.user, lic.role, lic.machine) == ("dr_li", "clinician", here)
    assert lic.expires - lic.issued == timedelta(days=30)
    assert machine_fingerprint() == here  # stable


def _refused(data, manifest, key, match, **kw) -> None:
    kw = {"trusted_keys": [raw_public_key(key)], "machine": machine_fingerprint(),
          "now": T0 + timedelta(days=1), **kw}
    with pytest.raises(LicenceError, match=match):
        check_licence(data, manifest, **kw)


def test_each_refusal_names_what_is_wrong(setting) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key, manifest, here, data = setting
    _refused(data, manifest, key, "expired on 2026-12-31", now=T0 + timedelta(days=30))
    other = {**manifest, "model": {**manifest["model"], "uuid": "another-bundle"}}
    _refused(data, other, key, "for another bundle")
    _refused(data, manifest, key, "bound to another machine", machine="0" * 32)
    _refused(data, manifest, key, "set back", now=T0 + timedelta(days=2),
             last_use=T0 + timedelta(days=3))
    stranger = Ed25519PrivateKey.generate()
    _refused(data, manifest, stranger, "did not sign this bundle")
    doc = json.loads(data)
    doc["licence"]["expires"] = (T0 + timedelta(days=3650)).isoformat()  # edited terms
    _refused(json.dumps(doc).encode(), manifest, key, "forged or edited")
    forged = issue_licence(stranger, user="dr_li", role="clinician", manifest=manifest, now=T0)
    _refused(forged, manifest, key, "did not sign this bundle")
    _refused(b"{not json", manifest, key, "damaged")
    _refused(data, manifest, key, "issued after", now=T0 - timedelta(days=1))
