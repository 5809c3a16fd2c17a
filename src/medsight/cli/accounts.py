"""`medsight users | keys | audit`: the service's accounts, API keys and audit-chain check.

Each command opens the service database (SQLite in --data-dir, or --database-url /
$MEDSIGHT_DATABASE_URL), migrating it to the current schema, exactly as `medsight serve` does.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from medsight.cli.app import app, console, err_console

if TYPE_CHECKING:
    from collections.abc import Iterator

    from medsight.serve.db import Store

users_app = typer.Typer(help="Service accounts (clinician, reviewer, admin): add, list, disable.",
                        no_args_is_help=True)
keys_app = typer.Typer(help="API keys for machines (Authorization: Bearer KEY): create, list, revoke.",
                       no_args_is_help=True)
audit_app = typer.Typer(help="The service's append-only audit log: verify its hash chain, show entries.",
                        no_args_is_help=True)
app.add_typer(users_app, name="users")
app.add_typer(keys_app, name="keys")
app.add_typer(audit_app, name="audit")

DataDir = Annotated[Path, typer.Option(
    "--data-dir", help="the service's data folder (as for `medsight serve`)")]
DatabaseUrl = Annotated[str | None, typer.Option(
    "--database-url", envvar="MEDSIGHT_DATABASE_URL", help="SQLAlchemy URL (default: SQLite in --data-dir)")]
Role = Annotated[str, typer.Option("--role", help="clinician | reviewer | admin")]
PasswordStdin = Annotated[bool, typer.Option(
    "--password-stdin", help="read the password from the first line of stdin instead of prompting")]


@contextmanager
def _store(data_dir: Path, database_url: str | None) -> Iterator[Store]:
    from medsight.serve.db import Store

    store = Store.open(data_dir, database_url)
    try:
        yield store
    finally:
        store.close()


def _password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        return line[:-1] if line.endswith("\n") else line
    return typer.prompt("Password", hide_input=True, confirmation_prompt=True)


def _when(ts) -> str:
    return ts.strftime("%Y-%m-%d %H:%M:%SZ") if ts is not None else "-"


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="user name (letters, digits, . _ @ -)")],
    role: Role,
    data_dir: DataDir,
    password_stdin: PasswordStdin = False,
    no_password: Annotated[bool, typer.Option(
        "--no-password", help="no password: the user can only use API keys")] = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Add a user; asks for the password twice (hidden) unless --password-stdin or --no-password."""
    password = None if no_password else _password(password_stdin)
    with _store(data_dir, database_url) as store:
        user = store.add_user(name, role, password)
    console.print(f"added {user.role} [bold]{user.name}[/]" + (" (API keys only)" if no_password else ""))


@users_app.command("list")
def users_list(data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """List every user with their role and status."""
    with _store(data_dir, database_url) as store:
        users = store.list_users()
    table = Table("name", "role", "status")
    for u in users:
        table.add_row(u.name, u.role, "disabled" if u.disabled else "active")
    console.print(table)


@users_app.command("disable")
def users_disable(
    name: Annotated[str, typer.Argument(help="user to disable")],
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
) -> None:
    """Disable a user: their password, sessions and API keys stop working at once."""
    with _store(data_dir, database_url) as store:
        store.disable_user(name)
    console.print(f"disabled [bold]{name}[/]")


@users_app.command("password")
def users_password(
    name: Annotated[str, typer.Argument(help="user whose password to set")],
    data_dir: DataDir,
    password_stdin: PasswordStdin = False,
    database_url: DatabaseUrl = None,
) -> None:
    """Set or replace a user's password (their browser sessions end)."""
    password = _password(password_stdin)
    with _store(data_dir, database_url) as store:
        store.set_password(name, password)
    console.print(f"password of [bold]{name}[/] set")


@keys_app.command("rotate-signing")
def keys_rotate_signing(data_dir: DataDir) -> None:
    """Start a new Ed25519 signing key; bundles signed with the old one still verify."""
    from medsight.serve.signing_keys import SigningKeys, public_key_text

    keys = SigningKeys(data_dir)
    key = keys.rotate()
    console.print(f"new signing key {keys.ring()[-1]['key_id']}; {len(keys.ring()) - 1} earlier "
                  "key(s) kept for verifying")
    console.print(public_key_text(key), highlight=False)


@keys_app.command("create")
def keys_create(
    user: Annotated[str, typer.Option("--user", help="the key's owner (created when missing)")],
    data_dir: DataDir,
    role: Annotated[str | None, typer.Option(
        "--role", help="clinician | reviewer | admin: the role of a user created here")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """Create an API key; it is printed once, alone on the last line, and stored only as a hash."""
    from medsight.errors import InvalidConfig

    with _store(data_dir, database_url) as store:
        existing = store.get_user(user)
        if existing is None:
            if role is None:
                raise InvalidConfig(f"no user named {user!r}: give --role to create them")
            store.add_user(user, role)
            err_console.print(f"added {role} {user} (API keys only)")
        elif role is not None and role != existing.role:
            raise InvalidConfig(f"user {user!r} exists with role {existing.role}, not {role}; "
                                "create the key without --role, or use another user")
        info, full_key = store.create_key(user)
    console.print(f"key {info.key_id} for {info.user} ({info.role}); store it now, it is not shown again:",
                  highlight=False)
    typer.echo(full_key)


@keys_app.command("list")
def keys_list(
    data_dir: DataDir,
    user: Annotated[str | None, typer.Option("--user", help="only this user's keys")] = None,
    database_url: DatabaseUrl = None,
) -> None:
    """List API keys (ids only; secrets are never stored), revoked ones included."""
    with _store(data_dir, database_url) as store:
        keys = store.list_keys(user)
    table = Table("key id", "user", "role", "created", "last used", "revoked")
    for k in keys:
        table.add_row(k.key_id, k.user, k.role, _when(k.created), _when(k.last_used), _when(k.revoked))
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="key id, as `medsight keys list` shows it")],
    data_dir: DataDir,
    database_url: DatabaseUrl = None,
) -> None:
    """Revoke an API key: refused from the next request on, also by a running service."""
    with _store(data_dir, database_url) as store:
        store.revoke_key(key_id)
    console.print(f"revoked {key_id}")


@audit_app.command("verify")
def audit_verify(data_dir: DataDir, database_url: DatabaseUrl = None) -> None:
    """Recompute the audit chain; exit 1 naming the first entry edited, deleted or reordered."""
    with _store(data_dir, database_url) as store:
        report = store.verify_audit()
    if not report.ok:
        console.print(f"[bold red]audit chain BROKEN[/] at entry {report.first_bad} "
                          f"(of {report.entries}): {report.reason}", highlight=False)
        raise typer.Exit(1)
    console.print(f"[green]OK[/] audit chain intact: {report.entries} entries", highlight=False)
    if report.head:
        console.print(f"head {report.head} (keep it elsewhere to detect removal of the newest entries)",
                      highlight=False)


@audit_app.command("show")
def audit_show(
    data_dir: DataDir,
    limit: Annotated[int, typer.Option("--limit", min=1, max=10_000, help="how many entries")] = 50,
    database_url: DatabaseUrl = None,
) -> None:
    """Print the newest audit entries (who, when, what, result, model version)."""
    with _store(data_dir, database_url) as store:
        entries = store.audit_entries(limit)
    table = Table("#", "when (UTC)", "user", "action", "status", "target", "model")
    for e in reversed(entries):
        table.add_row(str(e["seq"]), _when(e["ts"]), e["user"] or "-", e["action"],
                      "-" if e["status"] is None else str(e["status"]), e["target"] or "-",
                      e["model_version"] or "-")
    console.print(table, highlight=False)
