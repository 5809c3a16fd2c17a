"""Store accounts on SQLite and PostgreSQL: users and roles, passwords, API keys, browser sessions."""

from __future__ import annotations

import stat
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from serve import postgres
from sqlalchemy import text

from medsight.errors import InvalidConfig, MedsightError
from medsight.serve import auth
from medsight.serve.db import Store
from medsight.serve.db.engine import display_url, resolve_url

postgres_server, db_url, store = postgres.postgres_server, postgres.db_url, postgres.store


def test_open_reports_backend_and_masks_password(store, db_url):
    store.ping()
    assert store.url_for_display.split(":")[0] in ("sqlite", "postgresql+psycopg")
    assert display_url("postgresql+psycopg://u:s3cret@h/db") == "postgresql+psycopg://u:***@h/db"
    assert str(resolve_url(Path("."), "postgresql://u@h/db")).startswith("postgresql+psycopg://")


def test_users_roles_disable(store):
    a = store.add_user("alice", "clinician")
    b = store.add_user("bob.r", "reviewer")
    assert (a.name, a.role, a.disabled) == ("alice", "clinician", False)
    assert [u.name for u in store.list_users()] == ["alice", "bob.r"]
    with pytest.raises(InvalidConfig, match="already exists"):
        store.add_user("alice", "admin")
    with pytest.raises(InvalidConfig, match="unknown role"):
        store.add_user("carol", "root")
    with pytest.raises(InvalidConfig, match="invalid user name"):
        store.add_user("bad name", "admin")
    with pytest.raises(InvalidConfig, match="no user"):
        store.disable_user("nobody")
    store.disable_user("bob.r")
    assert store.get_user("bob.r") == b.__class__(id=b.id, name="bob.r", role="reviewer", disabled=True)


def test_passwords(store):
    with pytest.raises(InvalidConfig, match="8 to"):
        store.add_user("short", "admin", password="1234567")
    u = store.add_user("alice", "clinician", password="correct horse")
    with store._engine.connect() as c:  # only an argon2id hash is stored
        stored = c.execute(text("SELECT password_hash FROM users WHERE name = 'alice'")).scalar_one()
    assert stored.startswith("$argon2id$") and "correct horse" not in stored
    assert store.check_password("alice", "correct horse") == u
    assert store.check_password("alice", "wrong horse") is None
    assert store.check_password("nobody", "correct horse") is None
    store.add_user("keyonly", "clinician")  # a user without a password cannot sign in
    assert store.check_password("keyonly", "") is None
    store.set_password("alice", "battery staple")
    assert store.check_password("alice", "correct horse") is None
    assert store.check_password("alice", "battery staple") == u
    store.disable_user("alice")
    assert store.check_password("alice", "battery staple") is None


def test_api_key_format():
    key_id, full = auth.new_api_key()
    assert full.startswith(f"msk_{key_id}_") and len(key_id) == 16
    assert auth.parse_api_key(full) == (key_id, full.split("_", 2)[2])
    bad_keys = ("", "msk_", f"msk_{key_id}", "Bearer " + full, full + "x", full.replace("msk", "msx"))
    for bad in (*bad_keys, None, 5):
        assert auth.parse_api_key(bad) is None
    assert auth.new_api_key()[1] != full


def test_keys_create_verify_revoke(store):
    alice = store.add_user("alice", "clinician")
    store.add_user("bob", "admin")
    info, full = store.create_key("alice")
    assert (info.user, info.role, info.revoked, info.last_used) == ("alice", "clinician", None, None)
    assert info.created.tzinfo is not None
    with store._engine.connect() as c:  # the secret is not stored, only its hash
        row = c.execute(text("SELECT secret_hash FROM api_keys")).scalar_one()
    assert full.split("_", 2)[2] not in row and row.startswith("$argon2id$")

    assert store.user_for_key(full) == alice
    assert store.user_for_key(full) == alice  # cached: no second argon2 run
    assert store.list_keys("alice")[0].last_used is not None
    wrong = full[:-4] + ("AAAA" if not full.endswith("AAAA") else "BBBB")
    assert store.user_for_key(wrong) is None
    assert store.user_for_key("msk_0000000000000000_" + "A" * 43) is None
    assert store.user_for_key("garbage") is None

    info2, full2 = store.create_key("bob")
    assert [k.key_id for k in store.list_keys()] == [info.key_id, info2.key_id]
    assert [k.key_id for k in store.list_keys("bob")] == [info2.key_id]

    # revoked by another process (this one's cache still holds the key): refused at once
    with store._write.begin() as c:
        c.execute(text("UPDATE api_keys SET revoked = :t WHERE key_id = :k"),
                  {"t": datetime.now(UTC), "k": info.key_id})
    assert store.user_for_key(full) is None
    assert store.user_for_key(full2) is not None
    store.revoke_key(info2.key_id)
    assert store.user_for_key(full2) is None
    first = store.list_keys("bob")[0].revoked
    store.revoke_key(info2.key_id)  # twice: the first time is kept
    assert store.list_keys("bob")[0].revoked == first
    with pytest.raises(InvalidConfig, match="no API key"):
        store.revoke_key("0123456789abcdef")


def test_disabled_user_key_refused_and_no_new_keys(store):
    store.add_user("carol", "reviewer")
    _, full = store.create_key("carol")
    assert store.user_for_key(full).name == "carol"
    store.disable_user("carol")
    assert store.user_for_key(full) is None
    with pytest.raises(InvalidConfig, match="disabled"):
        store.create_key("carol")
    with pytest.raises(InvalidConfig, match="no user"):
        store.create_key("nobody")


def test_sessions_expire_and_end(store):
    u = store.add_user("alice", "clinician")
    token, csrf = store.create_session(u)
    assert store.session_user(token) == (u, csrf)
    assert store.session_user(token + "x") is None
    assert store.session_user("") is None
    with store._engine.connect() as c:  # only the token's sha256 is stored
        assert c.execute(text("SELECT token_sha256 FROM sessions")).scalar_one() == auth.token_digest(token)
    store.end_session(token)
    assert store.session_user(token) is None

    short, _ = store.create_session(u, ttl_s=1)
    assert store.session_user(short) is not None
    time.sleep(1.1)
    assert store.session_user(short) is None

    live, _ = store.create_session(u)
    store.disable_user("alice")
    assert store.session_user(live) is None


def test_unreachable_database_is_a_clear_error(tmp_path):
    with pytest.raises(MedsightError, match="cannot open the database"):
        Store.open(tmp_path, f"postgresql+psycopg://nobody@/nodb?host={tmp_path}")
    with pytest.raises(InvalidConfig, match="unsupported database"):
        Store.open(tmp_path, "mysql://u@h/db")
    with pytest.raises(InvalidConfig, match="in-memory"):
        Store.open(tmp_path, "sqlite://")


def test_default_url_is_sqlite_in_data_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("MEDSIGHT_DATABASE_URL", raising=False)
    with Store.open(tmp_path / "d") as s:
        assert s.url_for_display == f"sqlite:///{(tmp_path / 'd' / 'medsight.db').resolve()}"
        with s._engine.connect() as c:
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert c.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        s.audit({"action": "GET /v1/models"})
        files = sorted(f.name for f in (tmp_path / "d").iterdir())
        assert files == ["medsight.db", "medsight.db-shm", "medsight.db-wal"]
        for f in (tmp_path / "d").iterdir():  # the database and its WAL: the service's user only
            assert stat.S_IMODE(f.stat().st_mode) & 0o077 == 0, f
    assert stat.S_IMODE((tmp_path / "d").stat().st_mode) == 0o700
    monkeypatch.setenv("MEDSIGHT_DATABASE_URL", f"sqlite:///{tmp_path / 'env.db'}")
    with Store.open(tmp_path / "d") as s:
        assert s.url_for_display.endswith("env.db")


HOSTILE = ["a\x00b", "\ud800", "x" * 5000, "Ω'; DROP TABLE users; --"]


def test_hostile_text_from_requests_never_fails_a_query(store):
    """NUL (PostgreSQL refuses it), lone surrogates (not UTF-8), long and quoted strings: lookups find
    nothing, audit entries and notes are stored (NUL / surrogates replaced) and the chain verifies."""
    alice = store.add_user("alice", "reviewer", password="long enough")
    for bad in HOSTILE:
        assert store.check_password(bad, bad) is None
        assert store.check_password("alice", bad) is None
        assert store.get_user(bad) is None
        assert store.user_for_key(bad) is None
        assert store.session_user(bad) is None
        store.end_session(bad)
        assert store.find_image(bad) is None
        assert store.get_prediction(bad) is None
        assert store.add_review(bad, alice, "agree", bad) is None
        assert store.list_predictions(pseudonym=bad, model=bad, label=bad) == ([], 0)
        with pytest.raises(InvalidConfig):
            store.revoke_key(bad)
        with pytest.raises(InvalidConfig):
            store.disable_user(bad)
        with pytest.raises(InvalidConfig):
            store.add_user(bad, "clinician")
        store.audit({"user": bad, "action": f"POST /v1/session {bad}", "status": 401, "target": bad,
                     "detail": bad})
    report = store.verify_audit()
    assert report.ok and report.entries == len(HOSTILE), report
    with store._engine.connect() as c:
        users = c.execute(text("SELECT user_name FROM audit_log ORDER BY seq")).scalars().all()
    assert users[0] == "a\ufffdb" and users[1] == "?" and users[3] == HOSTILE[3]


def test_forged_secrets_for_a_known_key_id_are_throttled(store, monkeypatch):
    from medsight.serve.db import store as store_module

    monkeypatch.setattr(store_module, "KEY_FAILURES", 3)
    store.add_user("alice", "clinician")
    info, full = store.create_key("alice")
    assert store.user_for_key(full) is not None  # verified once: cached from now on
    calls = []
    real = auth.verify_secret
    monkeypatch.setattr(auth, "verify_secret", lambda h, v: calls.append(v) or real(h, v))
    forged = [f"msk_{info.key_id}_{auth.new_token()}" for _ in range(5)]
    assert all(store.user_for_key(f) is None for f in forged)
    assert len(calls) == 3  # the 4th and 5th forgeries cost no argon2 run
    assert store.user_for_key(full).name == "alice"  # the real, cached key keeps working


def test_wrong_secrets_are_counted_once_over_the_replicas(postgres_server, tmp_path, monkeypatch):
    """Two stores on one PostgreSQL database (two replicas): forgeries spread over both share one
    allowance, so N replicas do not allow N times the argon2 checks."""
    from medsight.serve.db import store as store_module

    monkeypatch.setattr(store_module, "KEY_FAILURES", 4)
    url = postgres_server.create_database()
    a, b = Store.open(tmp_path / "a", url), Store.open(tmp_path / "b", url)
    try:
        a.add_user("alice", "clinician")
        info, full = a.create_key("alice")
        calls = []
        real = auth.verify_secret
        monkeypatch.setattr(auth, "verify_secret", lambda h, v: calls.append(v) or real(h, v))
        for k in range(8):
            assert (a if k % 2 else b).user_for_key(f"msk_{info.key_id}_{auth.new_token()}") is None
        assert len(calls) == 4  # 2 on each replica, then refused unverified on both
        assert b.prune_rate_buckets(0.0) == 0  # the count outlives a prune of idle buckets
        assert a.user_for_key(f"msk_{info.key_id}_{auth.new_token()}") is None and len(calls) == 4
    finally:
        a.close()
        b.close()
