"""`/v1/licences` over real HTTP on loopback: a clinician gets an offline licence that checks with
the service's key ring, refusals (role, auth, unknown bundle, other version, unsigned bundle, bad
body), administrators list, filter and revoke, renewals (not of a revoked or another's licence), and
every issue and revocation in the audit chain, which still verifies."""

from __future__ import annotations

import base64
import shutil
from datetime import datetime
from pathlib import Path

import httpx
import pytest
from serve.live import LiveServer, second_clinician_key, start_server

from medsight.deploy import open_bundle
from medsight.deploy.bundle_archive import read_bundle, write_bundle
from medsight.deploy.licence import check_licence
from medsight.deploy.manifest import canonical_json
from medsight.deploy.signing import sign_files
from medsight.serve.signing_keys import SigningKeys

pytestmark = pytest.mark.xdist_group("serve")

DAYS = 7.0
MACHINE = "ab" * 16


@pytest.fixture(scope="module")
def signed_server(tmp_path_factory: pytest.TempPathFactory, serve_bundle: Path):
    """A service whose (copied) bundle is signed with its own key, licences lasting DAYS days."""
    root = tmp_path_factory.mktemp("licences")
    data_dir, bundle = root / "data", root / "signed.msb"
    shutil.copy(serve_bundle, bundle)
    write_bundle(sign_files(read_bundle(bundle), SigningKeys(data_dir).current()), bundle,
                 overwrite=True)
    server = start_server([bundle], data_dir, "--licence-days", str(DAYS))
    yield server, open_bundle(bundle).manifest
    server.stop()


def _ask(server: LiveServer, manifest: dict, role: str = "clinician", **extra) -> httpx.Response:
    body = {"bundle_uuid": manifest["model"]["uuid"], "manifest_sha256": manifest["manifest_sha256"],
            "machine": MACHINE, "renew": None, **extra}
    with server.client(role) as c:
        return c.post("/v1/licences", json=body)


def test_a_clinician_gets_a_licence_that_checks_offline(signed_server) -> None:
    server, manifest = signed_server
    r = _ask(server, manifest)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["user"], body["role"], body["machine"], body["renewed_from"], body["revoked"]) \
        == ("dr_li", "clinician", MACHINE, None, None)
    assert body["model"] == {"name": manifest["model"]["name"], "version": manifest["model"]["version"],
                             "uuid": manifest["model"]["uuid"]}
    assert body["licence"]["licence"]["licence_id"] == body["id"]
    keys = [base64.b64decode(k["public_key"]) for k in body["service_keys"]]
    assert {"key_id", "public_key", "created", "retired"} <= set(body["service_keys"][0])
    lic = check_licence(canonical_json(body["licence"]), manifest, trusted_keys=keys, machine=MACHINE)
    assert lic.licence_id == body["id"] and lic.user == "dr_li"
    assert (lic.expires - lic.issued).total_seconds() == DAYS * 86400
    issued, expires = (datetime.fromisoformat(body[k]) for k in ("issued", "expires"))
    assert (expires - issued).total_seconds() == DAYS * 86400
    assert (issued, expires) == (lic.issued, lic.expires)


def test_refusals(signed_server, live_server, serve_bundle) -> None:
    server, manifest = signed_server
    for role in ("reviewer", "admin"):
        r = _ask(server, manifest, role)
        assert r.status_code == 403 and "issued to clinicians" in r.json()["detail"], r.text
        assert f"you are {role}" in r.json()["detail"]
    with httpx.Client(base_url=server.url) as anon:
        assert anon.post("/v1/licences", json={}).status_code == 401
    r = _ask(server, manifest, bundle_uuid="no-such-bundle")
    assert r.status_code == 404 and "GET /v1/models" in r.json()["detail"]
    r = _ask(server, manifest, manifest_sha256="0" * 64)
    assert r.status_code == 409 and manifest["model"]["version"] in r.json()["detail"]
    for bad in ({"manifest_sha256": "XYZ"}, {"machine": "not hex!"}, {"machine": "a" * 65},
                {"extra": 1}):
        assert _ask(server, manifest, **bad).status_code == 422, bad
    r = _ask(live_server, open_bundle(serve_bundle).manifest)  # the plain bundle is unsigned
    assert r.status_code == 409 and "not signed by this service" in r.json()["detail"], r.text


def test_admins_list_filter_revoke_and_renewals(signed_server) -> None:
    server, manifest = signed_server
    first = _ask(server, manifest).json()["id"]
    second = _ask(server, manifest, machine=None).json()["id"]
    with server.client("clinician") as c:
        assert c.get("/v1/licences").status_code == 403
        assert c.delete(f"/v1/licences/{first}").status_code == 403
    with server.client("admin") as admin:
        listed = admin.get("/v1/licences", params={"user": "dr_li"}).json()
        ids = [i["id"] for i in listed["items"]]
        assert ids[:2] == [second, first] and listed["total"] >= 2
        assert "licence" not in listed["items"][0] and "service_keys" not in listed["items"][0]
        assert admin.get("/v1/licences", params={"user": "nobody"}).json() == {"items": [], "total": 0}
        assert admin.get("/v1/licences", params={"limit": 0}).status_code == 422
        assert admin.delete("/v1/licences/unknown").status_code == 404
        assert admin.delete(f"/v1/licences/{first}").status_code == 204
        revoked = admin.get("/v1/licences", params={"active": "false"}).json()["items"]
        [when] = [i["revoked"] for i in revoked if i["id"] == first]
        assert when is not None
        assert admin.delete(f"/v1/licences/{first}").status_code == 204  # idempotent
        again = admin.get("/v1/licences", params={"active": "false"}).json()["items"]
        assert [i["revoked"] for i in again if i["id"] == first] == [when]
        active = [i["id"] for i in admin.get("/v1/licences", params={"active": "true"}).json()["items"]]
        assert second in active and first not in active
    r = _ask(server, manifest, renew=first)
    assert r.status_code == 403 and f"licence {first} was revoked" in r.json()["detail"]
    assert when[:10] in r.json()["detail"]
    r = _ask(server, manifest, renew=second)
    assert r.status_code == 201, r.text
    assert r.json()["renewed_from"] == second and r.json()["id"] not in (first, second)
    assert _ask(server, manifest, renew="0" * 32).status_code == 404
    other = second_clinician_key(server)
    body = {"bundle_uuid": manifest["model"]["uuid"], "manifest_sha256": manifest["manifest_sha256"],
            "renew": second}
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {other}"}) as c:
        assert c.post("/v1/licences", json=body).status_code == 404  # not theirs: as if unknown

    from medsight.serve.db.store import Store

    with Store.open(server.data_dir) as store:
        entries = store.audit_entries(500)
        assert store.verify_audit().ok
    issued = [e for e in entries if e["action"] == "POST /v1/licences" and e["status"] == 201]
    assert {first, second} <= {e["target"] for e in issued}
    assert any(e["detail"] == f"bundle {manifest['model']['uuid']} for machine {MACHINE}"
               for e in issued)
    assert any((e["detail"] or "").endswith(f"renewal of {second}") for e in issued)
    revokes = [e for e in entries if e["action"] == "DELETE /v1/licences/{licence_id}"
               and e["target"] == first]
    assert [e["status"] for e in revokes] == [204, 204]
    assert any(e["action"] == "POST /v1/licences" and e["status"] == 403 for e in entries)


def test_a_bundle_signed_by_another_service_is_not_licensed(server_factory, serve_bundle,
                                                            tmp_path) -> None:
    bundle = tmp_path / "foreign.msb"
    write_bundle(sign_files(read_bundle(serve_bundle), SigningKeys(tmp_path / "elsewhere").current()),
                 bundle)
    server = server_factory(bundles=[bundle])  # its own key (in tmp_path/data) signed nothing
    r = _ask(server, open_bundle(bundle).manifest)
    assert r.status_code == 409 and "not signed by this service" in r.json()["detail"], r.text
