"""``sqlite:///path.db``: the embedded store for persistence, shared by every process of one host.

One SQLite file in WAL mode holds the ledger (calls, tasks, reviews) and the budgets (committed
spend, reservations, refused flags, grants, threshold events). Money is exact: budgets count integer
nano-dollars, the ledger keeps each ``Decimal`` as text (plus its nano-dollars, for SQL sums).

Concurrency: every write is one ``BEGIN IMMEDIATE`` transaction, so an admission's check and
reservation happen under SQLite's single write lock, atomically across threads and processes. Each
store object holds one connection per process, used under a lock by the threads of that process
(see :class:`SQLiteStore` for why); other processes wait for the write lock up to the busy timeout
(``?timeout=`` seconds in the URI, 5 by default).

URIs follow SQLAlchemy: ``sqlite:///relative/to/cwd.db`` (three slashes) and
``sqlite:////absolute/path.db`` (four). A relative path is resolved when the URI is parsed.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import sqlite3
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote

from ..budgets import Grant, to_nano
from ..errors import ConfigError, StoreError
from ..records import CallRecord, TaskRecord
from .base import (
    CALL_FIELDS,
    TASK_FIELDS,
    Admission,
    BudgetKey,
    CallQuery,
    CallTotals,
    Charge,
    Review,
    Standing,
    Store,
    TaskQuery,
    TaskTotals,
    group_key,
)

__all__ = ["SQLiteStore", "SQLiteStoreError"]

log = logging.getLogger("tokenguard")

T = TypeVar("T")

SCHEMA_VERSION = 3
APPLICATION_ID = 0x746B6775  # "tkgu": marks the file as tokenguard's
MIN_SQLITE = (3, 24, 0)  # UPSERT
DEFAULT_TIMEOUT_S = 5.0
PAGE = 500  # rows per query when iterating the ledger

_SQLITE_BUSY = 5
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)

# Forked children must not use (or close) a connection of their parent: SQLite forbids carrying a
# connection across fork(). Abandoned connections are kept here so they are never finalized.
_ABANDONED: list[sqlite3.Connection] = []
_STORES: weakref.WeakSet[SQLiteStore] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    """A child of os.fork(): new locks (another thread of the parent may have held one), no
    connections (each store opens its own on next use)."""
    for store in list(_STORES):
        store._lock = threading.Lock()
        store._reader_lock = threading.Lock()
        for conn in (store._conn, store._reader):
            if conn is not None:
                _ABANDONED.append(conn)
        store._conn = store._reader = None


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class SQLiteStoreError(sqlite3.DatabaseError, StoreError):
    """The SQLite store's file cannot be opened, read or written; the message says which file, what
    SQLite or the OS reported and what to do. A Guard applies its ``on_store_error`` policy."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL,
    time_us INTEGER NOT NULL,
    latency_s REAL NOT NULL,
    provider TEXT NOT NULL,
    operation TEXT NOT NULL,
    api TEXT NOT NULL,
    request_model TEXT NOT NULL,
    response_model TEXT,
    stream INTEGER NOT NULL,
    response_id TEXT,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cache_read_tokens INTEGER NOT NULL,
    cache_write_tokens INTEGER NOT NULL,
    reasoning_tokens INTEGER NOT NULL,
    usage_estimated INTEGER NOT NULL,
    cost_usd TEXT,
    cost_nano INTEGER,
    estimated_cost_usd TEXT,
    tags TEXT NOT NULL,
    task_id TEXT,
    task_name TEXT,
    status TEXT NOT NULL,
    error_type TEXT,
    decisions TEXT NOT NULL,
    routed_from TEXT,
    route_reason TEXT,
    chain_id TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    findings TEXT NOT NULL DEFAULT '{}',
    nudges TEXT NOT NULL DEFAULT '[]'
);
CREATE INDEX IF NOT EXISTS calls_time ON calls (time_us);
-- a task's calls in time order, also covering what reports read of them (cost, model, tokens)
CREATE INDEX IF NOT EXISTS calls_task
    ON calls (task_id, time_us, cost_usd, request_model, response_model, input_tokens, output_tokens)
    WHERE task_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS calls_request_model ON calls (request_model, time_us);
CREATE INDEX IF NOT EXISTS calls_response_model ON calls (response_model, time_us);

CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    tags TEXT NOT NULL,
    outcome TEXT NOT NULL,
    failure_reason TEXT,
    started_us INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    accepted INTEGER,
    edit_distance REAL,
    reviewer TEXT
);
CREATE INDEX IF NOT EXISTS tasks_started ON tasks (started_us);
CREATE INDEX IF NOT EXISTS tasks_name ON tasks (name, started_us);

CREATE TABLE IF NOT EXISTS reviews (
    task_id TEXT PRIMARY KEY,
    accepted INTEGER NOT NULL,
    edit_distance REAL,
    reviewer TEXT
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS spend (
    budget TEXT NOT NULL,
    win TEXT NOT NULL,
    spent_nano INTEGER NOT NULL DEFAULT 0,
    refused INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (budget, win)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS reservations (
    rid TEXT NOT NULL,
    budget TEXT NOT NULL,
    win TEXT NOT NULL,
    amount_nano INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    PRIMARY KEY (rid, budget, win)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS reservations_key ON reservations (budget, win, expires_us);

CREATE TABLE IF NOT EXISTS grants (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    budget TEXT NOT NULL,
    extra_usd TEXT NOT NULL,
    extra_nano INTEGER NOT NULL,
    approved_by TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    revoked INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS grants_budget ON grants (budget);

CREATE TABLE IF NOT EXISTS events (
    budget TEXT NOT NULL,
    win TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (budget, win, kind)
) WITHOUT ROWID;
"""

# Schema 1 -> 2 (routing, sensitive data, nudges): new columns of the calls table.
_MIGRATE_1_TO_2 = (
    "ALTER TABLE calls ADD COLUMN routed_from TEXT",
    "ALTER TABLE calls ADD COLUMN route_reason TEXT",
    "ALTER TABLE calls ADD COLUMN chain_id TEXT",
    "ALTER TABLE calls ADD COLUMN attempt INTEGER NOT NULL DEFAULT 1",
    "ALTER TABLE calls ADD COLUMN findings TEXT NOT NULL DEFAULT '{}'",
    "ALTER TABLE calls ADD COLUMN nudges TEXT NOT NULL DEFAULT '[]'",
)
# Schema 2 -> 3 (reports): the index of a task's calls also covers their cost, model and tokens (it
# is created again by _SCHEMA).
_MIGRATE_2_TO_3 = ("DROP INDEX IF EXISTS calls_task",)

_CALL_COLUMNS = (
    "id",
    "time_us",
    "latency_s",
    "provider",
    "operation",
    "api",
    "request_model",
    "response_model",
    "stream",
    "response_id",
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "reasoning_tokens",
    "usage_estimated",
    "cost_usd",
    "cost_nano",
    "estimated_cost_usd",
    "tags",
    "task_id",
    "task_name",
    "status",
    "error_type",
    "decisions",
    "routed_from",
    "route_reason",
    "chain_id",
    "attempt",
    "findings",
    "nudges",
)
_INSERT_CALL = f"INSERT INTO calls ({', '.join(_CALL_COLUMNS)}) VALUES ({', '.join('?' * len(_CALL_COLUMNS))})"
_SELECT_CALLS = f"SELECT seq, {', '.join(_CALL_COLUMNS)} FROM calls"

# ?1 budget, ?2 window, ?3 now (µs): only unexpired reservations and active grants count.
_STANDING = """
SELECT
    coalesce(s.spent_nano, 0),
    coalesce((SELECT sum(amount_nano) FROM reservations WHERE budget = ?1 AND win = ?2 AND expires_us > ?3), 0),
    coalesce((SELECT sum(extra_nano) FROM grants
              WHERE budget = ?1 AND revoked = 0 AND created_us <= ?3 AND expires_us > ?3), 0),
    coalesce(s.refused, 0)
FROM (SELECT 1) LEFT JOIN spend AS s ON s.budget = ?1 AND s.win = ?2
"""
_REFUSE = (
    "INSERT INTO spend (budget, win, spent_nano, refused) VALUES (?, ?, 0, 1) "
    "ON CONFLICT (budget, win) DO UPDATE SET refused = 1"
)
_COMMIT_SPEND = (
    "INSERT INTO spend (budget, win, spent_nano, refused) VALUES (?, ?, ?, 0) "
    "ON CONFLICT (budget, win) DO UPDATE SET spent_nano = spent_nano + excluded.spent_nano"
)
_PURGE = "DELETE FROM reservations WHERE budget = ? AND win = ? AND expires_us <= ?"
_RESERVE = "INSERT OR REPLACE INTO reservations (rid, budget, win, amount_nano, expires_us) VALUES (?, ?, ?, ?, ?)"
_GRANT_COLUMNS = "id, budget, extra_usd, approved_by, reason, created_us, expires_us, revoked"
# A tag filter that works for any key (a JSON path cannot quote every key); rows are checked again
# in Python, so SQL only narrows.
_TAG_FILTER = "EXISTS (SELECT 1 FROM json_each({table}.tags) AS j WHERE j.key = ? AND j.value = ? AND j.type = 'text')"


def _busy(exc: sqlite3.OperationalError) -> bool:
    """Whether another connection holds the lock (SQLITE_BUSY): worth waiting for."""
    code = getattr(exc, "sqlite_errorcode", None)  # Python 3.11+
    if isinstance(code, int):
        return (code & 0xFF) == _SQLITE_BUSY
    return "database is locked" in str(exc)


def _us(dt: datetime) -> int:
    """Microseconds since the epoch, exactly (a naive time is taken as UTC)."""
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _US


def _dt(us: int) -> datetime:
    return _EPOCH + timedelta(microseconds=us)


def _dec(text: str | None) -> Decimal | None:
    return None if text is None else Decimal(text)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def _call_row(record: CallRecord) -> tuple[object, ...]:
    cost = record.cost_usd
    est = record.estimated_cost_usd
    return (
        record.id,
        _us(record.time),
        record.latency_s,
        record.provider,
        record.operation,
        record.api,
        record.request_model,
        record.response_model,
        record.stream,
        record.response_id,
        record.input_tokens,
        record.output_tokens,
        record.cache_read_tokens,
        record.cache_write_tokens,
        record.reasoning_tokens,
        record.usage_estimated,
        None if cost is None else str(cost),
        None if cost is None else to_nano(cost),
        None if est is None else str(est),
        _json(dict(record.tags)),
        record.task_id,
        record.task_name,
        record.status,
        record.error_type,
        _json(list(record.decisions)),
        record.routed_from,
        record.route_reason,
        record.chain_id,
        record.attempt,
        _json(dict(record.findings)),
        _json(list(record.nudges)),
    )


def _call_record(row: Sequence[Any]) -> CallRecord:
    """A record from a ``_SELECT_CALLS`` row (whose first column is ``seq``); every value is built
    with its field's type here, so pydantic's validation is skipped (reports read many rows)."""
    return CallRecord._trusted(
        {
            "id": row[1],
            "time": _dt(row[2]),
            "latency_s": row[3],
            "provider": row[4],
            "operation": row[5],
            "api": row[6],
            "request_model": row[7],
            "response_model": row[8],
            "stream": bool(row[9]),
            "response_id": row[10],
            "input_tokens": row[11],
            "output_tokens": row[12],
            "cache_read_tokens": row[13],
            "cache_write_tokens": row[14],
            "reasoning_tokens": row[15],
            "usage_estimated": bool(row[16]),
            "cost_usd": _dec(row[17]),
            # row[18] is cost_nano, for SQL sums
            "estimated_cost_usd": _dec(row[19]),
            "tags": json.loads(row[20]),
            "task_id": row[21],
            "task_name": row[22],
            "status": row[23],
            "error_type": row[24],
            "decisions": tuple(json.loads(row[25])),
            "routed_from": row[26],
            "route_reason": row[27],
            "chain_id": row[28],
            "attempt": row[29],
            "findings": json.loads(row[30]),
            "nudges": tuple(json.loads(row[31])),
        }
    )


def _grant(row: Sequence[Any]) -> Grant:
    return Grant(
        id=row[0],
        budget=row[1],
        extra_usd=Decimal(row[2]),
        approved_by=row[3],
        reason=row[4],
        created_at=_dt(row[5]),
        expires_at=_dt(row[6]),
        revoked=bool(row[7]),
    )


def _tags_match(tags: Mapping[str, str], wanted: Mapping[str, str]) -> bool:
    return all(tags.get(k) == v for k, v in wanted.items())


# -- aggregation (reports) -------------------------------------------------------------------------
# call_totals / task_totals group and count in SQL; only the money is summed in Python, exactly,
# from the Decimal texts of each group (group_concat), never from the rounded nano-dollars.

_MODEL = "coalesce(nullif(response_model, ''), request_model)"  # the model that billed
# The SQL of each field a group can be keyed by. A unary + keeps SQLite from walking an index to
# get the groups in order (a lookup per row); one scan and a sort is faster.
_CALL_KEYS = {"model": _MODEL, "request_model": "+request_model", "provider": "provider", "api": "api"}
_CALL_KEYS |= {"operation": "operation", "status": "status", "task": "+task_name"}
_TASK_KEYS = {"task": "+t.name", "outcome": "t.outcome", "model": "m.model"}
_BUCKET_SQL = {
    "day": "date({s}, 'unixepoch')",
    "week": "date({s}, 'unixepoch', '-6 days', 'weekday 1')",  # back to the Monday (or today)
    "month": "strftime('%Y-%m', {s}, 'unixepoch')",
}
_ACCEPTED = "CASE WHEN r.task_id IS NULL THEN t.accepted ELSE r.accepted END"  # a review wins
_EDIT_DISTANCE = "CASE WHEN r.task_id IS NULL THEN t.edit_distance ELSE r.edit_distance END"


def _seconds(column: str) -> str:
    """Whole seconds since the epoch of a µs column, rounded down (SQLite's own conversion of
    fractional seconds rounds to the millisecond, which would move 23:59:59.9995 to the next day)."""
    return f"(({column} - (({column} % 1000000) + 1000000) % 1000000) / 1000000)"


def _tag_path(key: str) -> str | None:
    """The JSON path that names tag ``key`` in the ledger's JSON text, or ``None`` for a key that a
    path may not match as written (quotes, backslashes, control or non-ASCII characters)."""
    if key.isascii() and key.isprintable() and '"' not in key and "\\" not in key:
        return f'$."{key}"'
    return None


def _key_sql(
    key: tuple[str, str], table: str, time_column: str, fields: Mapping[str, str]
) -> tuple[str, str | None] | None:
    """The SQL expression of a grouping key (and its JSON path parameter, for a tag), or ``None``
    when SQL cannot compute it."""
    kind, name = key
    if kind == "tag":
        path = _tag_path(name)
        return None if path is None else (f"json_extract({table}tags, ?)", path)
    if name in _BUCKET_SQL:
        return _BUCKET_SQL[name].format(s=_seconds(f"{table}{time_column}")), None
    return (fields[name], None) if name in fields else None


def _usd(texts: str | None) -> Decimal:
    """The exact sum of the space-separated Decimal texts of ``group_concat(cost_usd, ' ')``."""
    return sum(map(Decimal, texts.split()), Decimal(0)) if texts else Decimal(0)


def _by_key(group: CallTotals | TaskTotals) -> tuple[tuple[bool, str], ...]:
    """The order of groups: by key, ``None`` (unattributed) last (as :meth:`Store.call_totals`)."""
    return tuple((v is None, v or "") for v in group.key)


def parse_uri(uri: str) -> tuple[Path, float]:
    """The database path (absolute) and busy timeout of a ``sqlite:///...`` URI, without touching
    the file system. Raises :class:`~tokenguard.ConfigError` naming the URI and the expected forms."""
    forms = (
        "use 'sqlite:///relative/path.db' (three slashes: relative to the working directory) or "
        "'sqlite:////absolute/path.db' (four slashes), optionally with '?timeout=<seconds>'"
    )
    if not isinstance(uri, str) or not uri[:9].lower() == "sqlite://":
        raise ConfigError(f"store URI {uri!r} is not a SQLite URI: {forms}")
    rest = uri[9:]
    if "#" in rest:
        raise ConfigError(f"store URI {uri!r} has a fragment ('#...'), which means nothing here: {forms}")
    location, _, query = rest.partition("?")
    if not location.startswith("/"):
        hint = f" (did you mean 'sqlite:///{location}'?)" if location else ""
        raise ConfigError(f"store URI {uri!r} has no file path{hint}: {forms}")
    raw = unquote(location[1:])
    if not raw:
        raise ConfigError(f"store URI {uri!r} has no file path: {forms}")
    if raw == ":memory:" or raw.startswith("file:"):
        raise ConfigError(
            f"store URI {uri!r} is not a file: an in-memory SQLite database is not shared between "
            f"threads or processes; use 'memory://' for a store that lives in this process only, or {forms}"
        )
    if raw.endswith(("/", os.sep)):
        raise ConfigError(f"store URI {uri!r} names a directory, not a database file: {forms}")
    if "\x00" in raw:
        raise ConfigError(f"store URI {uri!r} contains a NUL character")
    timeout = DEFAULT_TIMEOUT_S
    seen: set[str] = set()
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=False):
        if key in seen:
            raise ConfigError(f"store URI {uri!r} repeats the query parameter {key!r}")
        seen.add(key)
        if key == "timeout":
            try:
                timeout = float(value)
            except ValueError:
                timeout = -1.0
            if not (0 <= timeout <= 3600):  # also rejects nan
                raise ConfigError(
                    f"store URI {uri!r}: timeout must be a number of seconds between 0 and 3600 "
                    f"(how long a write waits for another process's lock), got {value!r}"
                )
        else:
            raise ConfigError(f"store URI {uri!r} has an unknown query parameter {key!r}: the only one is 'timeout'")
    if query and not seen:
        raise ConfigError(f"store URI {uri!r} has a malformed query {query!r}: {forms}")
    return Path(os.path.abspath(raw)), timeout


def _task_filters(query: TaskQuery) -> tuple[list[str], list[object]]:
    """The WHERE conditions (on ``tasks AS t``) and parameters of a task query, tags aside."""
    where: list[str] = []
    params: list[object] = []
    for condition, value in (
        ("t.started_us >= ?", None if query.since is None else _us(query.since)),
        ("t.started_us < ?", None if query.until is None else _us(query.until)),
        ("t.name = ?", query.name),
        ("t.outcome = ?", query.outcome),
    ):
        if value is not None:
            where.append(condition)
            params.append(value)
    return where, params


class SQLiteStore(Store):
    """A store in one SQLite file (WAL mode), shared by the threads and processes of one host.

    Each store object keeps one connection per process, opened on first use (so building a Guard
    touches no file) and used under a lock: SQLite takes one writer at a time anyway, and the lock
    makes this process's threads queue without polling SQLite's busy handler (which sleeps in
    steps of 1 to 100 ms). Other processes (and other store objects) wait on SQLite's lock up to
    ``timeout`` seconds. A forked child opens its own connection (on os.fork(), and whenever the
    process id changed since the connection was opened).
    """

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = DEFAULT_TIMEOUT_S) -> None:
        self.path = Path(os.path.abspath(path))
        self.timeout = timeout
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._pid = 0
        # long reads (aggregations for reports) use a connection of their own, so that governed
        # calls of this process do not queue behind them (WAL: readers never block the writer)
        self._reader_lock = threading.Lock()
        self._reader: sqlite3.Connection | None = None
        self._reader_pid = 0
        self._json = True  # JSON functions available (checked on connect)
        _STORES.add(self)

    @classmethod
    def from_uri(cls, uri: str) -> SQLiteStore:
        """Parse and validate ``uri`` without opening the file (see :func:`parse_uri`)."""
        path, timeout = parse_uri(uri)
        return cls(path, timeout=timeout)

    def __repr__(self) -> str:
        return f"SQLiteStore({str(self.path)!r}, timeout={self.timeout})"

    # -- connection ----------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        """This process's connection (callers hold ``self._lock``)."""
        conn = self._conn
        if conn is not None and self._pid == os.getpid():
            return conn
        if conn is not None:  # inherited across fork(): never touch it again
            _ABANDONED.append(conn)
            self._conn = None
        conn = self._open()
        self._conn, self._pid = conn, os.getpid()
        return conn

    def _reader_connection(self) -> sqlite3.Connection:
        """This process's connection for long reads (callers hold ``self._reader_lock``)."""
        conn = self._reader
        if conn is not None and self._reader_pid == os.getpid():
            return conn
        if conn is not None:
            _ABANDONED.append(conn)
            self._reader = None
        conn = self._open()
        self._reader, self._reader_pid = conn, os.getpid()
        return conn

    def _open(self) -> sqlite3.Connection:
        if sqlite3.sqlite_version_info < MIN_SQLITE:
            raise SQLiteStoreError(
                f"tokenguard's SQLite store needs SQLite {'.'.join(map(str, MIN_SQLITE))} or newer; this Python "
                f"links SQLite {sqlite3.sqlite_version}. Use a newer Python build, or another store."
            )
        conn = sqlite3.connect(
            str(self.path), timeout=self.timeout, isolation_level=None, check_same_thread=False, cached_statements=64
        )
        try:
            self._init(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _init(self, conn: sqlite3.Connection) -> None:
        app_id, version = (
            conn.execute("PRAGMA application_id").fetchone()[0],
            conn.execute("PRAGMA user_version").fetchone()[0],
        )
        if app_id not in (0, APPLICATION_ID):
            raise SQLiteStoreError(
                f"{self.path} is a SQLite database of another application (application_id {app_id:#x}), "
                f"not tokenguard's; point store='sqlite:///...' at a file of its own"
            )
        if version > SCHEMA_VERSION:
            raise SQLiteStoreError(
                f"{self.path} was written by a newer tokenguard (schema {version}, this one knows "
                f"{SCHEMA_VERSION}); upgrade tokenguard in this environment"
            )
        # SQLite's busy handler waits for a lock held by another process (timeout= above); when two
        # processes switch a new file to WAL at once, one fails at once and _run retries.
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            log.warning(
                "tokenguard's SQLite store %s could not use WAL mode (journal mode %r; e.g. a network file "
                "system): budgets stay exact, but readers and writers block each other",
                self.path,
                mode,
            )
        conn.execute("PRAGMA synchronous = NORMAL")
        try:
            conn.execute("SELECT json_each.key FROM json_each('{}')").fetchall()
        except sqlite3.OperationalError:
            self._json = False  # tags are then filtered in Python only
        if version == SCHEMA_VERSION:
            return
        conn.execute("BEGIN IMMEDIATE")
        try:
            current = conn.execute("PRAGMA user_version").fetchone()[0]
            if current == 1:
                for statement in _MIGRATE_1_TO_2:
                    conn.execute(statement)
            if 1 <= current <= 2:
                for statement in _MIGRATE_2_TO_3:
                    conn.execute(statement)
            if current < SCHEMA_VERSION:
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    def _error(self, exc: sqlite3.Error, doing: str, *, reader: bool = False) -> SQLiteStoreError:
        """A clear error for a failure of SQLite (which file, what went wrong, what to do); the
        connection that failed (the reader's if ``reader``) is forgotten after a failure of the file."""
        if isinstance(exc, SQLiteStoreError):
            return exc
        drop = self._drop_reader if reader else self._drop
        text = str(exc)
        name = getattr(exc, "sqlite_errorname", "")
        where = f"tokenguard's SQLite store {self.path}"
        if "not a database" in text or "malformed" in text or name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            # the file may be replaced (restored): open it again next time
            drop()
            return SQLiteStoreError(
                f"{where} is not a SQLite database or is corrupt ({text}) while {doing}. Move the file aside "
                f"(keep it for investigation) so tokenguard starts a new one, restore it from a backup, or "
                f"point store='sqlite:///...' at another file."
            )
        if "unable to open" in text or name.startswith("SQLITE_CANTOPEN"):
            drop()
            return SQLiteStoreError(
                f"{where} cannot be opened while {doing}: {self._why_unopenable()} (SQLite: {text}). "
                f"tokenguard needs to create and write the file, and its -wal and -shm files, in that "
                f"directory: create the directory, fix its permissions, or choose another path."
            )
        if "readonly" in text or "read-only" in text or name.startswith("SQLITE_READONLY"):
            drop()
            return SQLiteStoreError(
                f"{where} is read-only ({text}) while {doing}: tokenguard writes the ledger and budgets to it, "
                f"and its -wal and -shm files next to it. Make the file and its directory writable for this "
                f"process's user, or choose another path."
            )
        if "locked" in text or "busy" in text or name.startswith(("SQLITE_BUSY", "SQLITE_LOCKED")):
            return SQLiteStoreError(
                f"{where} stayed locked by another connection for more than {self.timeout:g}s while {doing} "
                f"({text}). Another process holds a long write transaction (find it with `fuser {self.path}`), "
                f"or raise the wait with '?timeout=<seconds>' in the store URI."
            )
        if "full" in text or "I/O" in text:
            drop()
        return SQLiteStoreError(f"{where} failed while {doing}: {type(exc).__name__}: {text}")

    def _why_unopenable(self) -> str:
        parent = self.path.parent
        try:
            if self.path.is_dir():
                return "the path is a directory"
            if not parent.exists():
                return f"the directory {parent} does not exist"
            if not parent.is_dir():
                return f"{parent} is not a directory"
            if not os.access(parent, os.W_OK | os.X_OK):
                return f"this process may not write in the directory {parent}"
        except OSError as exc:
            return f"{parent}: {exc.strerror or exc}"
        return "the file cannot be opened for reading and writing"

    def _drop(self) -> None:
        """Forget the connection after a failure of the file itself (callers hold the lock)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _drop_reader(self) -> None:
        """Forget the reader's connection (callers hold the reader's lock)."""
        conn, self._reader = self._reader, None
        if conn is not None and self._reader_pid == os.getpid():
            with contextlib.suppress(sqlite3.Error):
                conn.close()

    def _run(self, doing: str, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run ``fn`` on this process's connection: as one write transaction taken at its start
        (``BEGIN IMMEDIATE``: what it reads cannot change before it commits, in any thread or
        process) when ``write``, else in autocommit (each statement sees one snapshot).

        While another process holds the write lock, SQLite's busy handler waits (up to ``timeout``
        seconds). The few cases where SQLite reports "busy" without waiting (e.g. two processes
        switching a new file to WAL at once) are retried here until the same deadline."""
        with self._lock:
            return self._retrying(doing, fn, write=write, reader=False)

    def _read_long(self, doing: str, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn``, a long read (an aggregation), on this process's reader connection, in one
        read transaction (one snapshot of the file), without holding the lock of the connection
        that governed calls use. Retried on "busy" like :meth:`_run`."""

        def read(conn: sqlite3.Connection) -> T:
            conn.execute("BEGIN")
            try:
                return fn(conn)
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")

        with self._reader_lock:
            return self._retrying(doing, read, write=False, reader=True)

    def _retrying(self, doing: str, fn: Callable[[sqlite3.Connection], T], *, write: bool, reader: bool) -> T:
        """The body of :meth:`_run` and :meth:`_read_long` (callers hold the connection's lock)."""
        deadline = time.monotonic() + self.timeout
        delay = 1e-3
        while True:
            try:
                conn = self._reader_connection() if reader else self._connection()
                if not write:
                    return fn(conn)
                conn.execute("BEGIN IMMEDIATE")
                try:
                    result = fn(conn)
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise
                return result
            except sqlite3.OperationalError as exc:
                if not _busy(exc):
                    raise self._error(exc, doing, reader=reader) from exc
                now = time.monotonic()
                if now >= deadline:
                    raise self._error(exc, doing, reader=reader) from exc
                time.sleep(min(delay * (0.5 + random.random()), deadline - now))
                delay = min(delay * 2, 0.05)
            except sqlite3.Error as exc:
                raise self._error(exc, doing, reader=reader) from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                if self._pid == os.getpid():
                    conn.close()
                else:
                    _ABANDONED.append(conn)
        with self._reader_lock:
            conn, self._reader = self._reader, None
            if conn is not None:
                if self._reader_pid == os.getpid():
                    conn.close()
                else:
                    _ABANDONED.append(conn)

    # -- ledger --------------------------------------------------------------------------------

    def calls(self, query: CallQuery) -> Iterator[CallRecord]:
        where: list[str] = []
        params: list[object] = []
        since = None if query.since is None else _us(query.since)
        if query.until is not None:
            where.append("time_us < ?")
            params.append(_us(query.until))
        if query.task_id is not None:
            where.append("task_id = ?")
            params.append(query.task_id)
        if query.status is not None:
            where.append("status = ?")
            params.append(query.status)
        if query.tags and self._json:
            for key, value in query.tags.items():
                where.append(_TAG_FILTER.format(table="calls"))
                params += [key, value]
        # A model matches the requested or the responding model: one branch per index, merged in
        # time order by SQLite (an OR would sort every remaining match again for each page).
        branches: list[tuple[str, list[object]]] = [("", [])]
        if query.model is not None:
            branches = [
                ("request_model = ?", [query.model]),
                ("response_model = ? AND request_model != ?", [query.model, query.model]),
            ]

        def page(conn: sqlite3.Connection, after: tuple[int, int] | None, last: int) -> list[Any]:
            selects: list[str] = []
            args: list[object] = []
            # The lower bound of time is where the last page ended (SQLite seeks the index with
            # one lower bound only: with since= too, every page would scan from since again).
            low = since if after is None else after[0]
            for condition, values in branches:
                clauses = [*([condition] if condition else []), *where, "seq <= ?"]
                args += [*values, *params, last]
                if low is not None:
                    clauses.append("time_us >= ?")
                    args.append(low)
                if after is not None:
                    clauses.append("(time_us, seq) > (?, ?)")
                    args += after
                selects.append(f"{_SELECT_CALLS} WHERE {' AND '.join(clauses)}")
            sql = f"{' UNION ALL '.join(selects)} ORDER BY time_us, seq LIMIT {PAGE}"
            return conn.execute(sql, args).fetchall()

        def first(conn: sqlite3.Connection) -> tuple[int, list[Any]]:
            last = conn.execute("SELECT coalesce(max(seq), 0) FROM calls").fetchone()[0]
            return last, page(conn, None, last)

        # The first page is read now (an unreachable store fails here, and the ledger is read as
        # of now: calls appended while iterating are not included); later pages as they are needed.
        last, rows = self._run("reading the ledger", first)
        tags = query.tags

        def iterate(rows: list[Any]) -> Iterator[CallRecord]:
            while rows:
                for row in rows:
                    record = _call_record(row)
                    if not tags or _tags_match(record.tags, tags):
                        yield record
                if len(rows) < PAGE:
                    return
                after = (rows[-1][2], rows[-1][0])
                rows = self._run("reading the ledger", partial(page, after=after, last=last))

        return iterate(rows)

    def append_task(self, record: TaskRecord) -> None:
        row = (
            record.id,
            record.name,
            _json(dict(record.tags)),
            record.outcome,
            record.failure_reason,
            _us(record.started_at),
            record.duration_s,
            record.accepted,
            record.edit_distance,
            record.reviewer,
        )
        self._run(
            "recording a task",
            lambda conn: conn.execute(
                "INSERT INTO tasks (id, name, tags, outcome, failure_reason, started_us, duration_s, accepted, "
                "edit_distance, reviewer) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET "
                "name = excluded.name, tags = excluded.tags, outcome = excluded.outcome, "
                "failure_reason = excluded.failure_reason, started_us = excluded.started_us, "
                "duration_s = excluded.duration_s, accepted = excluded.accepted, "
                "edit_distance = excluded.edit_distance, reviewer = excluded.reviewer",
                row,
            ),
        )

    def review_task(self, task_id: str, review: Review) -> None:
        self._run(
            "recording a review",
            lambda conn: conn.execute(
                "INSERT OR REPLACE INTO reviews (task_id, accepted, edit_distance, reviewer) VALUES (?, ?, ?, ?)",
                (task_id, review.accepted, review.edit_distance, review.reviewer),
            ),
        )

    def has_task(self, task_id: str) -> bool:
        return self._run(
            "reading tasks",
            lambda conn: conn.execute("SELECT 1 FROM tasks WHERE id = ?", (task_id,)).fetchone() is not None,
        )

    def tasks(self, query: TaskQuery) -> Iterator[TaskRecord]:
        where, params = _task_filters(query)
        if query.tags and self._json:
            for key, value in query.tags.items():
                where.append(_TAG_FILTER.format(table="t"))
                params += [key, value]
        sql = (
            "SELECT t.id, t.name, t.tags, t.outcome, t.failure_reason, t.started_us, t.duration_s, t.accepted, "
            "t.edit_distance, t.reviewer, r.task_id IS NOT NULL, r.accepted, r.edit_distance, r.reviewer "
            "FROM tasks AS t LEFT JOIN reviews AS r ON r.task_id = t.id"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + " ORDER BY t.started_us, t.seq"
        )

        def read(conn: sqlite3.Connection) -> tuple[list[Any], dict[str, tuple[int, Decimal]]]:
            conn.execute("BEGIN")  # tasks and their calls' totals from one snapshot (read only)
            try:
                rows = conn.execute(sql, params).fetchall()
                totals: dict[str, tuple[int, Decimal]] = {}
                ids = [row[0] for row in rows]
                for i in range(0, len(ids), PAGE):
                    chunk = ids[i : i + PAGE]
                    for task_id, n, costs in conn.execute(
                        "SELECT task_id, count(*), group_concat(cost_usd, ' ') FROM calls "
                        f"WHERE task_id IN ({', '.join('?' * len(chunk))}) GROUP BY task_id",
                        chunk,
                    ):
                        totals[task_id] = (n, sum((Decimal(c) for c in (costs or "").split()), Decimal(0)))
            finally:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
            return rows, totals

        rows, totals = self._run("reading tasks", read)
        result = []
        for row in rows:
            tags = json.loads(row[2])
            if query.tags and not _tags_match(tags, query.tags):
                continue
            calls, cost = totals.get(row[0], (0, Decimal(0)))
            reviewed = bool(row[10])
            result.append(
                TaskRecord(
                    id=row[0],
                    name=row[1],
                    tags=tags,
                    outcome=row[3],
                    failure_reason=row[4],
                    started_at=_dt(row[5]),
                    duration_s=row[6],
                    accepted=bool(row[11]) if reviewed else (None if row[7] is None else bool(row[7])),
                    edit_distance=row[12] if reviewed else row[8],
                    reviewer=row[13] if reviewed else row[9],
                    calls=calls,
                    cost_usd=cost,
                )
            )
        return iter(result)

    # -- aggregation (reports) -----------------------------------------------------------------

    def call_totals(self, query: CallQuery, by: Sequence[str]) -> list[CallTotals]:
        """Grouped and counted in SQL (one scan of the matching calls), the money summed exactly in
        Python per group; the same groups, in the same order, as the default."""
        keys = [_key_sql(group_key(k, CALL_FIELDS), "", "time_us", _CALL_KEYS) for k in by]
        where: list[str] = []
        params: list[object] = []
        for key in keys:
            if key is None:
                return super().call_totals(query, by)
            if key[1] is not None:
                params.append(key[1])
        if query.since is not None:
            where.append("time_us >= ?")
            params.append(_us(query.since))
        if query.until is not None:
            where.append("time_us < ?")
            params.append(_us(query.until))
        if query.model is not None:
            where.append("(request_model = ? OR response_model = ?)")
            params += [query.model, query.model]
        if query.task_id is not None:
            where.append("task_id = ?")
            params.append(query.task_id)
        if query.status is not None:
            where.append("status = ?")
            params.append(query.status)
        for name, value in (query.tags or {}).items():
            path = _tag_path(name)
            if path is None:
                return super().call_totals(query, by)
            where.append("json_extract(tags, ?) = ?")
            params += [path, value]
        n = len(keys)
        sql = (
            f"SELECT {''.join(f'{k[0]}, ' for k in keys if k)}count(*), sum(input_tokens), sum(output_tokens), "
            "sum(cache_read_tokens), sum(cache_write_tokens), sum(reasoning_tokens), group_concat(cost_usd, ' '), "
            "sum(cost_usd IS NULL), sum(status = 'error'), sum(status = 'blocked') FROM calls"
            + (f" WHERE {' AND '.join(where)}" if where else "")
            + (f" GROUP BY {', '.join(str(i + 1) for i in range(n))}" if n else "")
        )

        def read(conn: sqlite3.Connection) -> list[Any] | None:
            if not self._json:
                return None
            return conn.execute(sql, params).fetchall()

        rows = self._read_long("aggregating the ledger", read)
        if rows is None:  # no JSON functions in this SQLite
            return super().call_totals(query, by)
        groups = [
            CallTotals(
                tuple(row[:n]),
                calls=row[n],
                input_tokens=row[n + 1],
                output_tokens=row[n + 2],
                cache_read_tokens=row[n + 3],
                cache_write_tokens=row[n + 4],
                reasoning_tokens=row[n + 5],
                cost_usd=_usd(row[n + 6]),
                unpriced_calls=row[n + 7],
                error_calls=row[n + 8],
                blocked_calls=row[n + 9],
            )
            for row in rows
            if row[n]  # without GROUP BY, no calls is one row of zeros
        ]
        return sorted(groups, key=_by_key)

    def task_totals(self, query: TaskQuery, by: Sequence[str]) -> list[TaskTotals]:
        """Grouped and counted in SQL, with each task's calls and cost from the calls' index; the
        money summed exactly in Python, the edit distances summed in the default's order (floats)."""
        group_keys = [group_key(k, TASK_FIELDS) for k in by]
        keys = [_key_sql(k, "t.", "started_us", _TASK_KEYS) for k in group_keys]
        key_params: list[object] = []
        for key in keys:
            if key is None:
                return super().task_totals(query, by)
            if key[1] is not None:
                key_params.append(key[1])
        where, params = _task_filters(query)
        for name, value in (query.tags or {}).items():
            path = _tag_path(name)
            if path is None:
                return super().task_totals(query, by)
            where.append("json_extract(t.tags, ?) = ?")
            params += [path, value]
        n = len(keys)
        selected = "".join(f"{k[0]}, " for k in keys if k)
        group = f" GROUP BY {', '.join(str(i + 1) for i in range(n))}" if n else ""
        with_model = ("field", "model") in group_keys
        joins = "FROM tasks AS t LEFT JOIN reviews AS r ON r.task_id = t.id" + (
            " LEFT JOIN temp.tokenguard_task_models AS m ON m.task_id = t.id" if with_model else ""
        )
        # the tasks asked for, as a condition on the calls' task_id
        of_tasks = (
            f"task_id IN (SELECT t.id FROM tasks AS t WHERE {' AND '.join(where)})" if where else "task_id IS NOT NULL"
        )
        # a task's calls and cost are all its calls; its tokens those since ``since`` (as the default)
        counted = "task_id != ''" + (" AND time_us >= ?" if query.since is not None else "")
        since = [] if query.since is None else [_us(query.since)]
        sql = (
            "WITH per AS (SELECT task_id, count(*) AS n, group_concat(cost_usd, ' ') AS costs, "
            f"sum(CASE WHEN {counted} THEN input_tokens ELSE 0 END) AS i, "
            f"sum(CASE WHEN {counted} THEN output_tokens ELSE 0 END) AS o "
            f"FROM calls WHERE {of_tasks} GROUP BY task_id) "
            f"SELECT {selected}count(*), sum(t.outcome = 'succeeded'), sum(t.outcome = 'failed'), "
            f"sum({_ACCEPTED} IS NOT NULL), sum(CASE WHEN {_ACCEPTED} THEN 1 ELSE 0 END), count({_EDIT_DISTANCE}), "
            "coalesce(sum(per.n), 0), coalesce(sum(per.i), 0), coalesce(sum(per.o), 0), group_concat(per.costs, ' ') "
            f"{joins} LEFT JOIN per ON per.task_id = t.id" + (f" WHERE {' AND '.join(where)}" if where else "") + group
        )
        reviewed = " AND ".join([*where, f"{_EDIT_DISTANCE} IS NOT NULL"])
        distances = f"SELECT {selected}{_EDIT_DISTANCE} {joins} WHERE {reviewed} ORDER BY t.started_us, t.seq"

        def read(conn: sqlite3.Connection) -> tuple[list[Any], list[Any]] | None:
            if not self._json:
                return None
            if with_model:
                models = self._task_models_sql(conn, of_tasks, params, query.since)
                conn.execute(
                    "CREATE TEMP TABLE IF NOT EXISTS tokenguard_task_models "
                    "(task_id TEXT PRIMARY KEY, model TEXT NOT NULL) WITHOUT ROWID"
                )
                conn.execute("DELETE FROM temp.tokenguard_task_models")
                conn.executemany("INSERT INTO temp.tokenguard_task_models VALUES (?, ?)", models.items())
            rows = conn.execute(sql, [*since, *since, *params, *key_params, *params]).fetchall()
            edits: list[Any] = []
            if any(row[n + 5] for row in rows):
                edits = conn.execute(distances, [*key_params, *params]).fetchall()
            return rows, edits  # the temporary table goes with the read transaction

        result = self._read_long("aggregating tasks", read)
        if result is None:  # no JSON functions in this SQLite
            return super().task_totals(query, by)
        rows, edits = result
        # floats: summed one by one in the order of the tasks, as the default does
        distance: dict[tuple[Any, ...], float] = {}
        for row in edits:
            distance[row[:n]] = distance.get(row[:n], 0.0) + row[n]
        groups = [
            TaskTotals(
                tuple(row[:n]),
                tasks=row[n],
                succeeded=row[n + 1],
                failed=row[n + 2],
                reviewed=row[n + 3],
                accepted=row[n + 4],
                edit_distance_sum=distance.get(tuple(row[:n]), 0.0),
                edit_distance_count=row[n + 5],
                calls=row[n + 6],
                input_tokens=row[n + 7],
                output_tokens=row[n + 8],
                cost_usd=_usd(row[n + 9]),
            )
            for row in rows
            if row[n]
        ]
        return sorted(groups, key=_by_key)

    def _task_models_sql(
        self, conn: sqlite3.Connection, of_tasks: str, params: list[object], since: datetime | None
    ) -> dict[str, str]:
        """Per task id (of the tasks ``of_tasks`` selects), the model that carried most of its cost,
        exactly as the default (:meth:`Store.task_totals`) chooses it: from the calls since ``since``
        with a non-zero cost, a tie going to the model whose first such call came first."""
        where = [of_tasks, "task_id != ''", "cost_usd IS NOT NULL"]
        args = list(params)
        if since is not None:
            where.append("time_us >= ?")
            args.append(_us(since))
        rows = conn.execute(
            f"SELECT task_id, {_MODEL}, group_concat(cost_usd, ' ') FROM calls WHERE {' AND '.join(where)} "
            "GROUP BY task_id, 2",
            args,
        )
        best: dict[str, str] = {}
        top: dict[str, Decimal] = {}
        tied: dict[str, list[str]] = {}
        for task_id, model, costs in rows:
            total = _usd(costs)
            if not total and not any(Decimal(c) for c in costs.split()):
                continue  # only calls that cost nothing: not a candidate
            leader = top.get(task_id)
            if leader is None or total > leader:
                best[task_id], top[task_id] = model, total
                tied.pop(task_id, None)
            elif total == leader:
                tied.setdefault(task_id, [best[task_id]]).append(model)
        for task_id, models in tied.items():  # rare: the first of them in the ledger's order wins
            first = ["task_id = ?", "cost_usd IS NOT NULL", *where[3:]]
            for model, cost in conn.execute(
                f"SELECT {_MODEL}, cost_usd FROM calls WHERE {' AND '.join(first)} ORDER BY time_us, seq",
                [task_id, *args[len(params) :]],
            ):
                if model in models and Decimal(cost):
                    best[task_id] = model
                    break
        return best

    # -- budgets -------------------------------------------------------------------------------

    @staticmethod
    def _standing(conn: sqlite3.Connection, key: BudgetKey, now_us: int) -> Standing:
        spent, reserved, grant, refused = conn.execute(_STANDING, (key[0], key[1], now_us)).fetchone()
        return Standing(spent, reserved, grant, bool(refused))

    def admit(self, reservation_id: str, charges: Sequence[Charge], now: datetime, ttl_s: float) -> Admission:
        now_us = _us(now)

        def admit(conn: sqlite3.Connection) -> Admission:
            conn.executemany(_PURGE, [(c.budget, c.window, now_us) for c in charges])
            standings = tuple(self._standing(conn, c.key, now_us) for c in charges)
            for i, (charge, st) in enumerate(zip(charges, standings, strict=True)):
                reason = None
                if charge.block_nano is not None and st.spent_nano >= charge.block_nano + st.grant_nano:
                    reason = "review"
                elif st.spent_nano + st.reserved_nano + charge.estimate_nano > charge.cap_nano + st.grant_nano:
                    reason = "cap"
                if reason is not None:
                    conn.execute(_REFUSE, charge.key)
                    return Admission(standings, i, reason)
            expires_us = now_us + round(ttl_s * 1_000_000)
            conn.executemany(
                _RESERVE, [(reservation_id, c.budget, c.window, c.estimate_nano, expires_us) for c in charges]
            )
            return Admission(standings)

        return self._run("admitting a call", admit, write=True)

    def settle(
        self,
        reservation_id: str | None,
        keys: Sequence[BudgetKey],
        cost_nano: int,
        record: CallRecord,
        now: datetime,
    ) -> tuple[Standing, ...]:
        row = _call_row(record)
        now_us = _us(now)

        def settle(conn: sqlite3.Connection) -> tuple[Standing, ...]:
            if reservation_id is not None:
                conn.execute("DELETE FROM reservations WHERE rid = ?", (reservation_id,))
            if keys:
                conn.executemany(_COMMIT_SPEND, [(budget, window, cost_nano) for budget, window in keys])
            conn.execute(_INSERT_CALL, row)
            return tuple(self._standing(conn, key, now_us) for key in keys)

        return self._run("settling a call", settle, write=True)

    def refresh(self, reservation_id: str, keys: Sequence[BudgetKey], now: datetime, ttl_s: float) -> None:
        expires_us = _us(now) + round(ttl_s * 1_000_000)
        self._run(
            "refreshing a reservation",
            lambda conn: conn.execute(
                "UPDATE reservations SET expires_us = ? WHERE rid = ?", (expires_us, reservation_id)
            ),
        )

    def standing(self, key: BudgetKey, now: datetime) -> Standing:
        now_us = _us(now)
        return self._run("reading a budget", lambda conn: self._standing(conn, key, now_us))

    def add_grant(self, grant: Grant) -> None:
        row = (
            grant.id,
            grant.budget,
            str(grant.extra_usd),
            to_nano(grant.extra_usd),
            grant.approved_by,
            grant.reason,
            _us(grant.created_at),
            _us(grant.expires_at),
            grant.revoked,
        )

        def add(conn: sqlite3.Connection) -> None:
            conn.execute(
                "INSERT INTO grants (id, budget, extra_usd, extra_nano, approved_by, reason, created_us, expires_us, "
                "revoked) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET budget = excluded.budget, "
                "extra_usd = excluded.extra_usd, extra_nano = excluded.extra_nano, "
                "approved_by = excluded.approved_by, reason = excluded.reason, created_us = excluded.created_us, "
                "expires_us = excluded.expires_us, revoked = excluded.revoked",
                row,
            )
            conn.execute("UPDATE spend SET refused = 0 WHERE budget = ? AND refused", (grant.budget,))

        self._run("adding a grant", add, write=True)

    def revoke_grant(self, grant_id: str) -> Grant | None:
        def revoke(conn: sqlite3.Connection) -> Grant | None:
            conn.execute("UPDATE grants SET revoked = 1 WHERE id = ?", (grant_id,))
            row = conn.execute(f"SELECT {_GRANT_COLUMNS} FROM grants WHERE id = ?", (grant_id,)).fetchone()
            return None if row is None else _grant(row)

        return self._run("revoking a grant", revoke, write=True)

    def grants(self, budget: str | None = None) -> list[Grant]:
        def read(conn: sqlite3.Connection) -> list[Any]:
            if budget is None:
                return conn.execute(f"SELECT {_GRANT_COLUMNS} FROM grants ORDER BY seq").fetchall()
            return conn.execute(
                f"SELECT {_GRANT_COLUMNS} FROM grants WHERE budget = ? ORDER BY seq", (budget,)
            ).fetchall()

        return [_grant(row) for row in self._run("reading grants", read)]

    def claim_event(self, key: BudgetKey, kind: str) -> bool:
        return self._run(
            "recording a budget event",
            lambda conn: (
                conn.execute(
                    "INSERT OR IGNORE INTO events (budget, win, kind) VALUES (?, ?, ?)", (key[0], key[1], kind)
                ).rowcount
                == 1
            ),
        )
