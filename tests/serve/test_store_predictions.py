"""Store predictions on SQLite and PostgreSQL: one transaction, image dedupe, filters, pages, reviews,
and 50 concurrent writers leaving 50 rows and an intact audit chain."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import threading
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from serve import postgres
from sqlalchemy import text

from medsight.errors import InvalidConfig, MedsightError
from medsight.serve.db import Store

postgres_server, db_url, store = postgres.postgres_server, postgres.db_url, postgres.store

T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def record(user_id: int, content: str, *, created: datetime = T0, label: str = "malignant",
           model: str = "breast", pseudonym: str | None = "ANON-1", study: date | None = date(2019, 5, 2)
           ) -> dict:
    """A prediction record as the service builds it (pseudonyms, shifted dates, hashes only)."""
    sha = hashlib.sha256(content.encode()).hexdigest()
    return {
        "id": uuid.uuid4().hex, "user_id": user_id, "model_name": model, "model_version": "1.0.0",
        "model_uuid": "b7c1", "label": label, "probabilities": {"benign": 0.2, "malignant": 0.8},
        "confidence": 0.8, "threshold": 0.41, "warnings": ["low contrast"], "timings": {"predict": 3.5},
        "input": {"shape": [28, 28], "modality": "US", "format": "png"},
        "patient_pseudonym": pseudonym, "study_date": study, "created": created,
        "image": {"sha256": sha, "path": f"images/{sha[:2]}/{sha}.png", "format": "png",
                  "size_bytes": 1234, "upload_hmac": hashlib.sha256(b"k" + content.encode()).hexdigest()},
    }


def audit_for(rec: dict, user: str = "alice") -> dict:
    return {"ts": rec["created"], "user": user, "action": "POST /v1/predictions", "status": 201,
            "target": rec["id"], "model_version": rec["model_version"], "detail": None}


def test_add_and_get_round_trip(store):
    alice = store.add_user("alice", "clinician")
    rec = record(alice.id, "img-1")
    store.add_predictions([rec], [audit_for(rec)])
    got = store.get_prediction(rec["id"])
    image = got.pop("image")
    assert got.pop("reviews") == [] and got.pop("user") == "alice"
    assert got == {k: v for k, v in rec.items() if k != "image"}
    assert image["created"] == T0 and {k: image[k] for k in rec["image"]} == rec["image"]
    assert got["created"].tzinfo is not None and got["study_date"] == date(2019, 5, 2)
    assert store.get_prediction("nope") is None
    report = store.verify_audit()
    assert report.ok and report.entries == 1


def test_one_transaction_nothing_stored_on_failure(store):
    alice = store.add_user("alice", "clinician")
    good = record(alice.id, "a")
    bad = record(alice.id, "b")
    bad["user_id"] = 9999  # no such user: the foreign key fails at insert
    with pytest.raises(MedsightError, match="nothing was"):
        store.add_predictions([good, bad], [audit_for(good), audit_for(bad)])
    assert store.list_predictions() == ([], 0)
    assert store.verify_audit().entries == 0
    with store._engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM images")).scalar_one() == 0
    with pytest.raises(InvalidConfig, match="unknown keys"):
        store.add_predictions([{**good, "patient_name": "x"}], [])


def test_identical_images_share_one_row(store):
    alice = store.add_user("alice", "clinician")
    first = record(alice.id, "x")
    again, same_batch = (record(alice.id, "x", created=T0 + timedelta(seconds=s)) for s in (1, 2))
    store.add_predictions([first], [])
    store.add_predictions([again, same_batch], [])
    with store._engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM images")).scalar_one() == 1
    found = store.find_image(first["image"]["upload_hmac"])
    assert found["sha256"] == first["image"]["sha256"]
    assert [p["id"] for p in found["predictions"]] == [first["id"]]  # the first, not all of them
    with store._engine.connect() as c:
        assert c.execute(text("SELECT count(*) FROM predictions")).scalar_one() == 3
    assert found["predictions"][0]["user_id"] == alice.id
    assert store.find_image("0" * 64) is None


def test_list_filters_pagination_and_own_results(store):
    alice = store.add_user("alice", "clinician")
    bob = store.add_user("bob", "clinician")
    recs = []
    for i in range(7):
        recs.append(record(alice.id if i % 2 == 0 else bob.id, f"img-{i}", created=T0 + timedelta(days=i),
                           label="malignant" if i < 4 else "benign", model="breast" if i < 5 else "chest",
                           pseudonym=f"ANON-{i % 3}"))
    store.add_predictions(recs, [audit_for(r) for r in recs])

    items, total = store.list_predictions()
    assert total == 7 and [r["id"] for r in items] == [r["id"] for r in reversed(recs)]  # newest first
    page, total = store.list_predictions(limit=3, offset=3)
    assert total == 7 and [r["id"] for r in page] == [recs[3]["id"], recs[2]["id"], recs[1]["id"]]
    assert store.list_predictions(limit=3, offset=6)[0][0]["id"] == recs[0]["id"]
    assert store.list_predictions(offset=50) == ([], 7)

    index = {r["id"]: i for i, r in enumerate(recs)}

    def ids(**kw) -> list[int]:
        items, total = store.list_predictions(**kw)
        assert total == len(items)
        return sorted(index[r["id"]] for r in items)

    assert ids(user_id=alice.id) == [0, 2, 4, 6]  # a clinician sees their own only
    assert ids(user_id=bob.id) == [1, 3, 5]
    assert ids(pseudonym="ANON-1") == [1, 4]
    assert ids(label="benign") == [4, 5, 6]
    assert ids(model="chest") == [5, 6]
    day = [(T0 + timedelta(days=i)).date() for i in range(7)]
    assert ids(date_from=day[2], date_to=day[4]) == [2, 3, 4]  # both ends inclusive
    assert ids(date_from=day[6]) == [6]
    assert ids(date_to=day[0]) == [0]
    assert ids(user_id=alice.id, label="malignant", model="breast") == [0, 2]
    assert ids(pseudonym="ANON-9") == []
    with pytest.raises(InvalidConfig):
        store.list_predictions(limit=0)
    with pytest.raises(InvalidConfig):
        store.list_predictions(offset=-1)


def test_reviews(store):
    alice = store.add_user("alice", "clinician")
    rev = store.add_user("rita", "reviewer")
    rec = record(alice.id, "r")
    store.add_predictions([rec], [])
    r1 = store.add_review(rec["id"], rev, "agree", "matches the biopsy")
    r2 = store.add_review(rec["id"], rev, "disagree", "")
    assert (r1["reviewer"], r1["verdict"], r1["note"]) == ("rita", "agree", "matches the biopsy")
    assert r1["created"].tzinfo is not None
    got = store.get_prediction(rec["id"])["reviews"]
    assert [(r["id"], r["verdict"]) for r in got] == [(r1["id"], "agree"), (r2["id"], "disagree")]
    assert store.list_predictions()[0][0]["reviews"] == got
    assert store.add_review("missing", rev, "agree", "") is None
    with pytest.raises(InvalidConfig, match="verdict"):
        store.add_review(rec["id"], rev, "maybe", "")


def test_concurrent_writers_keep_every_row_and_one_chain(store):
    alice = store.add_user("alice", "clinician")
    recs = [record(alice.id, f"c-{i}") for i in range(50)]
    errors: list[BaseException] = []
    start = threading.Barrier(50)

    def write(rec: dict) -> None:
        try:
            start.wait()
            store.add_predictions([rec], [audit_for(rec)])
            store.audit({"user": "alice", "action": f"GET /v1/predictions/{rec['id']}", "status": 200})
        except BaseException as exc:  # noqa: BLE001 - collected and re-raised below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(r,)) for r in recs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    items, total = store.list_predictions(limit=100)
    assert total == 50 and {r["id"] for r in items} == {r["id"] for r in recs}
    report = store.verify_audit()
    assert report.ok and report.entries == 100, report


CHILD = r"""
import hashlib, sys, uuid
from datetime import UTC, datetime
from medsight.serve.db import Store
store = Store.open(sys.argv[1], sys.argv[2])
uid = store.add_user("writer", "clinician").id
print("ready", flush=True)
for i in range(100000):
    sha = hashlib.sha256(f"k{i}".encode()).hexdigest()
    pid = uuid.uuid4().hex
    now = datetime.now(UTC)
    rec = {"id": pid, "user_id": uid, "model_name": "m", "model_version": "1", "label": "a",
           "probabilities": {"a": 1.0}, "confidence": 1.0, "created": now,
           "image": {"sha256": sha, "path": "p", "format": "png", "size_bytes": 1}}
    store.add_predictions([rec], [{"ts": now, "user": "writer", "action": "POST", "status": 201,
                                   "target": pid}])
    print(pid, flush=True)  # the service answers 201 here
"""


def test_every_returned_prediction_survives_kill_9(db_url, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path), db_url], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        answered = [proc.stdout.readline().strip() for _ in range(25)]
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    with Store.open(tmp_path, db_url) as store:
        items, total = store.list_predictions(limit=1000)
        assert set(answered) <= {r["id"] for r in items}
        report = store.verify_audit()
        assert report.ok and report.entries == total
