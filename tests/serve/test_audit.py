"""The audit hash chain on SQLite and PostgreSQL: intact, then an edited, deleted, reordered or forged
entry (changed directly in the database) is found and named."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest
from serve import postgres
from sqlalchemy import text

from medsight.errors import InvalidConfig
from medsight.serve.db.audit import GENESIS, canonical, entry_hash

postgres_server, db_url, store = postgres.postgres_server, postgres.db_url, postgres.store

T0 = datetime(2026, 3, 1, 8, 30, 15, 123456, tzinfo=UTC)


def fill(store, n: int = 5) -> None:
    for i in range(n):
        store.audit({"ts": T0 + timedelta(seconds=i), "user": "alice", "action": "POST /v1/predictions",
                     "status": 201, "target": f"p{i}", "model_version": "1.0.0", "detail": None})


def sql(store, statement: str, **params) -> None:
    with store._write.begin() as c:
        c.execute(text(statement), params)


def test_intact_chain(store):
    assert store.verify_audit().ok and store.verify_audit().entries == 0
    fill(store)
    store.audit({"action": "GET /v1/models", "status": 200})  # ts defaults to now, user may be None
    report = store.verify_audit()
    assert (report.ok, report.entries, report.first_bad, report.reason) == (True, 6, None, None)
    with store._engine.connect() as c:
        rows = c.execute(text("SELECT seq, prev_hash, hash FROM audit_log ORDER BY seq")).all()
    assert rows[0].prev_hash == GENESIS and all(b.prev_hash == a.hash for a, b in pairwise(rows))
    assert report.head == rows[-1].hash
    with pytest.raises(InvalidConfig, match="unknown audit entry keys"):
        store.audit({"action": "x", "patient": "Jane Doe"})
    with pytest.raises(InvalidConfig, match="needs an action"):
        store.audit({"status": 200})


def test_hash_is_sha256_of_prev_and_canonical_json():
    fields = {"ts": T0, "user": "a", "action": "GET /", "status": 200, "target": None,
              "model_version": None, "detail": "x"}
    doc = canonical(1, fields)
    assert doc == ('{"action":"GET /","detail":"x","model_version":null,"seq":1,"status":200,"target":null,'
                   '"ts":"2026-03-01T08:30:15.123456+00:00","user":"a"}')
    assert entry_hash(GENESIS, 1, fields) == hashlib.sha256((GENESIS + doc).encode()).hexdigest()


def test_edited_entry_is_detected(store):
    fill(store)
    sql(store, "UPDATE audit_log SET status = 403 WHERE seq = 3")
    report = store.verify_audit()
    assert (report.ok, report.first_bad) == (False, 3) and "edited" in report.reason


def test_edited_entry_with_recomputed_hash_breaks_the_next_link(store):
    fill(store)
    with store._engine.connect() as c:
        row = c.execute(text("SELECT * FROM audit_log WHERE seq = 2")).mappings().one()
    ts = row["ts"] if isinstance(row["ts"], datetime) else datetime.fromisoformat(row["ts"])  # SQLite: text
    fields = {"ts": ts, "user": "mallory", "action": row["action"], "status": row["status"],
              "target": row["target"], "model_version": row["model_version"], "detail": row["detail"]}
    sql(store, "UPDATE audit_log SET user_name = 'mallory', hash = :h WHERE seq = 2",
        h=entry_hash(row["prev_hash"], 2, fields))
    report = store.verify_audit()
    assert (report.ok, report.first_bad) == (False, 3) and "does not chain" in report.reason


def test_deleted_entry_is_detected(store):
    fill(store)
    sql(store, "DELETE FROM audit_log WHERE seq = 2")
    report = store.verify_audit()
    assert (report.ok, report.first_bad, report.entries) == (False, 2, 4) and "deleted" in report.reason


def test_reordered_entries_are_detected(store):
    fill(store)
    # swap the contents of entries 2 and 4 (each keeps its own hashes: the order is what changed)
    sql(store, "UPDATE audit_log SET seq = -2 WHERE seq = 2")
    sql(store, "UPDATE audit_log SET seq = 2 WHERE seq = 4")
    sql(store, "UPDATE audit_log SET seq = 4 WHERE seq = -2")
    report = store.verify_audit()
    assert (report.ok, report.first_bad) == (False, 2) and "does not chain" in report.reason


def test_appends_after_tampering_do_not_hide_it(store):
    fill(store, 3)
    sql(store, "UPDATE audit_log SET detail = 'nothing to see' WHERE seq = 1")
    fill(store, 2)
    report = store.verify_audit()
    assert (report.ok, report.first_bad, report.entries) == (False, 1, 5)
