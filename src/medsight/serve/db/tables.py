"""The service's tables as typed SQLAlchemy 2 ORM classes (the schema the migrations build).

Nothing here holds a patient-identifying value: images are referred to by their de-identified
file's sha256 and a keyed HMAC of the upload, patients by pseudonym, studies by a shifted date.
Timestamps are UTC, returned timezone-aware on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

__all__ = [
    "ApiKey",
    "AuditEntry",
    "Base",
    "ImageRow",
    "LicenceRow",
    "PacsInstanceRow",
    "PacsSeriesRow",
    "PredictionRow",
    "RateBucketRow",
    "ReviewRow",
    "SessionRow",
    "UTCDateTime",
    "UserRow",
    "queryable",
    "storable",
]

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def storable(value: str) -> str:
    """`value` as both databases can hold it: NUL (refused by PostgreSQL) and lone surrogates
    (not UTF-8) replaced, so text from a request can never make a write fail."""
    return value.replace("\x00", "\ufffd").encode("utf-8", "replace").decode("utf-8")


def queryable(value: object) -> str | None:
    """`value` when it can be sent in a query; None when it cannot match anything stored
    (not a string, or holding NUL or a lone surrogate)."""
    if not isinstance(value, str) or "\x00" in value:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return value


class UTCDateTime(TypeDecorator[datetime]):
    """A UTC instant: naive input is taken as UTC, output is always timezone-aware UTC."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class UserRow(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('clinician', 'reviewer', 'admin')", name="role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    disabled: Mapped[bool] = mapped_column(Boolean, default=False)
    created: Mapped[datetime] = mapped_column(UTCDateTime)


class ApiKey(Base):
    __tablename__ = "api_keys"

    key_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    secret_hash: Mapped[str] = mapped_column(String(255))
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[UserRow] = relationship(lazy="joined")


class SessionRow(Base):
    __tablename__ = "sessions"

    token_sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    expires: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[UserRow] = relationship(lazy="joined")


class ImageRow(Base):
    __tablename__ = "images"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(String(512))
    format: Mapped[str] = mapped_column(String(32))
    size_bytes: Mapped[int] = mapped_column(Integer)
    upload_hmac: Mapped[str | None] = mapped_column(String(64), index=True)
    created: Mapped[datetime] = mapped_column(UTCDateTime)


class PredictionRow(Base):
    __tablename__ = "predictions"
    __table_args__ = (Index("ix_predictions_user_id_created", "user_id", "created"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    image_id: Mapped[int] = mapped_column(ForeignKey("images.id"), index=True)
    model_name: Mapped[str] = mapped_column(String(256), index=True)
    model_version: Mapped[str] = mapped_column(String(128))
    model_uuid: Mapped[str | None] = mapped_column(String(64))
    label: Mapped[str] = mapped_column(String(256), index=True)
    probabilities: Mapped[dict[str, Any]] = mapped_column(JSON)
    confidence: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float | None] = mapped_column(Float)
    warnings: Mapped[list[Any]] = mapped_column(JSON)
    timings: Mapped[dict[str, Any]] = mapped_column(JSON)
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    detections: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)  # boxes, counts
    source: Mapped[dict[str, Any] | None] = mapped_column(  # PACS link; SQL NULL for an upload
        JSON(none_as_null=True), nullable=True)
    patient_pseudonym: Mapped[str | None] = mapped_column(String(128), index=True)
    study_date: Mapped[date | None] = mapped_column(Date)
    created: Mapped[datetime] = mapped_column(UTCDateTime, index=True)

    user: Mapped[UserRow] = relationship(lazy="joined")
    image: Mapped[ImageRow] = relationship(lazy="joined")
    reviews: Mapped[list[ReviewRow]] = relationship(
        lazy="selectin", order_by="ReviewRow.id", back_populates="prediction")


class ReviewRow(Base):
    __tablename__ = "reviews"
    __table_args__ = (CheckConstraint("verdict IN ('agree', 'disagree')", name="verdict"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    reviewer_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    verdict: Mapped[str] = mapped_column(String(16))
    note: Mapped[str] = mapped_column(Text)
    created: Mapped[datetime] = mapped_column(UTCDateTime)

    reviewer: Mapped[UserRow] = relationship(lazy="joined")
    prediction: Mapped[PredictionRow] = relationship(back_populates="reviews")


class LicenceRow(Base):
    """An offline licence issued to a clinician for one bundle version (the signed document itself
    is not kept: it is the answer); revoked licences cannot be renewed."""

    __tablename__ = "licences"

    licence_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    bundle_uuid: Mapped[str] = mapped_column(String(64))
    manifest_sha256: Mapped[str] = mapped_column(String(64))
    model_name: Mapped[str] = mapped_column(String(256))
    model_version: Mapped[str] = mapped_column(String(128))
    machine: Mapped[str | None] = mapped_column(String(64))
    key_id: Mapped[str] = mapped_column(String(64))
    issued: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    expires: Mapped[datetime] = mapped_column(UTCDateTime)
    renewed_from: Mapped[str | None] = mapped_column(ForeignKey("licences.licence_id"))
    revoked: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_by: Mapped[str | None] = mapped_column(String(64))

    user: Mapped[UserRow] = relationship(lazy="joined")


class AuditEntry(Base):
    """One audit record; `hash` = sha256(`prev_hash` + canonical JSON of the other fields)."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    ts: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
    user_name: Mapped[str | None] = mapped_column(Text)  # free text: a failed sign-in's claimed name too
    action: Mapped[str] = mapped_column(Text)
    status: Mapped[int | None] = mapped_column(Integer)
    target: Mapped[str | None] = mapped_column(Text)
    model_version: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[str | None] = mapped_column(Text)
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class PacsSeriesRow(Base):
    """The PACS watcher's job for one series and one model: run once (`done`), retried while
    `failed` has attempts left, `skipped` when the series matches no rule of the model;
    `results` lists the SOP instances written back ({"sop_class", "sop_instance"})."""

    __tablename__ = "pacs_series"
    __table_args__ = (
        CheckConstraint("status IN ('pending', 'running', 'done', 'failed', 'skipped')", name="status"),
        UniqueConstraint("pacs", "series_uid", "model_name"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    pacs: Mapped[str] = mapped_column(String(256))
    model_name: Mapped[str] = mapped_column(String(256))
    model_uuid: Mapped[str | None] = mapped_column(String(64))
    study_uid: Mapped[str] = mapped_column(String(64), index=True)
    series_uid: Mapped[str] = mapped_column(String(64))
    status: Mapped[str] = mapped_column(String(16), index=True)
    attempts: Mapped[int] = mapped_column(Integer)
    instances: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    results: Mapped[list[Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)


class PacsInstanceRow(Base):
    """One instance of a watched series that has been predicted: its result (the prediction's
    JSON form) and the service prediction it was stored as, so a restart does not run it again."""

    __tablename__ = "pacs_instances"
    __table_args__ = (UniqueConstraint("series_id", "sop_uid"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    series_id: Mapped[int] = mapped_column(ForeignKey("pacs_series.id"), index=True)
    sop_uid: Mapped[str] = mapped_column(String(64))
    prediction_id: Mapped[str | None] = mapped_column(ForeignKey("predictions.id"))
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created: Mapped[datetime] = mapped_column(UTCDateTime)


class RateBucketRow(Base):
    """One client's token bucket (`rate_limit.SharedRateLimiter`): the tokens left at `updated`,
    and whether the request that last updated it was `allowed`."""

    __tablename__ = "rate_buckets"

    client: Mapped[str] = mapped_column(String(128), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    updated: Mapped[datetime] = mapped_column(UTCDateTime)
    allowed: Mapped[bool] = mapped_column(Boolean)
