"""Two `medsight serve` replicas behind one PostgreSQL (started by the tests) and one data folder:
they start at once on an empty database (one migration), a licence issued by one is renewed and
revoked through the other, a client's rate limit is one allowance across both, and 50 concurrent
uploads spread over both with one replica killed (SIGKILL) in the middle lose nothing: every 201
is stored once and read back the same through the survivor, the failed ones got a connection error
and go through on retry, ids are unique and the audit chain verifies. Replica A is
`medsight serve --processes 2`: a worker killed there is replaced while the port keeps answering.
Also: processes creating the signing key of an empty data folder at once end up with one key,
concurrent takes from one shared rate bucket never over-grant, and `--processes 2` is refused on
SQLite and with the PACS watcher."""

from __future__ import annotations

import base64
import io
import multiprocessing as mp
import os
import shutil
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest
import sqlalchemy as sa
from conftest import shared_path
from PIL import Image as PILImage
from serve import postgres
from serve.live import PASSWORDS, ROLES, LiveServer, start_server
from serve.live import _live as bench_live
from typer.testing import CliRunner

from medsight.deploy import open_bundle
from medsight.deploy.bundle_archive import read_bundle, write_bundle
from medsight.deploy.licence import check_licence
from medsight.deploy.manifest import canonical_json
from medsight.deploy.signing import sign_files
from medsight.errors import InvalidConfig
from medsight.serve.db import Store, migrate
from medsight.serve.signing_keys import SigningKeys, public_key_text

pytestmark = pytest.mark.xdist_group("serve")
postgres_server = postgres.postgres_server

RATE_PER_MINUTE = 600  # burst 60, 10 tokens a second
BURST = 60
UPLOADERS = [f"dr_up{i}" for i in range(5)]  # 10 uploads each: well inside their allowance
MACHINE = "cd" * 16


def _live(data_dir: Path, url: str, bundle: Path, *args: str) -> LiveServer:
    return start_server([bundle], data_dir, "--rate-limit", str(RATE_PER_MINUTE), *args,
                        accounts=False, database_url=url, wait=False)


def _workers(server: LiveServer) -> set[int]:
    """The pids of the uvicorn worker processes of `medsight serve --processes N`."""
    found = set()
    for entry in Path("/proc").iterdir():
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == server.proc.pid and b"spawn_main" in cmdline:
            found.add(int(entry.name))
    return found


def _running(pid: int) -> bool:
    """Whether process `pid` still runs: an exited one whose new parent (pid 1 after its own
    parent died) has not reaped it yet is a zombie, ended though its /proc entry remains."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.fixture(scope="module")
def replicas(postgres_server, tmp_path_factory: pytest.TempPathFactory, serve_bundle: Path):
    """Replicas A (`--processes 2`: two uvicorn workers on one port) and B (one process) started
    at the same moment on an empty database, sharing one data folder whose key signed the served
    bundle; then the test users and their keys."""
    root = tmp_path_factory.mktemp("replicas")
    data_dir, bundle = root / "data", root / "signed.msb"
    shutil.copy(serve_bundle, bundle)
    write_bundle(sign_files(read_bundle(bundle), SigningKeys(data_dir).current()), bundle,
                 overwrite=True)
    url = postgres_server.create_database()
    servers = [_live(data_dir, url, bundle, "--processes", "2"), _live(data_dir, url, bundle)]
    try:
        for server in servers:
            bench_live.wait_ready(server)
        users = {**ROLES, **{name: "clinician" for name in UPLOADERS}, "dr_rate": "clinician"}
        keys = {}
        with Store.open(data_dir, url) as store:
            for name, role in users.items():
                store.add_user(name, role, PASSWORDS.get(name, f"{name} password"))
                keys[name] = store.create_key(name)[1]
        for server in servers:
            server.keys = {**keys, **{role: keys[name] for name, role in ROLES.items()}}
        yield servers, url, open_bundle(bundle).manifest
    finally:
        for server in servers:
            server.stop()


def test_replicas_started_at_once_migrate_the_empty_database_once(replicas) -> None:
    (a, b), url, _ = replicas
    assert a.alive() and b.alive()
    engine = sa.create_engine(url)
    try:
        with engine.connect() as conn:
            versions = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalars().all()
            assert versions == [migrate.head_revision()]
            assert conn.execute(sa.text("SELECT count(*) FROM users")).scalar_one() == 3 + 6
    finally:
        engine.dispose()
    assert len(_workers(a)) == 2 and _workers(b) == set()
    for server in (a, b):
        assert "Traceback" not in server.log_text(), server.log_text()


def test_a_killed_worker_process_is_replaced_and_the_port_keeps_answering(replicas) -> None:
    (a, _), _, _ = replicas
    counted = a.metrics()["medsight_requests_total"]
    for _ in range(20):  # new connections, spread over the workers by the kernel
        with a.client("admin") as admin:
            assert admin.get("/v1/models").status_code == 200
    # /metrics sums over every worker, whichever answers (and counts the scrape before it)
    assert a.metrics()["medsight_requests_total"] >= counted + 21
    counted = a.metrics()["medsight_requests_total"]
    before = _workers(a)
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    with a.client("admin") as admin:  # the other worker answers meanwhile
        for _ in range(6):
            r = admin.get("/v1/models")
            assert r.status_code == 200, r.text
    assert a.metrics()["medsight_requests_total"] >= counted + 7  # the dead worker's counts kept
    assert "pid=" not in httpx.get(a.url + "/metrics").text
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and len(_workers(a) - {victim}) < 2:
        time.sleep(0.2)
    now = _workers(a)
    assert victim not in now and len(now) == 2 and len(now & before) == 1
    bench_live.wait_ready(a)


def _licence(server: LiveServer, manifest: dict, **extra) -> httpx.Response:
    body = {"bundle_uuid": manifest["model"]["uuid"], "manifest_sha256": manifest["manifest_sha256"],
            "machine": MACHINE, "renew": None, **extra}
    with server.client("clinician") as c:
        return c.post("/v1/licences", json=body)


def test_a_licence_from_one_replica_is_renewed_and_revoked_through_the_other(replicas) -> None:
    (a, b), _, manifest = replicas
    first = _licence(a, manifest)
    assert first.status_code == 201, first.text
    lic_id = first.json()["id"]
    renewed = _licence(b, manifest, renew=lic_id)  # B finds A's licence in the shared database
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["renewed_from"] == lic_id
    assert first.json()["service_keys"] == renewed.json()["service_keys"]  # one key ring
    for doc, keyring in ((first.json()["licence"], renewed.json()["service_keys"]),
                         (renewed.json()["licence"], first.json()["service_keys"])):
        keys = [base64.b64decode(k["public_key"]) for k in keyring]
        assert check_licence(canonical_json(doc), manifest, trusted_keys=keys, machine=MACHINE).user \
            == "dr_li"
    with b.client("admin") as admin:
        assert admin.delete(f"/v1/licences/{lic_id}").status_code == 204
    refused = _licence(a, manifest, renew=lic_id)
    assert refused.status_code == 403 and f"licence {lic_id} was revoked" in refused.json()["detail"]


def test_a_clients_rate_limit_is_shared_by_the_replicas(replicas) -> None:
    (a, b), _, _ = replicas
    headers = {"Authorization": f"Bearer {a.keys['dr_rate']}"}
    codes: dict[str, list[int]] = {"a": [], "b": []}
    with httpx.Client(base_url=a.url, headers=headers) as ca, \
            httpx.Client(base_url=b.url, headers=headers) as cb:
        started = time.monotonic()
        for i in range(2 * BURST):
            name, client = ("a", ca) if i % 2 == 0 else ("b", cb)
            r = client.get("/v1/models")
            assert r.status_code in (200, 429), r.text
            if r.status_code == 429:
                assert int(r.headers["Retry-After"]) >= 1
            codes[name].append(r.status_code)
        elapsed = time.monotonic() - started
    allowed = sum(c == 200 for cs in codes.values() for c in cs)
    refill = RATE_PER_MINUTE / 60 * elapsed
    # one allowance: the burst and what refilled meanwhile; two private limiters would let all through
    assert BURST <= allowed <= BURST + refill + 1, (allowed, elapsed)
    assert 429 in codes["a"] and 429 in codes["b"]
    assert codes["a"][: BURST // 2 - 1].count(429) == codes["b"][: BURST // 2 - 1].count(429) == 0


def _pngs(n: int) -> list[bytes]:
    images = np.load(shared_path("medmnist", "breastmnist.npz"))["test_images"]
    out = []
    for k in range(n):
        buf = io.BytesIO()
        PILImage.fromarray(images[k]).save(buf, format="PNG")
        out.append(buf.getvalue())
    return out


def test_uploads_over_both_replicas_survive_one_being_killed(replicas) -> None:
    (a, b), url, _ = replicas
    assert a.alive() and b.alive()
    files = _pngs(50)
    done, kill_now = [0], threading.Event()
    lock = threading.Lock()

    def upload(i: int) -> tuple[int, LiveServer, httpx.Response | Exception]:
        server = (a, b)[i % 2]
        headers = {"Authorization": f"Bearer {a.keys[UPLOADERS[i % len(UPLOADERS)]]}"}
        try:
            with httpx.Client(base_url=server.url, headers=headers, timeout=60) as c:
                out: httpx.Response | Exception = c.post(
                    "/v1/predictions", files={"file": (f"{i}.png", files[i])})
        except httpx.TransportError as exc:  # refused, reset or cut off by the kill
            out = exc
        with lock:
            done[0] += 1
            if done[0] == 16:
                kill_now.set()
        return i, server, out

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(upload, i) for i in range(len(files))]
        kill_now.wait(60)
        b.stop(signal.SIGKILL)
        results = [f.result() for f in futures]

    answered = {i: r for i, _, r in results if isinstance(r, httpx.Response)}
    failed = [i for i, server, r in results if not isinstance(r, httpx.Response)]
    assert all(r.status_code == 201 for r in answered.values()), \
        [r.text for r in answered.values() if r.status_code != 201]
    assert failed and all(i % 2 == 1 for i in failed)  # only B's uploads, and some of them
    assert any(server is b for i, server, _ in results if i in answered)  # B answered some first
    for i in failed:  # retried on the survivor
        headers = {"Authorization": f"Bearer {a.keys[UPLOADERS[i % len(UPLOADERS)]]}"}
        with httpx.Client(base_url=a.url, headers=headers, timeout=60) as c:
            answered[i] = c.post("/v1/predictions", files={"file": (f"{i}.png", files[i])})
        assert answered[i].status_code == 201, answered[i].text
    assert sorted(answered) == list(range(len(files)))
    ids = [r.json()["id"] for r in answered.values()]
    assert len(set(ids)) == len(ids)

    with a.client("admin") as admin:  # every record, through the survivor
        listed = admin.get("/v1/predictions", params={"limit": 200}).json()
    assert listed["total"] == len(listed["items"]) == len({i["id"] for i in listed["items"]})
    by_id = {item["id"]: item for item in listed["items"]}
    answered_by_b = {i for i, server, r in results if server is b and isinstance(r, httpx.Response)}
    for i, r in answered.items():  # each one stored, the same as answered
        stored = by_id[r.json()["id"]]
        if i in answered_by_b:  # and read one by one by its uploader, B's too
            headers = {"Authorization": f"Bearer {a.keys[UPLOADERS[i % len(UPLOADERS)]]}"}
            with httpx.Client(base_url=a.url, headers=headers, timeout=60) as c:
                one = c.get(f"/v1/predictions/{r.json()['id']}")
            assert one.status_code == 200 and one.json() == stored, one.text
        for field in ("label", "probabilities", "confidence", "model"):
            assert stored[field] == r.json()[field], (i, field)
        assert stored["input"]["sha256"] == r.json()["input"]["sha256"]
    per_image: dict[str, list[str]] = {}
    for item in listed["items"]:
        per_image.setdefault(item["input"]["sha256"], []).append(item["id"])
    for i, r in answered.items():
        kept = per_image.pop(r.json()["input"]["sha256"])
        assert r.json()["id"] in kept
        # once, or twice when B committed an upload and died before answering it (then retried)
        assert len(kept) == 1 or (i in failed and len(kept) == 2), (i, kept)
    assert per_image == {}  # nothing stored that no upload asked for

    with Store.open(a.data_dir, url) as store:
        report = store.verify_audit()
        entries = store.audit_entries(10_000)
    assert report.ok, report
    predicted = {e["target"] for e in entries if e["action"] == "POST /v1/predictions"
                 and e["status"] == 201}
    assert set(ids) <= predicted
    assert "Traceback" not in a.log_text(), a.log_text()


def test_killing_the_parent_of_several_processes_ends_its_workers(replicas) -> None:
    (a, _), _, _ = replicas
    workers = _workers(a)
    assert len(workers) == 2
    metrics_dir = next(v.split(b"=", 1)[1].decode() for v in
                       Path(f"/proc/{min(workers)}/environ").read_bytes().split(b"\0")
                       if v.startswith(b"PROMETHEUS_MULTIPROC_DIR="))
    a.stop(signal.SIGKILL)  # no shutdown of any kind: the workers must not go on holding the port
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and any(_running(p) for p in workers):
        time.sleep(0.2)
    assert not any(_running(p) for p in workers), {p: Path(f"/proc/{p}/status").read_text()
                                                    for p in workers if _running(p)}
    with pytest.raises(httpx.TransportError):
        httpx.get(a.url + "/healthz", timeout=5)
    shutil.rmtree(metrics_dir)  # the killed parent could not remove it


def test_processes_making_the_first_signing_key_at_once_agree_on_one(tmp_path, monkeypatch
                                                                   ) -> None:
    # the spawned processes import the target by module name from the sys.path they inherit; a
    # top-level name of its own (not serve.*: a bench script on sys.path has a serve module too)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    from signing_key_race import first_key

    ctx = mp.get_context("spawn")
    n = 4
    start, out = ctx.Barrier(n), ctx.Queue()
    procs = [ctx.Process(target=first_key, args=(str(tmp_path), start, out)) for _ in range(n)]
    for p in procs:
        p.start()
    keys = [out.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(30)
    assert len(set(keys)) == 1
    ring = SigningKeys(tmp_path).ring()
    assert [public_key_text(SigningKeys(tmp_path).current())] == keys[:1]
    assert len(ring) == 1 and ring[0]["retired"] is None
    assert sorted(p.name for p in (tmp_path / "signing").glob("*.pem")) == [f"{ring[0]['key_id']}.pem"]
    assert not list((tmp_path / "signing").glob(".*.tmp"))


def test_several_processes_are_refused_on_sqlite_and_with_the_pacs_watcher(tmp_path,
                                                                           monkeypatch) -> None:
    import medsight.cli.serve  # noqa: F401  (registers the command)
    from medsight.cli.app import app

    monkeypatch.delenv("MEDSIGHT_DATABASE_URL", raising=False)
    args = ["serve", "--bundle", str(tmp_path / "model.msb"), "--data-dir", str(tmp_path), "--processes", "2"]
    out = CliRunner().invoke(app, args)
    assert isinstance(out.exception, InvalidConfig) and "needs PostgreSQL" in str(out.exception)
    out = CliRunner().invoke(app, [*args, "--database-url", "postgresql://u@/db?host=/nowhere",
                                   "--watch-pacs", str(tmp_path / "watch.yaml")])
    assert isinstance(out.exception, InvalidConfig) and "one process only" in str(out.exception)
    assert not (tmp_path / "medsight.db").exists()  # refused before anything was opened


def test_concurrent_takes_from_one_shared_bucket_never_grant_more_than_it_holds(postgres_server,
                                                                              tmp_path) -> None:
    from medsight.serve.rate_limit import SharedRateLimiter

    url = postgres_server.create_database()
    stores = [Store.open(tmp_path, url), Store.open(tmp_path, url)]  # two engines, as two replicas
    try:
        limiters = [SharedRateLimiter(s, per_minute=60, burst=20) for s in stores]  # 1 token a second
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            waits = list(pool.map(lambda i: limiters[i % 2].check("key:shared"), range(80)))
        elapsed = time.monotonic() - started
        granted = sum(w == 0.0 for w in waits)
        assert 20 <= granted <= 20 + elapsed + 1, (granted, elapsed)
        assert all(0 < w <= 1.0 for w in waits if w)  # a refused request waits for one token
        assert stores[0].prune_rate_buckets(idle_s=60.0) == 0  # in use: kept
        time.sleep(0.05)
        assert stores[1].prune_rate_buckets(idle_s=0.01) == 1  # idle (as if full again): forgotten
        assert limiters[0].check("key:shared") == 0.0
    finally:
        for s in stores:
            s.close()
