"""SQLAlchemy 2.0 typed models: users, blogs, tags and the blog-tag link table.

Ids are UUIDv7 strings (36 characters, time-ordered), so ordering by id is insertion order and
InnoDB's clustered index grows at its end; the original's uuid1 leaked the host's MAC address.
Relationships are `lazy="raise"`: every query says what it loads, so no N+1 and no implicit I/O
under asyncio. Times are stored as naive UTC (DATETIME(6) on MySQL) and come back as aware UTC datetimes.
"""

from __future__ import annotations

import unicodedata
from datetime import UTC, datetime
from typing import Any

import uuid6
from sqlalchemy import (
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Table,
    Text,
    TypeDecorator,
)
from sqlalchemy.dialects import mysql
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship, validates
from sqlalchemy.types import TypeEngine

ID_LENGTH = 36
USER_NAME_MAX = 64
NAME_KEY_MAX = 255  # room for NFKC + case folding, which can lengthen a name
TAG_NAME_MAX = 64
BLOG_TITLE_MAX = 120
BLOG_CONTEXT_MAX = 1_000_000  # characters; MEDIUMTEXT holds 16 MiB of utf8mb4
JOB_ID_MAX = 64  # the scheduler's job ids (app.job_definitions.JOB_ID_PATTERN)
WORKER_NAME_MAX = 255  # host:pid
PRINCIPAL_MAX = 64  # a user id, or "anonymous"
IDEMPOTENCY_KEY_MAX = 255  # as Stripe's keys

MYSQL_TABLE_OPTIONS: dict[str, Any] = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    # Binary collation: names compare the same way on MySQL as on SQLite ("Bob" != "bob").
    "mysql_collate": "utf8mb4_bin",
}

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def new_id() -> str:
    """A new 36-character, time-ordered UUIDv7 string."""
    return str(uuid6.uuid7())


def name_key(name: str) -> str:
    """The form of a user name that uniqueness and look-ups use: NFKC-normalised and case-folded,
    so "ROOT", "root" and the full-width "ｒｏｏｔ" are one name (Unicode TR 36, §2.4)."""
    return unicodedata.normalize("NFKC", name).casefold()


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Stores aware datetimes as naive UTC; loads them back as aware UTC."""

    impl = DateTime
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name in ("mysql", "mariadb"):
            return dialect.type_descriptor(mysql.DATETIME(fsp=6))
        return dialect.type_descriptor(DateTime())

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware datetime (UTC)")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


blog_tags = Table(
    "blog_tags",
    Base.metadata,
    Column(
        "blog_id", String(ID_LENGTH), ForeignKey("blogs.id", ondelete="CASCADE"), primary_key=True
    ),
    Column(
        "tag_id",
        String(ID_LENGTH),
        ForeignKey("tags.id", ondelete="CASCADE"),
        primary_key=True,
        index=True,
    ),
    **MYSQL_TABLE_OPTIONS,
)


class User(Base):
    __tablename__ = "users"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(USER_NAME_MAX), unique=True)
    # `name_key(name)`, kept by `_keep_name_key`: unique, so names are unique case-insensitively
    # on every backend (MySQL's binary collation and SQLite alike).
    name_key: Mapped[str] = mapped_column(String(NAME_KEY_MAX), unique=True)
    # `names.skeleton(name)`, kept with it: unique, so no two names look alike (UTS #39).
    name_skeleton: Mapped[str] = mapped_column(String(NAME_KEY_MAX), unique=True)
    role: Mapped[int] = mapped_column(SmallInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Argon2id PHC string; None for accounts that cannot log in (the original had no passwords).
    password_hash: Mapped[str | None] = mapped_column(String(255), default=None)
    # Written by the database presence backend, at most once a minute per user.
    last_seen: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None, index=True)
    # The representation's version (ETag, app.api.conditional): raised by every ORM update of
    # the row (SQLAlchemy's version counter, so two writers of one version cannot both win);
    # not by presence's `last_seen`, which the representation does not show.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    @validates("name")
    def _keep_name_key(self, _key: str, value: str) -> str:
        from app.names import skeleton

        self.name_key = name_key(value)
        self.name_skeleton = skeleton(value)
        return value

    blogs: Mapped[list[Blog]] = relationship(
        back_populates="owner",
        order_by="Blog.id",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class Tag(Base):
    __tablename__ = "tags"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(TAG_NAME_MAX))
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    blogs: Mapped[list[Blog]] = relationship(
        secondary=blog_tags,
        back_populates="tags",
        order_by="Blog.id",
        lazy="raise",
        passive_deletes=True,
    )


class Blog(Base):
    __tablename__ = "blogs"
    __table_args__ = MYSQL_TABLE_OPTIONS

    id: Mapped[str] = mapped_column(String(ID_LENGTH), primary_key=True, default=new_id)
    title: Mapped[str] = mapped_column(String(BLOG_TITLE_MAX))
    # "context" is the original's field name for the body text; kept for its clients.
    context: Mapped[str] = mapped_column(
        Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb")  # TEXT holds only 64 KiB
    )
    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    create_time: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    modify_time: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    # Raised by the blog's own updates, and by its owner's or a tag's change of what the blog
    # shows of them (app.services.versions): a blog's ETag needs no read of its children.
    version: Mapped[int] = mapped_column(Integer, default=1, server_default="1")

    __mapper_args__ = {"version_id_col": version}

    owner: Mapped[User] = relationship(back_populates="blogs", lazy="raise")
    tags: Mapped[list[Tag]] = relationship(
        secondary=blog_tags,
        back_populates="blogs",
        order_by="Tag.id",
        lazy="raise",
        passive_deletes=True,
    )


TOKEN_KIND_BEARER = "bearer"  # noqa: S105 (a kind, not a secret)
TOKEN_KIND_SESSION = "session"  # noqa: S105


class ApiToken(Base):
    """A credential: an API bearer token or a browser login session (`kind`). Only the secret's
    SHA-256 is stored, so a leaked table reveals no credential; deleting the row revokes it for
    every worker at once."""

    __tablename__ = "api_tokens"
    __table_args__ = MYSQL_TABLE_OPTIONS

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(
        String(16), default=TOKEN_KIND_BEARER, server_default=TOKEN_KIND_BEARER
    )
    user_id: Mapped[str] = mapped_column(
        String(ID_LENGTH), ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)


class OnlineSnapshot(Base):
    """The number of users online, taken once a minute by the scheduler's built-in job."""

    __tablename__ = "online_snapshots"
    __table_args__ = MYSQL_TABLE_OPTIONS

    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True)
    online_count: Mapped[int] = mapped_column(Integer)


class ScheduledRun(Base):
    """A scheduled run that a worker claimed before running it (app.scheduler.fencing): its
    identity, (job id, scheduled time), is the primary key, so two workers that both believe
    they lead (a lease lost in a Redis failover) cannot both run one tick."""

    __tablename__ = "scheduler_runs"
    __table_args__ = MYSQL_TABLE_OPTIONS

    job_id: Mapped[str] = mapped_column(String(JOB_ID_MAX), primary_key=True)
    run_time: Mapped[datetime] = mapped_column(UTCDateTime, primary_key=True, index=True)
    worker: Mapped[str] = mapped_column(String(WORKER_NAME_MAX))
    claimed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class IdempotencyRecord(Base):
    """A write sent with an `Idempotency-Key` (app.idempotency): claimed before it runs
    (`lock_token`, `locked_until`), then completed with its answer in the write's own
    transaction, so a committed write always has its stored answer and a retry replays it."""

    __tablename__ = "idempotency_records"
    __table_args__ = MYSQL_TABLE_OPTIONS

    principal: Mapped[str] = mapped_column(String(PRINCIPAL_MAX), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(IDEMPOTENCY_KEY_MAX), primary_key=True)
    # SHA-256 (hex) of the method, the path and the body: a reuse with another request is a 422.
    fingerprint: Mapped[str] = mapped_column(String(64))
    # Set while the first request runs; None once the answer is stored.
    lock_token: Mapped[str | None] = mapped_column(String(32), default=None)
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime, default=None)
    status_code: Mapped[int | None] = mapped_column(SmallInteger, default=None)
    response_headers: Mapped[str | None] = mapped_column(Text, default=None)  # JSON pairs
    # UTF-8 text: every answer stored is JSON (aiomysql cannot bind bytes with this PyMySQL).
    response_body: Mapped[str | None] = mapped_column(
        Text().with_variant(mysql.MEDIUMTEXT(), "mysql", "mariadb"), default=None
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime, index=True)
