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
from .base import Admission, BudgetKey, CallQuery, Charge, Review, Standing, Store, TaskQuery

__all__ = ["SQLiteStore", "SQLiteStoreError"]

log = logging.getLogger("tokenguard")

T = TypeVar("T")

SCHEMA_VERSION = 2
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
        if store._conn is not None:
            _ABANDONED.append(store._conn)
            store._conn = None


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
CREATE INDEX IF NOT EXISTS calls_task ON calls (task_id, time_us) WHERE task_id IS NOT NULL;
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
        self._json = True  # json_each available (checked on connect)
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

    def _error(self, exc: sqlite3.Error, doing: str) -> SQLiteStoreError:
        """A clear error for a failure of SQLite (which file, what went wrong, what to do)."""
        if isinstance(exc, SQLiteStoreError):
            return exc
        text = str(exc)
        name = getattr(exc, "sqlite_errorname", "")
        where = f"tokenguard's SQLite store {self.path}"
        if "not a database" in text or "malformed" in text or name.startswith(("SQLITE_NOTADB", "SQLITE_CORRUPT")):
            # the file may be replaced (restored): open it again next time
            self._drop()
            return SQLiteStoreError(
                f"{where} is not a SQLite database or is corrupt ({text}) while {doing}. Move the file aside "
                f"(keep it for investigation) so tokenguard starts a new one, restore it from a backup, or "
                f"point store='sqlite:///...' at another file."
            )
        if "unable to open" in text or name.startswith("SQLITE_CANTOPEN"):
            self._drop()
            return SQLiteStoreError(
                f"{where} cannot be opened while {doing}: {self._why_unopenable()} (SQLite: {text}). "
                f"tokenguard needs to create and write the file, and its -wal and -shm files, in that "
                f"directory: create the directory, fix its permissions, or choose another path."
            )
        if "readonly" in text or "read-only" in text or name.startswith("SQLITE_READONLY"):
            self._drop()
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
            self._drop()
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

    def _run(self, doing: str, fn: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        """Run ``fn`` on this process's connection: as one write transaction taken at its start
        (``BEGIN IMMEDIATE``: what it reads cannot change before it commits, in any thread or
        process) when ``write``, else in autocommit (each statement sees one snapshot).

        While another process holds the write lock, SQLite's busy handler waits (up to ``timeout``
        seconds). The few cases where SQLite reports "busy" without waiting (e.g. two processes
        switching a new file to WAL at once) are retried here until the same deadline."""
        with self._lock:
            deadline = time.monotonic() + self.timeout
            delay = 1e-3
            while True:
                try:
                    conn = self._connection()
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
                        raise self._error(exc, doing) from exc
                    now = time.monotonic()
                    if now >= deadline:
                        raise self._error(exc, doing) from exc
                    time.sleep(min(delay * (0.5 + random.random()), deadline - now))
                    delay = min(delay * 2, 0.05)
                except sqlite3.Error as exc:
                    raise self._error(exc, doing) from exc

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            if conn is not None:
                if self._pid == os.getpid():
                    conn.close()
                else:
                    _ABANDONED.append(conn)

    # -- ledger --------------------------------------------------------------------------------

    def calls(self, query: CallQuery) -> Iterator[CallRecord]:
        where: list[str] = []
        params: list[object] = []
        if query.since is not None:
            where.append("time_us >= ?")
            params.append(_us(query.since))
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
            for condition, values in branches:
                clauses = [*([condition] if condition else []), *where, "seq <= ?"]
                args += [*values, *params, last]
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
        where: list[str] = []
        params: list[object] = []
        if query.since is not None:
            where.append("t.started_us >= ?")
            params.append(_us(query.since))
        if query.until is not None:
            where.append("t.started_us < ?")
            params.append(_us(query.until))
        if query.name is not None:
            where.append("t.name = ?")
            params.append(query.name)
        if query.outcome is not None:
            where.append("t.outcome = ?")
            params.append(query.outcome)
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
