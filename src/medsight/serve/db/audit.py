"""The audit chain: each entry's hash covers the previous entry's hash and its own fields.

hash = sha256(prev_hash + canonical JSON of {seq, ts, user, action, status, target, model_version,
detail}), the first entry chained to 64 zeros. Editing a field, deleting or reordering entries, or
inserting one breaks the chain at that entry. Appends are serialised (a lock in the Store, plus the
database's own write lock) so the chain never forks. Truncating the newest entries leaves a valid
shorter chain: keep the reported head hash elsewhere to detect that.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from medsight.errors import InvalidConfig
from medsight.serve.db.tables import AuditEntry, storable

__all__ = ["GENESIS", "AuditReport", "append_entries", "canonical", "entry_hash", "verify_chain"]

GENESIS = "0" * 64
FIELDS = ("ts", "user", "action", "status", "target", "model_version", "detail")
# pg_advisory_xact_lock key that serialises appends across processes ("medsight" in ASCII).
PG_LOCK_KEY = 0x6D65647369676874


@dataclass(frozen=True)
class AuditReport:
    """What `verify_audit` found: ok, how many entries, the first bad one's seq and why, the head."""

    ok: bool
    entries: int
    first_bad: int | None = None
    reason: str | None = None
    head: str | None = None  # hash of the newest entry: record it elsewhere to detect truncation


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def canonical(seq: int, fields: dict) -> str:
    """The canonical JSON (sorted keys, no spaces, ASCII) of one entry's hashed fields."""
    doc = {"seq": seq, **{k: fields.get(k) for k in FIELDS}}
    doc["ts"] = _utc(doc["ts"]).isoformat(timespec="microseconds")
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


def entry_hash(prev_hash: str, seq: int, fields: dict) -> str:
    """sha256 hex of prev_hash + the canonical JSON of the entry."""
    return hashlib.sha256((prev_hash + canonical(seq, fields)).encode("ascii")).hexdigest()


def normalise(entry: dict) -> dict:
    """The entry checked and completed (ts defaults to now, UTC; action required)."""
    unknown = set(entry) - set(FIELDS)
    if unknown:
        raise InvalidConfig(f"unknown audit entry keys {sorted(unknown)}; allowed: {list(FIELDS)}")
    if not entry.get("action"):
        raise InvalidConfig("an audit entry needs an action (e.g. 'POST /v1/predictions')")
    out = {k: entry.get(k) for k in FIELDS}
    out["ts"] = _utc(out["ts"] or datetime.now(UTC))
    if out["status"] is not None:
        out["status"] = int(out["status"])
    for k in ("user", "action", "target", "model_version", "detail"):
        if out[k] is not None:
            out[k] = storable(str(out[k]))
    return out


def _row_fields(row: AuditEntry) -> dict:
    return {"ts": row.ts, "user": row.user_name, "action": row.action, "status": row.status,
            "target": row.target, "model_version": row.model_version, "detail": row.detail}


def append_entries(session: Session, entries: Iterable[dict]) -> None:
    """Append entries to the chain inside the caller's write transaction (which holds the lock)."""
    entries = [normalise(e) for e in entries]
    if not entries:
        return
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
    last = session.execute(
        select(AuditEntry.seq, AuditEntry.hash).order_by(AuditEntry.seq.desc()).limit(1)
    ).first()
    seq, prev = (last[0], last[1]) if last else (0, GENESIS)
    for fields in entries:
        seq += 1
        digest = entry_hash(prev, seq, fields)
        session.add(AuditEntry(seq=seq, ts=fields["ts"], user_name=fields["user"], action=fields["action"],
                               status=fields["status"], target=fields["target"],
                               model_version=fields["model_version"], detail=fields["detail"],
                               prev_hash=prev, hash=digest))
        prev = digest
    session.flush()


def verify_chain(session: Session, chunk: int = 1000) -> AuditReport:
    """Walk the whole chain in seq order, recomputing every hash; stop at the first bad entry."""
    total = session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()
    prev, expected, count = GENESIS, 1, 0
    for row in session.execute(select(AuditEntry).order_by(AuditEntry.seq).execution_options(
            yield_per=chunk)).scalars():
        count += 1
        if row.seq != expected:
            return AuditReport(False, total, expected,
                               f"entry {expected} is missing (deleted): the next stored entry is {row.seq}")
        if row.prev_hash != prev:
            return AuditReport(False, total, row.seq,
                               f"entry {row.seq} does not chain to entry {row.seq - 1} "
                               "(an entry before it was deleted, reordered or replaced)")
        if entry_hash(prev, row.seq, _row_fields(row)) != row.hash:
            return AuditReport(False, total, row.seq,
                               f"entry {row.seq} was edited: its fields no longer match its hash")
        prev, expected = row.hash, expected + 1
    return AuditReport(True, count, head=prev if count else None)
