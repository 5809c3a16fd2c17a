"""What a service accepted it keeps: 50 concurrent uploads give 50 records (none lost, none
twice), every 201 survives `kill -9` and a restart, the audit chain of it all verifies and an
edited entry is caught — on SQLite and on a real PostgreSQL server. And no patient-identifying
value of an upload reaches a log line, a table or a stored file."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pydicom
import pytest
import sqlalchemy as sa
from conftest import shared_path
from PIL import Image as PILImage
from serve import postgres
from serve.live import start_server

pytestmark = pytest.mark.xdist_group("serve")
postgres_server, db_url = postgres.postgres_server, postgres.db_url


def _distinct_pngs(n: int) -> list[bytes]:
    images = np.load(shared_path("medmnist", "breastmnist.npz"))["test_images"]
    out = []
    for k in range(n):
        buf = io.BytesIO()
        PILImage.fromarray(images[k % len(images)]).resize((28 + k % 7, 28)).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def _audit_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "medsight.cli", "audit", *args],
                          capture_output=True, text=True, timeout=120)


def test_concurrent_uploads_survive_kill_9_and_the_audit_chain_holds(db_url, tmp_path, serve_bundle):
    data_dir = tmp_path / "data"
    url = None if db_url.startswith("sqlite") else db_url
    server = start_server([serve_bundle], data_dir, database_url=url)
    files = _distinct_pngs(50)

    def upload(data: bytes):
        with server.client() as c:
            return c.post("/v1/predictions", files={"file": ("x.png", data)})

    with ThreadPoolExecutor(10) as ex:
        responses = list(ex.map(upload, files))
    refused = [r.text for r in responses if r.status_code != 201]
    assert not refused, refused
    ids = {r.json()["id"] for r in responses}
    assert len(ids) == 50
    server.stop(signal.SIGKILL)  # no shutdown of any kind

    again = start_server([serve_bundle], data_dir, database_url=url, accounts=False)
    again.keys = server.keys
    try:
        with again.client() as c:
            listed = c.get("/v1/predictions", params={"limit": 200}).json()
        assert listed["total"] == 50 and {i["id"] for i in listed["items"]} == ids
    finally:
        again.stop()
    db = ["--data-dir", str(data_dir)] + ([] if url is None else ["--database-url", url])
    ok = _audit_cli("verify", *db)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    engine = sa.create_engine(url or f"sqlite:///{data_dir / 'medsight.db'}")
    with engine.begin() as conn:
        first = conn.execute(sa.text("SELECT MIN(seq) FROM audit_log WHERE status = 201")).scalar_one()
        conn.execute(sa.text("UPDATE audit_log SET status = 200 WHERE seq = :s"), {"s": first})
    engine.dispose()
    broken = _audit_cli("verify", *db)
    assert broken.returncode == 1 and f"entry {first}" in broken.stdout, broken.stdout


PLANTED = {"PatientName": "Zhangsan^Plantedname", "PatientID": "PID8675309",
           "PatientBirthDate": "19510203", "StudyDate": "20240305", "AccessionNumber": "ACC5551234",
           "InstitutionName": "Plantedtown General Hospital", "ReferringPhysicianName": "Refdoc^Planted",
           "OtherPatientIDs": "OTHER7654321", "PatientAddress": "42 Plantedstreet"}


def test_no_patient_identifier_reaches_logs_tables_or_stored_files(tmp_path, serve_bundle):
    ct = pydicom.dcmread(sorted(shared_path("ct_medical_images").glob("**/*.dcm"))[1])
    for keyword, value in PLANTED.items():
        setattr(ct, keyword, value)
    original_uid = str(ct.StudyInstanceUID)
    buf = io.BytesIO()
    ct.save_as(buf)
    server = start_server([serve_bundle], tmp_path / "data", "--log-level", "debug")
    try:
        with server.client() as c:
            r = c.post("/v1/predictions", files={"file": ("Zhangsan_Plantedname_PID8675309.dcm",
                                                          buf.getvalue())})
            assert r.status_code == 201, r.text
            body = r.text
            pid = r.json()["id"]
            report = c.get(f"/v1/predictions/{pid}/report").text
            assert c.get(f"/v1/predictions/{pid}/heatmap.png").status_code == 200
            listed = c.get("/v1/predictions").text
            c.post("/v1/predictions", files={"file": ("Zhangsan_Plantedname.txt", b"PID8675309")})
    finally:
        server.stop()
    needles = [v.split("^")[0] for v in PLANTED.values()] + [v.split("^")[-1] for v in PLANTED.values()]
    needles += ["2024-03-05", "1951-02-03", original_uid]
    haystacks = {"response": body, "report": report, "list": listed, "server log": server.log_text()}
    engine = sa.create_engine(f"sqlite:///{tmp_path / 'data' / 'medsight.db'}")
    with engine.connect() as conn:
        for table in sa.inspect(engine).get_table_names():
            rows = conn.execute(sa.text(f'SELECT * FROM "{table}"')).fetchall()
            haystacks[f"table {table}"] = "\n".join(repr(tuple(row)) for row in rows)
    engine.dispose()
    for path in (tmp_path / "data").rglob("*"):
        if path.is_file():
            haystacks[f"file {path.name}"] = path.read_bytes().decode("latin-1")
    assert "table predictions" in haystacks and any(k.startswith("file ") and k.endswith(".dcm")
                                                    for k in haystacks)
    found = [(needle, where) for needle in needles for where, text in haystacks.items()
             if needle in text]
    assert not found, found
