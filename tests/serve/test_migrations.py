"""Alembic migrations on SQLite and PostgreSQL: from empty to head (matching the ORM tables), from
revision 0001 holding data to head with the data kept, down and up again, and concurrent starts."""

from __future__ import annotations

import threading
from datetime import UTC, date, datetime

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from serve import postgres
from sqlalchemy import insert, inspect

from medsight.serve import auth
from medsight.serve.db import Store, migrate
from medsight.serve.db.audit import GENESIS, entry_hash
from medsight.serve.db.engine import make_engine, resolve_url
from medsight.serve.db.tables import ApiKey, AuditEntry, Base, ImageRow, PredictionRow, UserRow

postgres_server, db_url = postgres.postgres_server, postgres.db_url

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)


def test_shipped_revisions():
    assert migrate.head_revision() == "0006"
    names = sorted(p.name for p in (migrate.MIGRATIONS / "versions").glob("*.py"))
    assert names == ["0001_initial.py", "0002_reviews.py", "0003_licences.py",
                     "0004_detections.py", "0005_pacs.py", "0006_rate_buckets.py"]
    assert (migrate.MIGRATIONS / "env.py").exists() and (migrate.MIGRATIONS / "script.py.mako").exists()


def test_from_empty_to_head_matches_the_tables(db_url, tmp_path):
    engine = make_engine(resolve_url(tmp_path, db_url))
    try:
        assert migrate.current_revision(engine) is None
        with Store.open(tmp_path, db_url) as store:
            store.ping()
        assert migrate.current_revision(engine) == migrate.head_revision()
        assert set(inspect(engine).get_table_names()) == {*Base.metadata.tables, "alembic_version"}
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}),
                                     Base.metadata)
        assert diffs == []
        with Store.open(tmp_path, db_url):  # reopening an up-to-date database changes nothing
            pass
        assert migrate.current_revision(engine) == "0006"
    finally:
        engine.dispose()


def test_from_0001_with_data_to_head_keeps_it(db_url, tmp_path):
    engine = make_engine(resolve_url(tmp_path, db_url))
    migrate.upgrade(engine, "0001")
    assert "reviews" not in inspect(engine).get_table_names()
    key_id, full = auth.new_api_key()
    sha = "ab" * 32
    fields = {"ts": T0, "user": "alice", "action": "POST /v1/predictions", "status": 201, "target": "p1",
              "model_version": "1.0.0", "detail": None}
    h1 = entry_hash(GENESIS, 1, fields)
    with engine.begin() as c:  # rows as revision 0001 stored them (no last_used column yet)
        uid = c.execute(insert(UserRow.__table__).values(
            name="alice", role="clinician", password_hash=None, disabled=False, created=T0
        )).inserted_primary_key[0]
        c.execute(insert(ApiKey.__table__).values(key_id=key_id, user_id=uid, created=T0, revoked=None,
                                                  secret_hash=auth.hash_secret(full.split("_", 2)[2])))
        img = c.execute(insert(ImageRow.__table__).values(
            sha256=sha, path="images/x.png", format="png", size_bytes=10, upload_hmac="cd" * 32,
            created=T0)).inserted_primary_key[0]
        c.execute(insert(PredictionRow.__table__).values(
            id="p1", user_id=uid, image_id=img, model_name="breast", model_version="1.0.0", model_uuid=None,
            label="benign", probabilities={"benign": 0.9, "malignant": 0.1}, confidence=0.9, threshold=0.5,
            warnings=[], timings={}, input={"modality": "US"}, patient_pseudonym="ANON-1",
            study_date=date(2018, 1, 2), created=T0))
        c.execute(insert(AuditEntry.__table__).values(
            seq=1, ts=T0, user_name="alice", action=fields["action"], status=201, target="p1",
            model_version="1.0.0", detail=None, prev_hash=GENESIS, hash=h1))
    engine.dispose()

    with Store.open(tmp_path, db_url) as store:  # upgrades 0001 -> head
        assert migrate.current_revision(store._engine) == "0006"
        alice = store.list_users()[0]
        assert (alice.name, alice.role) == ("alice", "clinician")
        [key] = store.list_keys()
        assert (key.key_id, key.last_used, key.created) == (key_id, None, T0)
        assert store.user_for_key(full) == alice
        got = store.get_prediction("p1")
        assert got["probabilities"] == {"benign": 0.9, "malignant": 0.1} and got["reviews"] == []
        assert got["study_date"] == date(2018, 1, 2) and got["image"]["sha256"] == sha
        report = store.verify_audit()
        assert report.ok and report.entries == 1 and report.head == h1
        reviewer = store.add_user("rita", "reviewer")
        assert store.add_review("p1", reviewer, "agree", "")["verdict"] == "agree"
        assert store.list_keys()[0].last_used is not None
        assert store.list_licences() == ([], 0)


def test_down_to_0001_and_up_again(db_url, tmp_path):
    with Store.open(tmp_path, db_url) as store:
        alice = store.add_user("alice", "admin")
        store.create_key("alice")
        migrate.downgrade(store._engine, "0001")
        assert migrate.current_revision(store._engine) == "0001"
        assert {"reviews", "licences", "rate_buckets"}.isdisjoint(inspect(store._engine).get_table_names())
        assert "last_used" not in {c["name"] for c in inspect(store._engine).get_columns("api_keys")}
    with Store.open(tmp_path, db_url) as store:
        assert store.list_users() == [alice] and len(store.list_keys()) == 1


def test_concurrent_first_starts_migrate_once(db_url, tmp_path):
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def open_store() -> None:
        try:
            start.wait()
            Store.open(tmp_path, db_url).close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_store) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = make_engine(resolve_url(tmp_path, db_url))
    assert migrate.current_revision(engine) == "0006"
    engine.dispose()
