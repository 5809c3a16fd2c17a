"""`medsight users | keys | audit` through the Typer app, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from serve import postgres
from sqlalchemy import text
from typer.testing import CliRunner

import medsight.cli.accounts  # noqa: F401  (registers the groups; cli/__init__ imports it too)
from medsight.cli.app import app
from medsight.errors import InvalidConfig
from medsight.serve.db import Store

postgres_server, db_url = postgres.postgres_server, postgres.db_url


@pytest.fixture
def cli(db_url, tmp_path):
    """Run `medsight ARGS...` against this test's database; returns the click Result."""
    runner = CliRunner()

    def run(*args: str, input: str | None = None, ok: bool = True):
        res = runner.invoke(app, [*args, "--data-dir", str(tmp_path), "--database-url", db_url], input=input)
        if ok:
            assert res.exit_code == 0, (res.output, res.exception)
        return res

    return run


def test_users_add_list_disable(cli, db_url, tmp_path):
    cli("users", "add", "alice", "--role", "clinician", "--password-stdin", input="open sesame 1\n")
    cli("users", "add", "root", "--role", "admin", input="s3cret-pass\ns3cret-pass\n")  # prompted twice
    cli("users", "add", "bot", "--role", "reviewer", "--no-password")
    out = cli("users", "list").output
    assert "alice" in out and "clinician" in out and "bot" in out and "active" in out
    cli("users", "disable", "bot")
    assert "disabled" in cli("users", "list").output
    with Store.open(tmp_path, db_url) as store:
        assert store.check_password("alice", "open sesame 1").name == "alice"
        assert store.check_password("root", "s3cret-pass").role == "admin"
    bad = cli("users", "add", "alice", "--role", "admin", "--no-password", ok=False)
    assert isinstance(bad.exception, InvalidConfig) and "already exists" in str(bad.exception)
    cli("users", "password", "alice", "--password-stdin", input="new password!\n")
    with Store.open(tmp_path, db_url) as store:
        assert store.check_password("alice", "open sesame 1") is None
        assert store.check_password("alice", "new password!") is not None


def test_keys_create_prints_the_key_last_and_it_authenticates(cli, db_url, tmp_path):
    res = cli("keys", "create", "--user", "scanner", "--role", "clinician")
    key = res.stdout.strip().splitlines()[-1]
    assert key.startswith("msk_")
    with Store.open(tmp_path, db_url) as store:
        user = store.user_for_key(key)
        assert (user.name, user.role) == ("scanner", "clinician")
    second = cli("keys", "create", "--user", "scanner").stdout.strip().splitlines()[-1]  # user exists
    assert second != key
    clash = cli("keys", "create", "--user", "scanner", "--role", "admin", ok=False)
    assert isinstance(clash.exception, InvalidConfig) and "exists with role clinician" in str(clash.exception)

    key_id = key.split("_")[1]
    listed = cli("keys", "list").output
    assert key_id in listed and key not in listed
    cli("keys", "revoke", key_id)
    with Store.open(tmp_path, db_url) as store:
        assert store.user_for_key(key) is None
        assert store.user_for_key(second) is not None
        assert store.list_keys("scanner")[0].revoked is not None


def test_audit_verify_exits_1_after_tampering(cli, db_url, tmp_path):
    with Store.open(tmp_path, db_url) as store:
        for i in range(3):
            store.audit({"user": "alice", "action": "GET /v1/predictions", "status": 200, "target": f"p{i}"})
    res = cli("audit", "verify")
    assert "intact: 3 entries" in res.output
    shown = cli("audit", "show", "--limit", "2").output
    assert "p1" in shown and "p2" in shown and "p0" not in shown and "alice" in shown
    with Store.open(tmp_path, db_url) as store, store._write.begin() as c:
        c.execute(text("UPDATE audit_log SET status = 500 WHERE seq = 2"))
    res = cli("audit", "verify", ok=False)
    assert res.exit_code == 1 and "entry 2" in res.output and "edited" in res.output
