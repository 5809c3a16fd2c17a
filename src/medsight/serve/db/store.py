"""`Store`: the service's accounts, predictions, reviews, licences and audit chain over one engine.

Thread-safe: one Engine, a Session per call. Values go in and out as plain dicts and frozen
dataclasses, never ORM objects. Writes that append to the audit chain hold a lock in the Store and
the database's write lock, so the chain never forks; `add_predictions` commits images, predictions
and their audit entries in one transaction and returns only after the commit (as `add_licence`
and `revoke_licence` do for offline licences).
"""

from __future__ import annotations

import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from time import monotonic
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from medsight.errors import InvalidConfig, MedsightError
from medsight.serve import auth
from medsight.serve.db import migrate
from medsight.serve.db.audit import PG_LOCK_KEY, AuditReport, append_entries, verify_chain
from medsight.serve.db.engine import WRITE_OPTION, display_url, make_engine, resolve_url
from medsight.serve.db.leader_lock import LeaderLock
from medsight.serve.db.rate_buckets import peek_tokens, prune_idle, take_token
from medsight.serve.db.tables import (
    ApiKey,
    AuditEntry,
    ImageRow,
    LicenceRow,
    PredictionRow,
    ReviewRow,
    SessionRow,
    UserRow,
    queryable,
    storable,
)

__all__ = ["AuditReport", "KeyInfo", "Store", "User"]

log = logging.getLogger(__name__)

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}")
MIN_PASSWORD = 8
MAX_PASSWORD = 1024
MAX_NOTE = 10_000
MAX_PAGE = 1000
VERDICTS = ("agree", "disagree")
LAST_USED_EVERY = timedelta(seconds=60)  # last_used is written at most this often per key
_KEY_CACHE_SIZE = 10_000
# A key id seen with this many wrong secrets within KEY_FAILURE_WINDOW_S is refused without running
# argon2 until the window passes (keys already verified by this process keep working). On
# PostgreSQL the count is shared by the replicas: a token bucket of KEY_FAILURES refilled over the
# window, in `rate_buckets` (a wrong secret takes a token; none left: refused unverified).
KEY_FAILURES = 20
KEY_FAILURE_WINDOW_S = 60.0
_KEY_FAILURE_RATE = KEY_FAILURES / KEY_FAILURE_WINDOW_S
_KEY_FAILURE_BUCKET = "keyfail:"  # + key id: the shared wrong-secret count's rate bucket

_REQUIRED = ("id", "user_id", "model_name", "model_version", "label", "probabilities", "confidence",
             "created", "image")
_OPTIONAL = {"model_uuid": None, "threshold": None, "warnings": list, "timings": dict, "input": dict,
             "detections": None, "source": None, "patient_pseudonym": None, "study_date": None}
_IMAGE_REQUIRED = ("sha256", "path", "format", "size_bytes")


@dataclass(frozen=True)
class User:
    """A service account: clinician, reviewer or admin."""

    id: int
    name: str
    role: str
    disabled: bool


@dataclass(frozen=True)
class KeyInfo:
    """An API key as listed (its secret is never stored, only its argon2 hash)."""

    key_id: str
    user: str
    role: str
    created: datetime
    revoked: datetime | None
    last_used: datetime | None


def _now() -> datetime:
    return datetime.now(UTC)


def _user(row: UserRow) -> User:
    return User(id=row.id, name=row.name, role=row.role, disabled=bool(row.disabled))


def _key_info(row: ApiKey) -> KeyInfo:
    return KeyInfo(key_id=row.key_id, user=row.user.name, role=row.user.role, created=row.created,
                   revoked=row.revoked, last_used=row.last_used)


def _image_dict(row: ImageRow) -> dict[str, Any]:
    return {"sha256": row.sha256, "path": row.path, "format": row.format, "size_bytes": row.size_bytes,
            "upload_hmac": row.upload_hmac, "created": row.created}


def _review_dict(row: ReviewRow) -> dict[str, Any]:
    return {"id": row.id, "prediction_id": row.prediction_id, "reviewer": row.reviewer.name,
            "verdict": row.verdict, "note": row.note, "created": row.created}


def _prediction_dict(row: PredictionRow) -> dict[str, Any]:
    """A stored prediction; "detections" (a detector's boxes and counts) only when it has them,
    "source" (where a PACS image came from) only for images the PACS watcher fetched."""
    detections = {"detections": row.detections} if row.detections is not None else {}
    if row.source is not None:
        detections["source"] = row.source
    return {
        "id": row.id, "user_id": row.user_id, "user": row.user.name, "model_name": row.model_name,
        "model_version": row.model_version, "model_uuid": row.model_uuid, "label": row.label,
        "probabilities": row.probabilities, "confidence": row.confidence, "threshold": row.threshold,
        "warnings": row.warnings, "timings": row.timings, "input": row.input,
        "patient_pseudonym": row.patient_pseudonym, "study_date": row.study_date,
        "created": row.created,
        "image": _image_dict(row.image), "reviews": [_review_dict(r) for r in row.reviews],
        **detections,
    }


def _licence_dict(row: LicenceRow) -> dict[str, Any]:
    return {"licence_id": row.licence_id, "user_id": row.user_id, "user": row.user.name,
            "role": row.user.role, "bundle_uuid": row.bundle_uuid,
            "manifest_sha256": row.manifest_sha256, "model_name": row.model_name,
            "model_version": row.model_version, "machine": row.machine, "key_id": row.key_id,
            "issued": row.issued, "expires": row.expires, "renewed_from": row.renewed_from,
            "revoked": row.revoked, "revoked_by": row.revoked_by}


_LICENCE_KEYS = ("licence_id", "user_id", "bundle_uuid", "manifest_sha256", "model_name",
                 "model_version", "machine", "key_id", "issued", "expires", "renewed_from")


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name):
        raise InvalidConfig(f"invalid user name {name!r}: 1-64 characters, letters, digits and . _ @ -, "
                            "starting with a letter or digit")
    return name


def _check_role(role: str) -> str:
    if role not in auth.ROLES:
        raise InvalidConfig(f"unknown role {role!r}; choose one of {', '.join(auth.ROLES)}")
    return role


def _check_password(password: str) -> str:
    if not isinstance(password, str) or not MIN_PASSWORD <= len(password) <= MAX_PASSWORD:
        raise InvalidConfig(f"a password needs {MIN_PASSWORD} to {MAX_PASSWORD} characters")
    return password


def _check_record(rec: dict) -> None:
    missing = [k for k in _REQUIRED if k not in rec]
    unknown = set(rec) - set(_REQUIRED) - set(_OPTIONAL)
    if missing or unknown:
        raise InvalidConfig(f"prediction record {rec.get('id')!r}: missing keys {missing}, "
                            f"unknown keys {sorted(unknown)} (the table has no column for them)")
    for table, values in ((PredictionRow.__table__, rec), (ImageRow.__table__, rec["image"])):
        for col in table.columns:
            limit = getattr(col.type, "length", None)
            value = values.get(col.name)
            if limit and isinstance(value, str) and len(value) > limit:
                raise InvalidConfig(f"prediction record {rec['id']!r}: {col.name} is {len(value)} "
                                    f"characters long, more than the {limit} stored")
    image = rec["image"]
    missing = [k for k in _IMAGE_REQUIRED if k not in image]
    unknown = set(image) - set(_IMAGE_REQUIRED) - {"upload_hmac"}
    if missing or unknown:
        raise InvalidConfig(f"prediction record {rec['id']!r}: image is missing {missing}, "
                            f"has unknown keys {sorted(unknown)}")


class Store:
    """Accounts, predictions, reviews and the audit chain of one service database."""

    def __init__(self, engine, url_for_display: str):
        self._engine = engine
        self._write = engine.execution_options(**{WRITE_OPTION: True})
        self.url_for_display = url_for_display
        self._audit_lock = threading.Lock()
        self._key_cache: OrderedDict[str, tuple[str, int]] = OrderedDict()
        self._key_cache_lock = threading.Lock()
        self._dummy_hash: str | None = None
        self._key_failures: OrderedDict[str, list[float]] = OrderedDict()

    # -- lifecycle ---------------------------------------------------------------------------

    @classmethod
    def open(cls, data_dir: Path, url: str | None = None) -> Store:
        """Connect (url, $MEDSIGHT_DATABASE_URL or SQLite in data_dir) and migrate to the newest schema."""
        parsed = resolve_url(Path(data_dir), url)
        shown = display_url(parsed)
        engine = make_engine(parsed)
        try:
            migrate.upgrade(engine)
        except (SQLAlchemyError, OSError) as exc:
            engine.dispose()
            raise MedsightError(f"cannot open the database {shown}: {_reason(exc)}") from exc
        return cls(engine, shown)

    def ping(self) -> None:
        """Raise MedsightError when the database cannot be reached."""
        try:
            with self._engine.connect() as conn:
                conn.execute(text("SELECT 1"))
        except SQLAlchemyError as exc:
            raise MedsightError(f"database {self.url_for_display} unreachable: {_reason(exc)}") from exc

    def close(self) -> None:
        """Close every pooled connection."""
        self._engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url_for_display})"

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as s, s.begin():
            yield s

    @contextmanager
    def _tx(self, audited: bool = False) -> Iterator[Session]:
        """A write transaction; `audited` ones (they append to the chain) run one at a time: a lock
        here, and the database's (BEGIN IMMEDIATE on SQLite, an advisory lock on PostgreSQL)."""
        lock = self._audit_lock if audited else None
        if lock:
            lock.acquire()
        try:
            with Session(self._write, expire_on_commit=False) as s, s.begin():
                if audited and s.get_bind().dialect.name == "postgresql":
                    s.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": PG_LOCK_KEY})
                yield s
        finally:
            if lock:
                lock.release()

    # -- users -------------------------------------------------------------------------------

    def _user_row(self, s: Session, name: str) -> UserRow:
        q = queryable(name)
        row = None if q is None else s.execute(select(UserRow).where(UserRow.name == q)).scalar_one_or_none()
        if row is None:
            raise InvalidConfig(f"no user named {name!r} (see `medsight users list`)")
        return row

    def add_user(self, name: str, role: str, password: str | None = None) -> User:
        """Create a user; InvalidConfig for a taken name, a bad name or role, a short password."""
        _check_name(name)
        _check_role(role)
        pw_hash = auth.hash_secret(_check_password(password)) if password is not None else None
        try:
            with self._tx() as s:
                if s.execute(select(UserRow.id).where(UserRow.name == name)).first():
                    raise InvalidConfig(f"a user named {name!r} already exists")
                row = UserRow(name=name, role=role, password_hash=pw_hash, disabled=False, created=_now())
                s.add(row)
                s.flush()
                return _user(row)
        except IntegrityError as exc:
            if self.get_user(name) is not None:  # created by another process since the check
                raise InvalidConfig(f"a user named {name!r} already exists") from None
            raise MedsightError(f"user {name!r} not created: {_reason(exc)}") from exc

    def get_user(self, name: str) -> User | None:
        """The user called `name`, or None."""
        if queryable(name) is None:
            return None
        with self._read() as s:
            row = s.execute(select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
            return _user(row) if row else None

    def list_users(self) -> list[User]:
        """Every user, by name."""
        with self._read() as s:
            return [_user(r) for r in s.execute(select(UserRow).order_by(UserRow.name)).scalars()]

    def disable_user(self, name: str) -> None:
        """Disable a user: their password, keys and sessions stop working at once."""
        with self._tx() as s:
            row = self._user_row(s, name)
            row.disabled = True
            s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))

    def set_password(self, name: str, password: str) -> None:
        """Set (or replace) a user's password; their browser sessions end."""
        pw_hash = auth.hash_secret(_check_password(password))
        with self._tx() as s:
            row = self._user_row(s, name)
            row.password_hash = pw_hash
            s.execute(delete(SessionRow).where(SessionRow.user_id == row.id))

    def check_password(self, name: str, password: str) -> User | None:
        """The user when `password` is theirs and they are enabled; None otherwise (same cost either way)."""
        with self._read() as s:
            row = None if queryable(name) is None else s.execute(
                select(UserRow).where(UserRow.name == name)).scalar_one_or_none()
            stored = row.password_hash if row is not None else None
        if stored is None:
            if self._dummy_hash is None:
                self._dummy_hash = auth.hash_secret(auth.new_token())
            auth.verify_secret(self._dummy_hash, str(password))  # unknown names cost as wrong passwords do
            return None
        if not auth.verify_secret(stored, str(password)) or row.disabled:
            return None
        if auth.needs_rehash(stored):
            with self._tx() as s:
                s.execute(update(UserRow).where(UserRow.id == row.id, UserRow.password_hash == stored)
                          .values(password_hash=auth.hash_secret(password)))
        return _user(row)

    # -- API keys ----------------------------------------------------------------------------

    def create_key(self, user_name: str) -> tuple[KeyInfo, str]:
        """A new API key for an enabled user: (its info, the full key, shown this once only)."""
        key_id, full = auth.new_api_key()
        secret_hash = auth.hash_secret(auth.parse_api_key(full)[1])
        with self._tx() as s:
            user = self._user_row(s, user_name)
            if user.disabled:
                raise InvalidConfig(f"user {user_name!r} is disabled; a key for them would not work")
            row = ApiKey(key_id=key_id, user_id=user.id, secret_hash=secret_hash, created=_now())
            s.add(row)
            s.flush()
            row.user = user
            return _key_info(row), full

    def list_keys(self, user_name: str | None = None) -> list[KeyInfo]:
        """Every key (or one user's), oldest first, revoked ones included."""
        with self._read() as s:
            q = select(ApiKey).order_by(ApiKey.created, ApiKey.key_id)
            if user_name is not None:
                q = q.where(ApiKey.user_id == self._user_row(s, user_name).id)
            return [_key_info(r) for r in s.execute(q).scalars()]

    def revoke_key(self, key_id: str) -> None:
        """Revoke a key; it is refused from the next request on (revoking twice keeps the first time)."""
        with self._tx() as s:
            row = s.get(ApiKey, key_id) if queryable(key_id) else None
            if row is None:
                raise InvalidConfig(f"no API key {key_id!r} (see `medsight keys list`)")
            if row.revoked is None:
                row.revoked = _now()
        with self._key_cache_lock:
            for digest in [d for d, (k, _) in self._key_cache.items() if k == key_id]:
                del self._key_cache[digest]

    def user_for_key(self, full_key: str) -> User | None:
        """The enabled user owning this unrevoked key, or None.

        A verified key's sha256 is cached in memory, so argon2 runs once per key and process; the
        key's revocation and its user's status are still read from the database on every call.
        """
        parsed = auth.parse_api_key(full_key)
        if parsed is None:
            return None
        key_id, secret = parsed
        digest = auth.token_digest(full_key)
        with self._key_cache_lock:
            cached = self._key_cache.get(digest)
            if cached is not None:
                self._key_cache.move_to_end(digest)
        with self._read() as s:
            row = s.get(ApiKey, key_id)
            if row is None:
                return None
            if cached is None:
                if self._throttled(key_id):
                    return None
                if not auth.verify_secret(row.secret_hash, secret):
                    self._key_failed(key_id)
                    return None
                with self._key_cache_lock:
                    self._key_cache[digest] = (key_id, row.user_id)
                    while len(self._key_cache) > _KEY_CACHE_SIZE:
                        self._key_cache.popitem(last=False)
            elif cached != (key_id, row.user_id):
                return None
            if row.revoked is not None or row.user.disabled:
                return None
            user, last_used = _user(row.user), row.last_used
        now = _now()
        if last_used is None or now - last_used >= LAST_USED_EVERY:
            try:
                with self._tx() as s:
                    s.execute(update(ApiKey).where(ApiKey.key_id == key_id).values(last_used=now))
            except OperationalError as exc:  # bookkeeping only: never refuse a request for it
                log.warning("could not record last use of key %s: %s", key_id, _reason(exc))
        return user

    def _throttled(self, key_id: str) -> bool:
        if self.shared:
            try:
                with self._engine.begin() as conn:
                    left = peek_tokens(conn, _KEY_FAILURE_BUCKET + key_id, _KEY_FAILURE_RATE, KEY_FAILURES)
                return left < 1
            except SQLAlchemyError as exc:  # the process's own count still applies
                log.warning("shared wrong-secret count of key %s not read: %s", key_id,
                            _reason(exc))
        cutoff = monotonic() - KEY_FAILURE_WINDOW_S
        with self._key_cache_lock:
            times = [t for t in self._key_failures.get(key_id, ()) if t > cutoff]
            if times:
                self._key_failures[key_id] = times
            else:
                self._key_failures.pop(key_id, None)
            return len(times) >= KEY_FAILURES

    def _key_failed(self, key_id: str) -> None:
        if self.shared:
            try:
                if self.take_rate_token(_KEY_FAILURE_BUCKET + key_id, _KEY_FAILURE_RATE,
                                        KEY_FAILURES) > 0:
                    log.warning("API key %s: %d wrong secrets within %.0f s over the "
                                "replicas; refusing it unverified for now", key_id,
                                KEY_FAILURES, KEY_FAILURE_WINDOW_S)
            except SQLAlchemyError as exc:
                log.warning("shared wrong-secret count of key %s not updated: %s", key_id,
                            _reason(exc))
        with self._key_cache_lock:
            self._key_failures.setdefault(key_id, []).append(monotonic())
            self._key_failures.move_to_end(key_id)
            while len(self._key_failures) > _KEY_CACHE_SIZE:
                self._key_failures.popitem(last=False)
            if len(self._key_failures[key_id]) == KEY_FAILURES:
                log.warning("API key %s: %d wrong secrets within %.0f s; refusing it unverified for now",
                            key_id, KEY_FAILURES, KEY_FAILURE_WINDOW_S)

    # -- browser sessions --------------------------------------------------------------------

    def create_session(self, user: User, ttl_s: int = 12 * 3600) -> tuple[str, str]:
        """A new browser session: (token for the cookie, CSRF token); only sha256(token) is stored."""
        token, csrf = auth.new_token(), auth.new_token()
        now = _now()
        with self._tx() as s:
            s.execute(delete(SessionRow).where(SessionRow.expires <= now))
            s.add(SessionRow(token_sha256=auth.token_digest(token), user_id=user.id, csrf=csrf,
                             created=now, expires=now + timedelta(seconds=ttl_s)))
        return token, csrf

    def session_user(self, token: str) -> tuple[User, str] | None:
        """(user, csrf) of a live session of an enabled user, or None."""
        if not isinstance(token, str) or not 20 <= len(token) <= 100:
            return None
        with self._read() as s:
            row = s.get(SessionRow, auth.token_digest(token))
            if row is None or row.expires <= _now() or row.user.disabled:
                return None
            return _user(row.user), row.csrf

    def end_session(self, token: str) -> None:
        """Forget a session (sign out); unknown tokens are ignored."""
        with self._tx() as s:
            s.execute(delete(SessionRow).where(SessionRow.token_sha256 == auth.token_digest(str(token))))

    # -- predictions -------------------------------------------------------------------------

    def add_predictions(self, records: list[dict], audits: list[dict]) -> None:
        """Insert images (reusing a row with the same sha256), predictions and audit entries in ONE
        transaction; returns only after the commit."""
        for rec in records:
            _check_record(rec)
        try:
            with self._tx(audited=True) as s:
                images: dict[str, ImageRow] = {}
                for rec in records:
                    img = rec["image"]
                    row = images.get(img["sha256"])
                    if row is None:
                        row = s.execute(select(ImageRow).where(ImageRow.sha256 == img["sha256"])
                                        ).scalar_one_or_none()
                    if row is None:
                        row = ImageRow(sha256=img["sha256"], path=str(img["path"]), format=img["format"],
                                       size_bytes=int(img["size_bytes"]), upload_hmac=img.get("upload_hmac"),
                                       created=rec["created"])
                        s.add(row)
                        s.flush()
                    images[img["sha256"]] = row
                    opt = {k: (rec.get(k) if k in rec else (d() if callable(d) else d))
                           for k, d in _OPTIONAL.items()}
                    s.add(PredictionRow(
                        id=rec["id"], user_id=rec["user_id"], image_id=row.id, model_name=rec["model_name"],
                        model_version=rec["model_version"], label=rec["label"],
                        probabilities=rec["probabilities"], confidence=float(rec["confidence"]),
                        created=rec["created"], **opt))
                s.flush()
                append_entries(s, audits)
        except IntegrityError as exc:
            raise MedsightError(f"predictions not stored (nothing was): {_reason(exc)}") from exc

    def find_image(self, upload_hmac: str) -> dict | None:
        """The stored image of an earlier upload with the same HMAC, with "predictions": the first
        prediction made from it ([{id, user_id, model_name}], or []); None when never uploaded."""
        if queryable(upload_hmac) is None:
            return None
        with self._read() as s:
            row = s.execute(select(ImageRow).where(ImageRow.upload_hmac == upload_hmac)
                            .order_by(ImageRow.id).limit(1)).scalar_one_or_none()
            if row is None:
                return None
            preds = s.execute(select(PredictionRow.id, PredictionRow.user_id, PredictionRow.model_name)
                              .where(PredictionRow.image_id == row.id)
                              .order_by(PredictionRow.created, PredictionRow.id).limit(1)).all()
            return {**_image_dict(row),
                    "predictions": [{"id": p, "user_id": u, "model_name": m} for p, u, m in preds]}

    def get_prediction(self, pid: str) -> dict | None:
        """One prediction with its "image" and "reviews" (oldest first), or None."""
        if queryable(pid) is None:
            return None
        with self._read() as s:
            row = s.get(PredictionRow, pid)
            return _prediction_dict(row) if row else None

    def list_predictions(self, *, user_id: int | None = None, pseudonym: str | None = None,
                         date_from: date | None = None, date_to: date | None = None,
                         model: str | None = None, label: str | None = None,
                         source: str | None = None,
                         limit: int = 50, offset: int = 0) -> tuple[list[dict], int]:
        """A page of predictions, newest first, and how many match in all.

        `date_from` / `date_to` bound the day (UTC) the prediction was made, both inclusive;
        `source` "pacs" keeps the images the PACS watcher fetched, "upload" the others.
        """
        if source not in (None, "pacs", "upload"):
            raise InvalidConfig(f"source must be 'pacs' or 'upload', not {source!r}")
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidConfig(f"limit must be 1..{MAX_PAGE} and offset >= 0 (got {limit}, {offset})")
        if any(v is not None and queryable(v) is None for v in (pseudonym, model, label)):
            return [], 0  # text no stored value can hold matches nothing
        conds = []
        if user_id is not None:
            conds.append(PredictionRow.user_id == user_id)
        if pseudonym is not None:
            conds.append(PredictionRow.patient_pseudonym == pseudonym)
        if date_from is not None:
            conds.append(PredictionRow.created >= datetime.combine(date_from, time(), UTC))
        if date_to is not None:
            conds.append(PredictionRow.created < datetime.combine(date_to + timedelta(days=1), time(), UTC))
        if model is not None:
            conds.append(PredictionRow.model_name == model)
        if label is not None:
            conds.append(PredictionRow.label == label)
        if source is not None:  # an upload's source is SQL NULL or JSON null: no "kind" either way
            kind = PredictionRow.source["kind"].as_string()
            conds.append(kind == "pacs" if source == "pacs" else kind.is_(None))
        with self._read() as s:
            total = s.execute(select(func.count()).select_from(PredictionRow).where(*conds)).scalar_one()
            rows = s.execute(select(PredictionRow).where(*conds)
                             .order_by(PredictionRow.created.desc(), PredictionRow.id.desc())
                             .limit(limit).offset(offset)).scalars().all()
            return [_prediction_dict(r) for r in rows], total

    def add_review(self, pid: str, reviewer: User, verdict: str, note: str) -> dict | None:
        """Record a reviewer's verdict (agree / disagree + note); None when the prediction is unknown."""
        if verdict not in VERDICTS:
            raise InvalidConfig(f"verdict must be one of {', '.join(VERDICTS)}, not {verdict!r}")
        note = "" if note is None else storable(str(note))
        if len(note) > MAX_NOTE:
            raise InvalidConfig(f"a review note may hold at most {MAX_NOTE} characters")
        if queryable(pid) is None:
            return None
        with self._tx() as s:
            if s.get(PredictionRow, pid) is None:
                return None
            row = ReviewRow(prediction_id=pid, reviewer_id=reviewer.id, verdict=verdict, note=note,
                            created=_now())
            s.add(row)
            s.flush()
            row.reviewer = s.get(UserRow, reviewer.id)
            return _review_dict(row)

    # -- offline licences --------------------------------------------------------------------

    def add_licence(self, row: dict, audit: dict) -> dict:
        """Store an issued licence and its audit entry in ONE transaction; the stored licence."""
        missing = [k for k in _LICENCE_KEYS if k not in row]
        unknown = set(row) - set(_LICENCE_KEYS)
        if missing or unknown:
            raise InvalidConfig(f"licence {row.get('licence_id')!r}: missing keys {missing}, "
                                f"unknown keys {sorted(unknown)}")
        try:
            with self._tx(audited=True) as s:
                lic = LicenceRow(**row)
                s.add(lic)
                s.flush()
                append_entries(s, [audit])
                lic.user = s.get(UserRow, row["user_id"])
                return _licence_dict(lic)
        except IntegrityError as exc:
            raise MedsightError(f"licence not stored: {_reason(exc)}") from exc

    def get_licence(self, licence_id: str) -> dict | None:
        """One licence, or None."""
        if queryable(licence_id) is None:
            return None
        with self._read() as s:
            row = s.get(LicenceRow, licence_id)
            return _licence_dict(row) if row else None

    def list_licences(self, *, user: str | None = None, active: bool | None = None,
                      now: datetime | None = None, limit: int = 50, offset: int = 0
                      ) -> tuple[list[dict], int]:
        """A page of licences, newest first, and how many match in all. `active`: True for those
        neither revoked nor expired (at `now`), False for the others."""
        if not 1 <= limit <= MAX_PAGE or offset < 0:
            raise InvalidConfig(f"limit must be 1..{MAX_PAGE} and offset >= 0 (got {limit}, {offset})")
        if user is not None and queryable(user) is None:
            return [], 0
        now = now or _now()
        conds = []
        if user is not None:
            conds.append(LicenceRow.user_id.in_(select(UserRow.id).where(UserRow.name == user)))
        if active is True:
            conds += [LicenceRow.revoked.is_(None), LicenceRow.expires > now]
        elif active is False:
            conds.append(LicenceRow.revoked.is_not(None) | (LicenceRow.expires <= now))
        with self._read() as s:
            total = s.execute(select(func.count()).select_from(LicenceRow).where(*conds)).scalar_one()
            rows = s.execute(select(LicenceRow).where(*conds)
                             .order_by(LicenceRow.issued.desc(), LicenceRow.licence_id.desc())
                             .limit(limit).offset(offset)).scalars().all()
            return [_licence_dict(r) for r in rows], total

    def revoke_licence(self, licence_id: str, admin: User, audit: dict) -> dict | None:
        """Revoke a licence (revoking twice keeps the first time and admin) and append its audit
        entry in one transaction; None (nothing written) when the licence is unknown."""
        if queryable(licence_id) is None:
            return None
        with self._tx(audited=True) as s:
            row = s.get(LicenceRow, licence_id)
            if row is None:
                return None
            if row.revoked is None:
                row.revoked, row.revoked_by = _now(), admin.name
            s.flush()
            append_entries(s, [audit])
            return _licence_dict(row)

    # -- shared rate limits ------------------------------------------------------------------

    @property
    def shared(self) -> bool:
        """Whether other processes may use this database at once as peers (PostgreSQL): state
        such as rate limits must then live in it rather than in one process."""
        return self._engine.dialect.name == "postgresql"

    def leader_lock(self, name: str) -> LeaderLock | None:
        """The lock electing one process among those sharing this database (PostgreSQL) for the
        duty `name`; None on SQLite, where one process serves a data folder."""
        return LeaderLock(self._engine, name) if self.shared else None

    def take_rate_token(self, client: str, rate: float, burst: float) -> float:
        """Take a token from `client`'s bucket in the database (see `db.rate_buckets`): 0.0 when
        taken, else the seconds to wait. PostgreSQL only (`shared`)."""
        with self._engine.begin() as conn:
            return take_token(conn, client, rate, burst)

    def prune_rate_buckets(self, idle_s: float) -> int:
        """Forget the rate buckets untouched for `idle_s` seconds (a wrong-secret count: for at
        least its window), full again; how many."""
        with self._engine.begin() as conn:  # a wrong-secret bucket fills over its own window
            return prune_idle(conn, idle_s, _KEY_FAILURE_BUCKET, KEY_FAILURE_WINDOW_S)

    # -- audit -------------------------------------------------------------------------------

    def audit(self, entry: dict) -> None:
        """Append one entry (ts, user, action, status, target, model_version, detail) to the chain."""
        with self._tx(audited=True) as s:
            append_entries(s, [entry])

    def verify_audit(self) -> AuditReport:
        """Recompute the whole chain: ok, or the first entry that was edited, deleted or reordered."""
        with self._read() as s:
            return verify_chain(s)

    def audit_entries(self, limit: int = 50) -> list[dict]:
        """The newest `limit` audit entries, newest first (for `medsight audit show`)."""
        with self._read() as s:
            rows = s.execute(select(AuditEntry).order_by(AuditEntry.seq.desc()).limit(limit)).scalars()
            return [{"seq": r.seq, "ts": r.ts, "user": r.user_name, "action": r.action, "status": r.status,
                     "target": r.target, "model_version": r.model_version, "detail": r.detail,
                     "hash": r.hash} for r in rows]


def _reason(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None)
    return str(orig if orig is not None else exc).strip().splitlines()[0]
