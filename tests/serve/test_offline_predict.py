"""Offline use end to end: `medsight activate` against a live service on loopback, then `medsight
predict` in a process with no network at all (a new network namespace) giving exactly the service's
probabilities; and every refusal, each with its own message, a non-zero exit and no results file."""

from __future__ import annotations

import base64
import json
import os
import shutil
import stat
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from serve.live import LiveServer, start_server

from medsight.deploy.bundle import open_bundle
from medsight.deploy.licence import issue_licence, machine_fingerprint
from medsight.deploy.licence_store import CONFIG_ENV, LicenceStore
from medsight.deploy.manifest import canonical_json

pytestmark = pytest.mark.xdist_group("serve")

MEDSIGHT = str(Path(sys.executable).parent / "medsight")


def _can_unshare() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rn", "true"], capture_output=True).returncode == 0


UNSHARE = _can_unshare()


def _run(*args: str, config: Path, offline: bool = False, stdin: str | None = None,
         ) -> subprocess.CompletedProcess[str]:
    """`medsight ARGS` with its licences in `config`; `offline`: in a network namespace of its own
    (no interface up, not even loopback) or, where the kernel refuses, with every proxy pointed at
    a closed port."""
    env = {**os.environ, CONFIG_ENV: str(config)}
    cmd = [MEDSIGHT, *args]
    if offline:
        if UNSHARE:
            cmd = ["unshare", "-rn", *cmd]
        else:
            env.update({k: "http://127.0.0.1:9" for k in
                        ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy")})
    return subprocess.run(cmd, env=env, capture_output=True, text=True, input=stdin, timeout=300)


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory, serve_bundle: Path):
    """A service whose bundle it signed (key made in its data dir first), running on loopback."""
    root = tmp_path_factory.mktemp("offline")
    data = root / "service"
    signed = root / "signed.msb"
    shutil.copy(serve_bundle, signed)
    assert _run("bundle", "sign", str(signed), "--data-dir", str(data), config=root).returncode == 0
    server = start_server([signed], data)
    yield {"root": root, "data": data, "bundle": signed, "server": server}
    server.stop()


def _online(server: LiveServer, path: Path) -> dict[str, float]:
    with server.client() as c:
        r = c.post("/v1/predictions", files={"file": (path.name, path.read_bytes())})
    assert r.status_code == 201, r.text
    return r.json()["probabilities"]


def _png(tmp: Path) -> Path:
    import numpy as np
    from conftest import shared_path
    from PIL import Image

    with np.load(shared_path("medmnist", "breastmnist.npz")) as npz:
        pixels = npz["test_images"][3]
    path = tmp / "breast.png"
    Image.fromarray(pixels).save(path)
    return path


def test_activate_online_then_predict_with_no_network_gives_the_services_probabilities(
        offline, tmp_path) -> None:
    server, bundle = offline["server"], offline["bundle"]
    config = tmp_path / "config"
    got = _run("activate", "--server", server.url, "--bundle", str(bundle), "--api-key",
               server.keys["clinician"], config=config)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "activated" in got.stdout and "bound to this machine" in got.stdout
    [kept] = (config / "licences").iterdir()
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    assert stat.S_IMODE((config / "licences").stat().st_mode) == 0o700
    if not UNSHARE:
        pytest.skip("unshare -rn is not allowed here; the proxy fallback is no proof of no network")

    # the network namespace really is cut: the service on loopback cannot be reached from it
    probe = subprocess.run(["unshare", "-rn", sys.executable, "-c",
                            f"import urllib.request; urllib.request.urlopen({server.url!r}, timeout=3)"],
                           capture_output=True, text=True)
    assert probe.returncode != 0 and ("refused" in probe.stderr or "unreachable" in probe.stderr)

    images = [_png(tmp_path), server.dicom_path]
    out = tmp_path / "results.json"
    got = _run("predict", "--bundle", str(bundle), *map(str, images), "--out", str(out),
               config=config, offline=True)
    assert got.returncode == 0, got.stdout + got.stderr
    assert "licensed to dr_li (clinician) on this machine" in got.stdout
    rows = json.loads(out.read_text())
    assert [r["path"] for r in rows] == [str(p) for p in images]
    for row, path in zip(rows, images, strict=True):
        assert row["probabilities"] == _online(server, path)  # exactly, not approximately
        assert not any("unsigned" in w for w in row["warnings"])
    assert json.loads(kept.read_text())["last_use"] is not None


def test_refusals_name_what_is_wrong_exit_non_zero_and_write_nothing(offline, tmp_path,
                                                                     serve_bundle) -> None:
    from deploy.tamper import members, tampered_copy

    from medsight.deploy.bundle_archive import bundle_bytes
    from medsight.serve.signing_keys import SigningKeys

    server, bundle, data = offline["server"], offline["bundle"], offline["data"]
    png = _png(tmp_path)
    config = tmp_path / "config"
    store = LicenceStore(config / "licences")
    manifest = open_bundle(bundle).manifest
    uuid = str(manifest["model"]["uuid"])
    keys = SigningKeys(data)
    now = datetime.now(UTC)

    def keep(licence: bytes) -> None:
        store.save(uuid, server.url, json.loads(licence), keys.ring())

    def refused(bundle_path: Path, *flags: str) -> str:
        out = tmp_path / "never.json"
        got = _run("predict", "--bundle", str(bundle_path), str(png), "--out", str(out), *flags,
                   config=config, offline=True)
        assert got.returncode != 0 and not out.exists(), got.stdout + got.stderr
        return " ".join((got.stdout + got.stderr).split())

    def licence(key=None, **terms) -> bytes:
        args = {"user": "dr_li", "role": "clinician", "manifest": manifest,
                "machine": machine_fingerprint(), **terms}
        return issue_licence(key or keys.current(), **args)

    missing = refused(bundle)
    assert "no licence for this bundle on this machine" in missing
    assert "medsight activate --server URL --bundle B" in missing

    unsigned = refused(serve_bundle)
    assert "is not signed" in unsigned and "--allow-unsigned" in unsigned
    out = tmp_path / "unsigned.json"
    ran = _run("predict", "--bundle", str(serve_bundle), str(png), "--out", str(out),
               "--allow-unsigned", config=config, offline=True)
    assert ran.returncode == 0, ran.stderr
    assert any("unsigned bundle" in w for w in json.loads(out.read_text())[0]["warnings"])

    keep(licence())  # a good licence: each case below breaks one thing
    tampered = tampered_copy(bundle, "model.onnx", tmp_path / "tampered.msb")
    changed = refused(tampered)
    assert "sha256" in changed or "checksum" in changed
    files = members(bundle)
    sig = json.loads(files["signature.json"])
    sig["signature"] = base64.b64encode(bytes(64)).decode()
    files["signature.json"] = canonical_json(sig)
    (tmp_path / "forged.msb").write_bytes(bundle_bytes(files))
    assert "signature does not match the manifest" in refused(tmp_path / "forged.msb")

    keep(licence(days=30, now=now - timedelta(days=31)))
    expired = refused(bundle)
    assert "the licence expired on" in expired and "--renew" in expired

    other = {"model": {"uuid": "0" * 32}, "manifest_sha256": "1" * 64}
    keep(licence(manifest=other))
    assert "the licence is for another bundle" in refused(bundle)

    keep(licence(machine="f" * 32))
    assert "bound to another machine" in refused(bundle)

    keep(licence())
    stored = store.load(uuid)
    store.record_use(stored, now + timedelta(days=2))  # last used "in two days": clock set back
    assert "it was set back" in refused(bundle)

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    store.path_for(uuid).unlink()
    keep(licence(key=Ed25519PrivateKey.generate()))
    assert "which did not sign this bundle" in refused(bundle)

    doc = json.loads(licence())
    doc["licence"]["expires"] = (now + timedelta(days=3650)).isoformat()  # edited terms
    keep(canonical_json(doc))
    assert "forged or edited" in refused(bundle)


def test_activation_with_password_renewal_revocation_and_key_rotation(offline, tmp_path) -> None:
    from typer.testing import CliRunner

    from medsight.cli import app

    server, bundle, data = offline["server"], offline["bundle"], offline["data"]
    config = tmp_path / "config"
    os.environ[CONFIG_ENV] = str(config)
    try:
        cli = CliRunner()
        got = cli.invoke(app, ["activate", "--server", server.url, "--bundle", str(bundle)],
                         input="dr_li\nwrong password\n")
        assert got.exit_code == 1 and "refused (401)" in str(got.exception)
        got = cli.invoke(app, ["activate", "--server", server.url, "--bundle", str(bundle),
                               "--any-machine"], input=f"dr_li\n{server.users['dr_li']}\n")
        assert got.exit_code == 0, got.output
        first = LicenceStore(config / "licences").load(str(open_bundle(bundle).manifest["model"]["uuid"]))
        assert first.licence["licence"]["machine"] is None

        # a rotation while the service runs: the bundle (signed by the old key) still verifies,
        # the renewed licence is signed by the new key, and offline prediction accepts both
        assert _run("keys", "rotate-signing", "--data-dir", str(data), config=config).returncode == 0
        renew = cli.invoke(app, ["activate", "--server", server.url, "--bundle", str(bundle),
                                 "--renew", "--api-key", server.keys["clinician"]])
        assert renew.exit_code == 0 and "renewed" in renew.output, renew.output
        second = LicenceStore(config / "licences").load(first.path.stem)
        assert second.licence_id != first.licence_id
        assert second.licence["licence"]["key_id"] != first.licence["licence"]["key_id"]
        out = tmp_path / "r.json"
        ran = _run("predict", "--bundle", str(bundle), str(_png(tmp_path)), "--out", str(out),
                   config=config, offline=True)
        assert ran.returncode == 0, ran.stdout + ran.stderr

        with server.client("admin") as c:
            assert c.delete(f"/v1/licences/{second.licence_id}").status_code == 204
        again = cli.invoke(app, ["activate", "--server", server.url, "--bundle", str(bundle),
                                 "--renew", "--api-key", server.keys["clinician"]])
        assert again.exit_code == 1 and "was revoked" in str(again.exception), again.output
    finally:
        os.environ.pop(CONFIG_ENV, None)
