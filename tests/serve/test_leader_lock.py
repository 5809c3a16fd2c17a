"""`LeaderLock` on a real PostgreSQL server: one holder among several stores of one database,
taken over when the holder releases it or its session dies (its backend terminated, as when a
replica's host is lost), kept by a holder whose connection answers; none on SQLite."""

from __future__ import annotations

import pytest
from serve import postgres
from sqlalchemy import text

from medsight.serve.db import Store

postgres_server = postgres.postgres_server


@pytest.fixture
def three(postgres_server, tmp_path):
    """Three stores on one fresh PostgreSQL database (three replicas)."""
    url = postgres_server.create_database()
    stores = [Store.open(tmp_path / f"r{i}", url) for i in range(3)]
    yield stores
    for s in stores:
        s.close()


def _holder_pid(store: Store, key: int) -> int:
    """The backend holding the advisory lock `key` in this database."""
    with store._engine.connect() as c:
        return c.execute(text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = "
            "(SELECT oid FROM pg_database WHERE datname = current_database()) AND "
            "((classid::bigint << 32) | objid::bigint) = :k"),
            {"k": key}).scalar_one()


def test_one_holder_at_a_time_and_a_takeover_when_it_releases(three):
    a, b, c = (s.leader_lock("pacs-watch orthanc") for s in three)
    assert [a.held(), b.held(), c.held()] == [True, False, False]
    assert a.held() and not b.held()  # kept while its connection answers
    a.release()
    assert [b.held(), a.held(), c.held()] == [True, False, False]
    other = three[0].leader_lock("pacs-watch another")  # another duty: a lock of its own
    assert other.key != a.key and other.held()
    other.release()
    b.release()


def test_a_holder_whose_session_dies_loses_the_lock_to_the_next(three):
    a, b, _ = (s.leader_lock("pacs-watch orthanc") for s in three)
    assert a.held() and not b.held()
    pid = _holder_pid(three[2], a.key)
    with three[2]._engine.connect() as c:  # the server ends the holder's session
        assert c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar_one()
    assert b.held()  # freed with the session
    assert not a.held()  # a finds its connection gone, and the lock taken
    assert _holder_pid(three[2], b.key) != pid
    b.release()


def test_sqlite_has_no_leader_lock(tmp_path):
    with Store.open(tmp_path) as store:
        assert store.leader_lock("pacs-watch orthanc") is None
