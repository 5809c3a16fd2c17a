"""Signed bundles: `medsight bundle sign` with the service's Ed25519 key, verified offline with the
public key alone; a forged signature, a tampered file or another signer is refused; bundles signed
before a key rotation still verify against the key ring."""

from __future__ import annotations

import json
import shutil

import pytest
from deploy.tamper import flip, members, tampered_copy
from typer.testing import CliRunner

from medsight.cli import app
from medsight.deploy import open_bundle, verify_bundle
from medsight.deploy.bundle_archive import write_bundle
from medsight.deploy.signing import SIGNATURE, parse_public_key
from medsight.errors import BundleIntegrityError
from medsight.serve.signing_keys import SigningKeys, public_key_text

pytestmark = pytest.mark.xdist_group("deploy_runs")


@pytest.fixture
def signed(classical_run, bundle_of, tmp_path):
    """A copy of the classical bundle signed with a fresh service key; (path, keys)."""
    path = tmp_path / "signed.msb"
    shutil.copy(bundle_of(classical_run), path)
    out = CliRunner().invoke(app, ["bundle", "sign", str(path), "--data-dir", str(tmp_path / "svc")])
    assert out.exit_code == 0, out.output
    return path, SigningKeys(tmp_path / "svc")


def test_a_signed_bundle_verifies_with_its_public_key_only(signed, tmp_path) -> None:
    path, keys = signed
    key = public_key_text(keys.current())
    bundle = open_bundle(path, [parse_public_key(key)])
    assert bundle.signature.key_id == keys.ring()[-1]["key_id"]
    out = CliRunner().invoke(app, ["bundle", "verify", str(path), "--public-key", key])
    assert out.exit_code == 0 and "signed by Ed25519 key" in out.output
    mode = (tmp_path / "svc" / "signing" / f"{bundle.signature.key_id}.pem").stat().st_mode & 0o777
    assert mode == 0o600


def test_another_signer_a_forged_signature_or_a_changed_file_is_refused(signed, tmp_path) -> None:
    path, _ = signed
    other = public_key_text(SigningKeys(tmp_path / "other").current())
    with pytest.raises(BundleIntegrityError, match="not the public key given"):
        open_bundle(path, [parse_public_key(other)])
    out = CliRunner().invoke(app, ["bundle", "verify", str(path), "--public-key", other])
    assert out.exit_code == 1
    files = members(path)
    doc = json.loads(files[SIGNATURE])
    doc["signature"] = doc["signature"][:10] + ("A" if doc["signature"][10] != "A" else "B") \
        + doc["signature"][11:]
    write_bundle({**files, SIGNATURE: json.dumps(doc).encode()}, tmp_path / "forged.msb")
    with pytest.raises(BundleIntegrityError, match="signature does not match"):
        open_bundle(tmp_path / "forged.msb")
    with pytest.raises(BundleIntegrityError, match="fails its sha256"):
        open_bundle(tampered_copy(path, "model.onnx", tmp_path / "tampered.msb"))
    write_bundle({**files, SIGNATURE: flip(files[SIGNATURE], 3)}, tmp_path / "garbled.msb")
    with pytest.raises(BundleIntegrityError, match="malformed"):
        open_bundle(tmp_path / "garbled.msb")


def test_an_unsigned_bundle_is_refused_when_a_signer_is_required(classical_run, bundle_of) -> None:
    assert open_bundle(bundle_of(classical_run)).signature is None
    assert verify_bundle(bundle_of(classical_run))[-1] == "not signed"
    with pytest.raises(BundleIntegrityError, match="not signed"):
        open_bundle(bundle_of(classical_run), [b"\0" * 32])


def test_bundles_signed_before_a_rotation_still_verify(signed, tmp_path) -> None:
    path, keys = signed
    before = keys.ring()[-1]["key_id"]
    out = CliRunner().invoke(app, ["keys", "rotate-signing", "--data-dir", str(tmp_path / "svc")])
    assert out.exit_code == 0, out.output
    ring = keys.ring()
    assert [k["key_id"] for k in ring][0] == before and ring[0]["retired"] and ring[1]["retired"] is None
    assert not (tmp_path / "svc" / "signing" / f"{before}.pem").exists()  # retired keys sign no more
    assert open_bundle(path, keys.public_keys()).signature.key_id == before
    resigned = tmp_path / "resigned.msb"
    shutil.copy(path, resigned)
    CliRunner().invoke(app, ["bundle", "sign", str(resigned), "--data-dir", str(tmp_path / "svc")])
    assert open_bundle(resigned, keys.public_keys()).signature.key_id == ring[1]["key_id"]
    with pytest.raises(BundleIntegrityError, match="not the public key given"):
        open_bundle(resigned, [keys.public_keys()[0]])
