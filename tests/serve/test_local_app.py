"""`medsight app` with the network cut: in a new network namespace with only loopback up, the
local app (a signed bundle, a licence kept on this machine) serves the service's page to headless
Chromium, which enters by the printed link, uploads a real image and sees the model's result; the
result (exactly the Predictor's probabilities) and the report land in the local folder. Refusals
stop it before it serves."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from serve.test_offline_predict import MEDSIGHT, UNSHARE, _png

from medsight.deploy.bundle import open_bundle
from medsight.deploy.bundle_archive import read_bundle, write_bundle
from medsight.deploy.licence import issue_licence, machine_fingerprint
from medsight.deploy.licence_store import CONFIG_ENV, LicenceStore
from medsight.deploy.predictor import Predictor
from medsight.deploy.signing import sign_files
from medsight.serve.signing_keys import SigningKeys

pytestmark = [pytest.mark.xdist_group("serve"), pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
SCRIPT = Path(__file__).with_name("local_app_offline.py")


def _licensed(tmp: Path, bundle: Path) -> tuple[Path, Path]:
    """A signed copy of `bundle` and a config folder holding a licence for it."""
    keys = SigningKeys(tmp / "service")
    signed = tmp / "signed.msb"
    write_bundle(sign_files(read_bundle(bundle), keys.current()), signed)
    manifest = open_bundle(signed).manifest
    licence = issue_licence(keys.current(), user="dr_li", role="clinician", manifest=manifest,
                            machine=machine_fingerprint())
    config = tmp / "config"
    LicenceStore(config / "licences").save(str(manifest["model"]["uuid"]), "http://service.test",
                                           json.loads(licence), keys.ring())
    return signed, config


def test_the_local_app_in_chromium_with_the_network_cut(serve_bundle, tmp_path) -> None:
    if not UNSHARE:
        pytest.skip("unshare -rn is not allowed here: the network cannot be cut for this test")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"headless chromium not found at {CHROMIUM}: run `make system-deps`")
    pytest.importorskip("playwright")
    signed, config = _licensed(tmp_path, serve_bundle)
    image = _png(tmp_path)
    folder = tmp_path / "results"
    run = subprocess.run(["unshare", "-rn", "sh", "-c", 'ip link set lo up && exec "$@"', "sh",
                          sys.executable, str(SCRIPT), MEDSIGHT, str(signed), str(image),
                          str(folder), CHROMIUM],
                         env={**os.environ, CONFIG_ENV: str(config)}, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen["outside_reachable"] is False, seen
    assert "medsight app" in seen["without_link"] and not seen["signin_visible"]
    assert "licensed to dr_li" in seen["who"] and not seen["signout_visible"]
    assert seen["page_errors"] == [] and seen["report_has_label"], seen
    assert seen["foreign_host"] == 403  # DNS rebinding: another Host is refused

    expected = Predictor(signed).predict(str(image))
    assert seen["label"] == expected.label
    [row] = [json.loads(line) for line in (folder / "results.jsonl").read_text().splitlines()]
    assert row["probabilities"] == dict(expected.probabilities)
    assert seen["reports"] == [f"{row['id']}.en.html"]
    last_use = json.loads(LicenceStore(config / "licences").path_for(
        str(open_bundle(signed).manifest["model"]["uuid"])).read_text())["last_use"]
    assert last_use is not None


def test_the_local_app_refuses_to_start_without_an_entitlement(serve_bundle, tmp_path) -> None:
    env = {**os.environ, CONFIG_ENV: str(tmp_path / "config")}
    signed = tmp_path / "signed.msb"
    (tmp_path / "elsewhere").mkdir()
    shutil.copy(_licensed(tmp_path / "elsewhere", serve_bundle)[0], signed)  # its licence is not here
    for bundle, says in ((serve_bundle, "is not signed"), (signed, "no licence for this bundle")):
        got = subprocess.run([MEDSIGHT, "app", "--bundle", str(bundle), "--no-browser",
                              "--folder", str(tmp_path / "f")], env=env, capture_output=True,
                             text=True, timeout=120)
        assert got.returncode == 1 and says in " ".join(got.stderr.split()), got.stderr
        assert not (tmp_path / "f").exists()
