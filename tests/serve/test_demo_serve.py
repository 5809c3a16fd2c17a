"""`make demo` ends by serving its bundle with a printed demo account: the printed password signs
in on the page and the printed API key predicts."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import httpx
import pytest
from serve.live import ct_dicoms, free_port

pytestmark = pytest.mark.xdist_group("serve")


def test_the_demo_serves_its_bundle_with_a_printed_account(serve_bundle, tmp_path) -> None:
    port = free_port()
    code = ("from pathlib import Path; from medsight.cli.demo import serve_demo; "
            f"serve_demo(Path({str(serve_bundle)!r}), Path({str(tmp_path / 'svc')!r}), {port})")
    log = tmp_path / "demo.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "COLUMNS": "200"})
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        text = log.read_text()
        password = re.search(r"user: demo\s+password: (\S+)", text).group(1)
        key = re.search(r"API key:\s+(msk_\S+)", text).group(1)
        r = httpx.post(url + "/v1/predictions", headers={"Authorization": f"Bearer {key}"},
                       files={"file": ("ct.dcm", ct_dicoms()[0].read_bytes())}, timeout=60)
        assert r.status_code == 201, r.text
        s = httpx.post(url + "/v1/session", json={"username": "demo", "password": password})
        assert s.status_code == 200 and s.json()["role"] == "clinician"
    finally:
        proc.terminate()
        proc.wait(20)
