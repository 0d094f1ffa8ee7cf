"""``redis://host:port/db`` and ``rediss://``: one Redis (7.0+) or Valkey shared by every process of
a fleet, so budgets hold across pods and reports read one ledger.

URI: ``redis://[[user]:password@]host[:port][/db][?param=value&...]`` (``rediss://`` for TLS).
Parameters:

* ``prefix`` (default ``tokenguard``): namespaces every key (``{prefix}:...``, see below);
  letters, digits and ``_ . : -``.
* ``retention`` (default 1000000): the ledger stream keeps about this many records (``MAXLEN ~``);
  ``0`` keeps every record.
* ``socket_timeout`` (default 5 s), ``socket_connect_timeout`` (default 2 s), ``max_connections``,
  ``health_check_interval``, ``client_name``; with ``rediss://`` also ``ssl_cert_reqs``
  (``none``/``optional``/``required``), ``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``,
  ``ssl_check_hostname``.

The URI is validated when the store is built; the connection is made lazily, on first use, from a
thread-safe connection pool (and re-made after a fork or a server restart). Commands are not
retried: a settle whose reply was lost may have been applied, and applying it twice would count
the spend twice. Errors are raised as :class:`RedisStoreError` naming the store without its
password.

Key layout (``P`` is ``{prefix}``: the braces are a Redis Cluster hash tag, so every key of one
store lives in one slot and every script's keys are co-located):

* ``P:w:<budget>:<window>`` (hash): ``spent`` and ``reserved`` (integer nano-dollars, ``HINCRBY``),
  ``r:<reservation id>`` (each reservation's amount), ``refused`` (the grant generation of the
  budget when a call was refused), ``e:<kind>`` (threshold events claimed), ``at`` (the expiry
  last set on the window's keys, so admissions set it once, not every time).
* ``P:x:<budget>:<window>`` (sorted set): reservation ids scored by their expiry (µs since epoch),
  and a member ``''`` scored ``+inf`` so that the set, when empty, is not deleted with its expiry.
  Both window keys expire 7 days after the period ends, and at least 7 days from the admission
  (``total`` windows never expire); a window hash that a settle or an event creates before any
  admission gets a 400-day fallback expiry.
* ``P:g:<budget>`` (hash): ``g:<grant id>`` -> ``"<nano> <created µs> <expires µs>"`` for grants
  not revoked, and ``gen``, bumped by every new grant (clears the budget's refused flags).
* ``P:grants`` (hash, grant id -> JSON) and ``P:grants:order`` (sorted set): every grant, ever.
* ``P:ledger`` (stream): one entry per call record, field ``r`` = the record's JSON (defaults left
  out, ``Decimal`` as a string, so costs round-trip exactly). Server memory per record is its JSON
  plus 50-100 bytes (``MEMORY USAGE`` over 10,000 records, Redis 7.0): about 245 bytes for a bare
  record, about 660 bytes for a typical governed call (three tags, a task, a response id, two
  budget decisions). The default retention of 1,000,000 records thus holds 0.25-0.66 GB; size
  ``retention`` to the history your reports need. Use a ``noeviction`` memory policy: evicted budget
  keys would forget spend.
* ``P:tasks`` (hash, id -> JSON), ``P:tasks:order`` (sorted set), ``P:reviews`` (hash, id -> JSON),
  ``P:t:<task id>`` (hash): a task's ``calls`` and exact cost as base-10⁹ limbs ``d<k>`` (the sum of
  ``limb * 10**(9k)``) plus ``exp``, the smallest exponent of its costs, so a task's ``cost_usd`` is
  the exact ``Decimal`` sum of its calls' costs, independent of the ledger's retention. The totals
  of a task still running expire 30 days after its last call; a finished task's are kept.

Admission is one Lua script (one round trip, ``EVALSHA``): it drops the expired reservations of
each window, sums spent, reserved and the budget's active grants, and either reserves in every
window or marks the first refusing one. Settle is one script too: commit, release, ``XADD`` to the
ledger, task totals, standings. Comparisons inside Lua use doubles: exact while a window's sums stay
below 2**53 nano-dollars (about $9M); the stored amounts are 64-bit integers either way. The ledger
is read with ``XRANGE`` in batches and filtered in Python (no secondary index): a report reads the
whole retained stream.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import parse_qsl, unquote, urlsplit

from ..budgets import Grant, to_nano
from ..errors import ConfigError, StoreError
from ..records import CallRecord, TaskRecord
from .base import Admission, BudgetKey, CallQuery, Charge, Review, Standing, Store, TaskQuery

if TYPE_CHECKING:
    import redis

__all__ = ["RedisStore", "RedisStoreError"]

DEFAULT_PREFIX = "tokenguard"
DEFAULT_RETENTION = 1_000_000
WINDOW_GRACE = timedelta(days=7)
"""How long a budget window's keys outlive the period's end (late settles, last period's standing)."""
FALLBACK_TTL = timedelta(days=400)
"""Expiry of window keys created before any admission set the real one (longer than any period)."""
TASK_TTL = timedelta(days=30)
"""A running task's totals expire this long after its last call unless the task is recorded."""

_FALLBACK_TTL_MS = int(FALLBACK_TTL.total_seconds() * 1000)
_TASK_TTL_S = int(TASK_TTL.total_seconds())
_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_US = timedelta(microseconds=1)
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]{1,100}")
_BATCH = 1000
_LIMB = 10**9


class RedisStoreError(StoreError):
    """A Redis store operation failed (unreachable server, wrong credentials, a refused command).

    The message names the store by its URI with the password masked."""


@dataclass(frozen=True)
class _Settings:
    display: str
    host: str
    port: int
    db: int
    username: str | None
    password: str | None
    ssl: bool
    prefix: str
    retention: int
    options: dict[str, Any]


def _positive_float(name: str) -> Any:
    def parse(value: str) -> float:
        result = float(value)
        if not result > 0 or result == float("inf"):
            raise ValueError
        return result

    parse.__name__ = f"a number of seconds > 0 ({name})"
    return parse


def _int_at_least(low: int) -> Any:
    def parse(value: str) -> int:
        result = int(value)
        if result < low:
            raise ValueError
        return result

    parse.__name__ = f"an integer >= {low}"
    return parse


def _boolean(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError


_boolean.__name__ = "true or false"


def _cert_reqs(value: str) -> str:
    if value not in ("none", "optional", "required"):
        raise ValueError
    return value


_cert_reqs.__name__ = "none, optional or required"


def _name(value: str) -> str:
    if not value or any(c.isspace() for c in value):
        raise ValueError
    return value


_name.__name__ = "a name without spaces"


def _path(value: str) -> str:
    if not value:
        raise ValueError
    return value


_path.__name__ = "a file path"

_CLIENT_PARAMS: dict[str, Any] = {
    "socket_timeout": _positive_float("socket_timeout"),
    "socket_connect_timeout": _positive_float("socket_connect_timeout"),
    "max_connections": _int_at_least(1),
    "health_check_interval": _int_at_least(0),
    "client_name": _name,
}
_SSL_PARAMS: dict[str, Any] = {
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": _path,
    "ssl_certfile": _path,
    "ssl_keyfile": _path,
    "ssl_check_hostname": _boolean,
}


def _mask(uri: str) -> str:
    """``uri`` with its password (if any) replaced by ``***``."""
    try:
        parts = urlsplit(uri)
        if parts.password is None:
            return uri
        host = parts.netloc.rpartition("@")[2]
        user = parts.username or ""
        return parts._replace(netloc=f"{user}:***@{host}").geturl()
    except ValueError:
        return "<a redis URI that cannot be parsed>"


def _parse(uri: str) -> _Settings:
    display = _mask(uri)

    def bad(what: str) -> ConfigError:
        return ConfigError(f"store URI {display!r} is invalid: {what}")

    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise bad(str(exc)) from None
    if parts.scheme not in ("redis", "rediss"):
        raise bad("the scheme must be redis:// or rediss://")
    if parts.fragment:
        raise bad("a '#' fragment is not allowed")
    try:
        port = parts.port or 6379
    except ValueError:
        raise bad("the port must be a number from 1 to 65535, e.g. redis://localhost:6379/0") from None
    host = parts.hostname or "localhost"
    path = parts.path.strip("/")
    if not path:
        db = 0
    elif path.isdigit() and path.isascii():
        db = int(path)
    else:
        raise bad(f"the database must be a number, e.g. redis://{host}:{port}/0 (got {parts.path!r})")
    ssl = parts.scheme == "rediss"
    known = {"prefix", "retention", *_CLIENT_PARAMS, *(_SSL_PARAMS if ssl else ())}
    params: dict[str, str] = {}
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise bad("the query must be name=value pairs joined by '&'") from None
    for name, value in pairs:
        if name not in known:
            hint = " (TLS options need rediss://)" if name in _SSL_PARAMS else ""
            raise bad(f"unknown parameter {name!r}{hint}; supported: {', '.join(sorted(known))}")
        if name in params:
            raise bad(f"parameter {name!r} is given twice")
        params[name] = value
    prefix = params.pop("prefix", DEFAULT_PREFIX)
    if _PREFIX_RE.fullmatch(prefix) is None:
        raise bad(f"prefix {prefix!r} must be 1-100 letters, digits or _ . : -")
    retention_text = params.pop("retention", str(DEFAULT_RETENTION))
    try:
        retention = int(retention_text)
        if retention < 0:
            raise ValueError
    except ValueError:
        raise bad(
            f"retention must be a whole number of ledger records >= 0 (0 keeps all), got {retention_text!r}"
        ) from None
    options: dict[str, Any] = {"socket_timeout": 5.0, "socket_connect_timeout": 2.0}
    parsers = {**_CLIENT_PARAMS, **_SSL_PARAMS}
    for name, value in params.items():
        parser = parsers[name]
        try:
            options[name] = parser(value)
        except ValueError:
            raise bad(f"{name} must be {parser.__name__}, got {value!r}") from None
    return _Settings(
        display=display,
        host=host,
        port=port,
        db=db,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        ssl=ssl,
        prefix=prefix,
        retention=retention,
        options=options,
    )


# -- time and money --------------------------------------------------------------------------------


def _us(dt: datetime) -> int:
    """Microseconds since the epoch, exact for aware datetimes (naive ones are local time)."""
    if dt.tzinfo is None:
        return round(dt.timestamp() * 1_000_000)
    return (dt - _EPOCH) // _US


def _cost_limbs(cost: Decimal) -> tuple[int, list[tuple[int, int]]]:
    """``cost`` as its exponent and base-10⁹ limbs ``(k, v)`` with ``cost == sum(v * 10**(9k))``."""
    sign, digits, exponent = cost.as_tuple()
    if not isinstance(exponent, int):
        raise ValueError(f"a call's cost must be a finite number, got {cost!r}")
    mantissa = int("".join(map(str, digits)) or "0")
    k = exponent // 9
    mantissa *= 10 ** (exponent - 9 * k)
    limbs = []
    while mantissa:
        mantissa, value = divmod(mantissa, _LIMB)
        if value:
            limbs.append((k, -value if sign else value))
        k += 1
    return exponent, limbs


def _task_cost(totals: dict[str, str]) -> Decimal:
    """The exact sum of a task's costs from its limbs, with the exponent a ``Decimal`` sum has."""
    limbs = {int(f[1:]): int(v) for f, v in totals.items() if f.startswith("d")}
    exponent = min(0, int(totals.get("exp", 0)))
    if not limbs:
        return Decimal(f"0E{exponent}")
    low = min(limbs)
    units = sum(v * 10 ** (9 * (k - low)) for k, v in limbs.items())  # of 10**(9 * low)
    shift = exponent - 9 * low
    if shift >= 0 and units % 10**shift == 0:
        return Decimal(f"{units // 10**shift}E{exponent}")
    return Decimal(f"{units}E{9 * low}")


def _grant_json(grant: Grant) -> str:
    return json.dumps(
        {
            "id": grant.id,
            "budget": grant.budget,
            "extra_usd": str(grant.extra_usd),
            "approved_by": grant.approved_by,
            "reason": grant.reason,
            "created_at": grant.created_at.isoformat(),
            "expires_at": grant.expires_at.isoformat(),
            "revoked": grant.revoked,
        },
        separators=(",", ":"),
    )


def _grant_from(text: str) -> Grant:
    d = json.loads(text)
    return Grant(
        id=d["id"],
        budget=d["budget"],
        extra_usd=Decimal(d["extra_usd"]),
        approved_by=d["approved_by"],
        reason=d["reason"],
        created_at=datetime.fromisoformat(d["created_at"]),
        expires_at=datetime.fromisoformat(d["expires_at"]),
        revoked=bool(d["revoked"]),
    )


def _review_json(review: Review) -> str:
    return json.dumps(
        {"accepted": review.accepted, "edit_distance": review.edit_distance, "reviewer": review.reviewer},
        separators=(",", ":"),
    )


# -- Lua -------------------------------------------------------------------------------------------
# Amounts travel as decimal strings and are changed with HINCRBY (64-bit exact); Lua numbers are only
# compared, or formatted with %.0f (exact below 2**53), never with tostring (14 digits). Replies pack
# each budget window's figures into one string: fewer RESP elements to parse on the hot path.

_LUA_COMMON = """
local function negate(s)
  if string.sub(s, 1, 1) == '-' then return string.sub(s, 2) end
  return '-' .. s
end

-- Drop reservation r's amount (already read: amount, or false) from window hash w.
local function release(w, r, amount)
  if amount then
    redis.call('HDEL', w, 'r:' .. r)
    if amount ~= '0' then redis.call('HINCRBY', w, 'reserved', negate(amount)) end
  end
end

-- The active grants of a budget at now (µs) and its grant generation.
local function grants(g, now)
  local sum, gen = 0, '0'
  local h = redis.call('HGETALL', g)
  for j = 1, #h, 2 do
    if h[j] == 'gen' then
      gen = h[j + 1]
    else
      local amount, from, to = string.match(h[j + 1], '^(%S+) (%S+) (%S+)$')
      if amount and tonumber(from) <= now and now < tonumber(to) then sum = sum + tonumber(amount) end
    end
  end
  return sum, gen
end

-- The sum of the reservations in window (w, x) that have expired at now but are still held.
local function expired(w, x, now)
  local sum = 0
  for _, r in ipairs(redis.call('ZRANGEBYSCORE', x, '-inf', now)) do
    local amount = redis.call('HGET', w, 'r:' .. r)
    if amount then sum = sum + tonumber(amount) end
  end
  return sum
end

local function int(n)
  return string.format('%.0f', n)
end
"""

_ADMIT = (
    _LUA_COMMON
    + """
-- KEYS: per charge, its window hash, reservation set and budget grants hash.
-- ARGV: reservation id, now (µs), expiry (µs), then per charge "estimate cap block expire_at" (block
--       '-' = none; expire_at: the window keys' expiry in ms since the epoch, '-' = never).
-- Reply: refusing charge (1-based, 0 = admitted), reason, then per charge "spent reserved grants
--        refused" as found (after dropping expired reservations).
-- The window hash remembers the expiry set on both window keys (field 'at'); the reservation set keeps
-- a member '' scored +inf so that it is never deleted when empty and keeps its expiry.
local rid, now, expires = ARGV[1], tonumber(ARGV[2]), ARGV[3]
local n = #KEYS / 3
local out, gens, est, at, had = {0, ''}, {}, {}, {}, {}
local refused, reason = 0, ''
for i = 1, n do
  local w, x, g = KEYS[3 * i - 2], KEYS[3 * i - 1], KEYS[3 * i]
  local e, cap, block, a = string.match(ARGV[3 + i], '^(%S+) (%S+) (%S+) (%S+)$')
  est[i], at[i] = e, a
  local gone = redis.call('ZRANGEBYSCORE', x, '-inf', now)
  if #gone > 0 then
    for _, r in ipairs(gone) do release(w, r, redis.call('HGET', w, 'r:' .. r)) end
    redis.call('ZREMRANGEBYSCORE', x, '-inf', now)
  end
  local h = redis.call('HMGET', w, 'spent', 'reserved', 'refused', 'at')
  local spent, reserved = h[1] or '0', h[2] or '0'
  local grant, gen = grants(g, now)
  gens[i], had[i] = gen, h[4]
  out[i + 2] = spent .. ' ' .. reserved .. ' ' .. int(grant) .. ((h[3] == gen) and ' 1' or ' 0')
  if refused == 0 then
    local s = tonumber(spent)
    if block ~= '-' and s >= tonumber(block) + grant then
      refused, reason = i, 'review'
    elseif s + tonumber(reserved) + tonumber(e) > tonumber(cap) + grant then
      refused, reason = i, 'cap'
    end
  end
end
local function expire(i)
  local w, x, a = KEYS[3 * i - 2], KEYS[3 * i - 1], at[i]
  if had[i] == a then return end
  redis.call('ZADD', x, '+inf', '')
  if a == '-' then
    redis.call('PERSIST', w)
    redis.call('PERSIST', x)
  else
    redis.call('PEXPIREAT', w, a)
    redis.call('PEXPIREAT', x, a)
  end
  redis.call('HSET', w, 'at', a)
end
if refused > 0 then
  redis.call('HSET', KEYS[3 * refused - 2], 'refused', gens[refused])
  expire(refused)
else
  for i = 1, n do
    local w, x = KEYS[3 * i - 2], KEYS[3 * i - 1]
    if redis.call('ZADD', x, expires, rid) == 0 then  -- an id admitted again replaces its reservation
      release(w, rid, redis.call('HGET', w, 'r:' .. rid))
    end
    redis.call('HSET', w, 'r:' .. rid, est[i])
    if est[i] ~= '0' then redis.call('HINCRBY', w, 'reserved', est[i]) end
    expire(i)
  end
end
out[1], out[2] = refused, reason
return out
"""
)

_SETTLE = (
    _LUA_COMMON
    + """
-- KEYS: ledger stream, tasks hash, the task's totals hash, then per budget window: window hash,
--       reservation set, budget grants hash.
-- ARGV: [1] reservation id ('' = none), [2] cost (nano), [3] now (µs), [4] record JSON,
--       [5] ledger MAXLEN ('0' = unbounded), [6] task id ('' = none), [7] running task TTL (s),
--       [8] the cost's exponent ('' = none), [9] fallback window TTL (ms), [10] per window '1' to
--       give its hash the fallback TTL if no admission set one, '0' not to, then the cost's limbs as
--       (field, value) pairs.
-- Reply: per window "spent reserved released expired grants refused" where spent and reserved are
--        from before this commit and released is the amount of the reservation released.
local rid, cost, now = ARGV[1], ARGV[2], tonumber(ARGV[3])
local n = (#KEYS - 3) / 3
local out = {}
for i = 1, n do
  local w, x, g = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  local h = redis.call('HMGET', w, 'spent', 'reserved', 'refused', 'at', 'r:' .. rid)
  if h[5] then
    release(w, rid, h[5])
    redis.call('ZREM', x, rid)
  end
  if cost ~= '0' then redis.call('HINCRBY', w, 'spent', cost) end
  if not h[4] and string.sub(ARGV[10], i, i) == '1' then redis.call('PEXPIRE', w, ARGV[9], 'NX') end
  local grant, gen = grants(g, now)
  out[i] = (h[1] or '0') .. ' ' .. (h[2] or '0') .. ' ' .. (h[5] or '0') .. ' ' .. int(expired(w, x, now)) .. ' '
    .. int(grant) .. ((h[3] == gen) and ' 1' or ' 0')
end
if ARGV[5] == '0' then
  redis.call('XADD', KEYS[1], '*', 'r', ARGV[4])
else
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[5], '*', 'r', ARGV[4])
end
local task = ARGV[6]
if task ~= '' then
  local t = KEYS[3]
  redis.call('HINCRBY', t, 'calls', 1)
  for j = 11, #ARGV, 2 do redis.call('HINCRBY', t, ARGV[j], ARGV[j + 1]) end
  if ARGV[8] ~= '' then
    local e = redis.call('HGET', t, 'exp')
    if not e or tonumber(ARGV[8]) < tonumber(e) then redis.call('HSET', t, 'exp', ARGV[8]) end
  end
  if redis.call('HEXISTS', KEYS[2], task) == 0 then redis.call('EXPIRE', t, ARGV[7]) end
end
return out
"""
)

_STANDING = (
    _LUA_COMMON
    + """
-- KEYS: window hash, reservation set, budget grants hash. ARGV: now (µs).
-- Reply: "spent held expired grants refused" (the reserved amount is held - expired).
local now = tonumber(ARGV[1])
local h = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'refused')
local grant, gen = grants(KEYS[3], now)
return (h[1] or '0') .. ' ' .. (h[2] or '0') .. ' ' .. int(expired(KEYS[1], KEYS[2], now)) .. ' ' .. int(grant)
  .. ((h[3] == gen) and ' 1' or ' 0')
"""
)

_APPEND_TASK = """
-- KEYS: tasks hash, tasks order, the task's totals. ARGV: task id, JSON.
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
  redis.call('ZADD', KEYS[2], redis.call('ZCARD', KEYS[2]), ARGV[1])
end
redis.call('PERSIST', KEYS[3])
return 1
"""


@dataclass(frozen=True)
class _Script:
    source: str
    sha: str

    @classmethod
    def of(cls, source: str) -> _Script:
        return cls(source, hashlib.sha1(source.encode()).hexdigest())  # Redis names scripts by SHA1


_ADMIT_SCRIPT = _Script.of(_ADMIT)
_SETTLE_SCRIPT = _Script.of(_SETTLE)
_STANDING_SCRIPT = _Script.of(_STANDING)
_APPEND_TASK_SCRIPT = _Script.of(_APPEND_TASK)


def _standing(text: str) -> Standing:
    spent, held, expired, grant, refused = text.split()
    return Standing(int(spent), int(held) - int(expired), int(grant), refused == "1")


class RedisStore(Store):
    """The Redis (or Valkey) backend; see the module documentation for the layout and URI."""

    def __init__(self, uri: str) -> None:
        self._settings = settings = _parse(uri)
        try:
            import redis as redis_module
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError:
            raise ConfigError(
                f"store URI {settings.display!r} needs the redis package: pip install 'tokenguard[redis]'"
            ) from None
        self._redis_errors: tuple[type[Exception], ...] = (redis_module.RedisError, OSError)
        self._client: redis.Redis = redis_module.Redis(
            host=settings.host,
            port=settings.port,
            db=settings.db,
            username=settings.username,
            password=settings.password,
            ssl=settings.ssl,
            decode_responses=True,
            retry=Retry(NoBackoff(), 0),
            **settings.options,
        )
        p = "{" + settings.prefix + "}"
        self._p = p
        self._ledger = f"{p}:ledger"
        self._tasks = f"{p}:tasks"
        self._tasks_order = f"{p}:tasks:order"
        self._reviews = f"{p}:reviews"
        self._grants = f"{p}:grants"
        self._grants_order = f"{p}:grants:order"
        self._no_script: type[Exception] = redis_module.exceptions.NoScriptError

    @classmethod
    def from_uri(cls, uri: str) -> RedisStore:
        """A store for ``uri``, validated now and connected on first use (raises ConfigError)."""
        return cls(uri)

    def __repr__(self) -> str:
        return f"RedisStore({self._settings.display!r})"

    @property
    def prefix(self) -> str:
        """The ``prefix`` parameter; keys are named ``{prefix}:...``."""
        return self._settings.prefix

    @property
    def retention(self) -> int:
        """How many ledger records the stream keeps (about; 0 = all)."""
        return self._settings.retention

    # -- plumbing ------------------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        try:
            yield
        except self._redis_errors as exc:
            raise self._error(exc, what) from exc

    def _error(self, exc: Exception, what: str) -> RedisStoreError:
        from redis.exceptions import AuthenticationError, AuthorizationError, ResponseError
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        s = self._settings
        detail = str(exc) or type(exc).__name__
        if s.password:
            detail = detail.replace(s.password, "***")
        if isinstance(exc, (AuthenticationError, AuthorizationError)) or "WRONGPASS" in detail or "NOAUTH" in detail:
            hint = "authentication failed: check the user name and password in the store URI"
        elif isinstance(exc, RedisTimeoutError):
            hint = (
                f"timed out (socket_connect_timeout={s.options['socket_connect_timeout']} s, "
                f"socket_timeout={s.options['socket_timeout']} s)"
            )
        elif isinstance(exc, (RedisConnectionError, OSError)):
            hint = f"cannot reach the server at {s.host}:{s.port}"
        elif isinstance(exc, ResponseError):
            hint = "the server refused a command"
        else:
            hint = "the command failed"
        return RedisStoreError(f"redis store {s.display!r}: {what} failed, {hint} ({type(exc).__name__}: {detail})")

    def _eval(self, script: _Script, keys: Sequence[str], args: Sequence[str | int]) -> Any:
        """One EVALSHA (plus a SCRIPT LOAD the first time on a server, or after its restart)."""
        execute: Callable[..., Any] = self._client.execute_command
        try:
            return execute("EVALSHA", script.sha, len(keys), *keys, *args)
        except self._no_script:
            execute("SCRIPT", "LOAD", script.source)
            return execute("EVALSHA", script.sha, len(keys), *keys, *args)

    def _window(self, key: BudgetKey) -> tuple[str, str]:
        budget, window = key
        return f"{self._p}:w:{budget}:{window}", f"{self._p}:x:{budget}:{window}"

    def _budget_grants(self, budget: str) -> str:
        return f"{self._p}:g:{budget}"

    def _task_totals(self, task_id: str) -> str:
        return f"{self._p}:t:{task_id}"

    def _window_keys(self, key: BudgetKey) -> list[str]:
        return [*self._window(key), self._budget_grants(key[0])]

    # -- ledger --------------------------------------------------------------------------------

    def calls(self, query: CallQuery) -> Iterator[CallRecord]:
        """Reads the ledger stream in batches (the first one now, the rest as iterated) and filters
        in Python; records trimmed by ``retention`` are gone."""
        with self._errors("reading the ledger"):
            first = cast("list[tuple[str, dict[str, str]]]", self._client.xrange(self._ledger, "-", "+", _BATCH))
        return self._calls(query, first)

    def _calls(self, query: CallQuery, batch: list[tuple[str, dict[str, str]]]) -> Iterator[CallRecord]:
        while batch:
            for _, fields in batch:
                record = CallRecord.model_validate_json(fields["r"])
                if query.matches(record):
                    yield record
            if len(batch) < _BATCH:
                return
            with self._errors("reading the ledger"):
                batch = cast(
                    "list[tuple[str, dict[str, str]]]",
                    self._client.xrange(self._ledger, f"({batch[-1][0]}", "+", _BATCH),
                )

    def append_task(self, record: TaskRecord) -> None:
        with self._errors("recording a task"):
            self._eval(
                _APPEND_TASK_SCRIPT,
                [self._tasks, self._tasks_order, self._task_totals(record.id)],
                [record.id, record.model_dump_json()],
            )

    def review_task(self, task_id: str, review: Review) -> None:
        with self._errors("recording a review"):
            self._client.hset(self._reviews, task_id, _review_json(review))

    def has_task(self, task_id: str) -> bool:
        with self._errors("looking up a task"):
            return bool(self._client.hexists(self._tasks, task_id))

    def tasks(self, query: TaskQuery) -> Iterator[TaskRecord]:
        rows: list[TaskRecord] = []
        with self._errors("reading tasks"):
            ids = cast("list[str]", self._client.zrange(self._tasks_order, 0, -1))
            for start in range(0, len(ids), _BATCH):
                batch = ids[start : start + _BATCH]
                pipe = self._client.pipeline(transaction=False)
                pipe.hmget(self._tasks, batch)
                pipe.hmget(self._reviews, batch)
                for task_id in batch:
                    pipe.hgetall(self._task_totals(task_id))
                docs, reviews, *totals = pipe.execute()
                for doc, review, total in zip(docs, reviews, totals, strict=True):
                    if doc is None:
                        continue
                    update: dict[str, object] = {"calls": int(total.get("calls", 0)), "cost_usd": _task_cost(total)}
                    if review is not None:
                        update.update(json.loads(review))
                    rows.append(TaskRecord.model_validate_json(doc).model_copy(update=update))
        return (t for t in rows if query.matches(t))

    # -- budgets -------------------------------------------------------------------------------

    def admit(self, reservation_id: str, charges: Sequence[Charge], now: datetime, ttl_s: float) -> Admission:
        now_us = _us(now)
        keys: list[str] = []
        args: list[str | int] = [reservation_id, now_us, now_us + round(ttl_s * 1_000_000)]
        floor = None
        p = self._p
        for c in charges:
            keys += (f"{p}:w:{c.budget}:{c.window}", f"{p}:x:{c.budget}:{c.window}", f"{p}:g:{c.budget}")
            expire_at = "-"
            if c.window_end is not None:
                if floor is None:  # never expire a window's keys before a grace period from now
                    floor = datetime.now(timezone.utc)
                expire_at = str(_us(max(c.window_end, floor) + WINDOW_GRACE) // 1000)
            block = "-" if c.block_nano is None else c.block_nano
            args.append(f"{c.estimate_nano} {c.cap_nano} {block} {expire_at}")
        with self._errors("admission"):
            out = self._eval(_ADMIT_SCRIPT, keys, args)
        standings = []
        for text in out[2:]:
            spent, reserved, grant, refused = text.split()
            standings.append(Standing(int(spent), int(reserved), int(grant), refused == "1"))
        if out[0]:
            return Admission(tuple(standings), int(out[0]) - 1, out[1])
        return Admission(tuple(standings))

    def settle(
        self,
        reservation_id: str | None,
        keys: Sequence[BudgetKey],
        cost_nano: int,
        record: CallRecord,
        now: datetime,
    ) -> tuple[Standing, ...]:
        """Releases the reservation in the windows of ``keys`` (those it was admitted in)."""
        task = record.task_id
        exponent: str | int = ""
        limbs: list[tuple[int, int]] = []
        if task is not None and record.cost_usd:
            exponent, limbs = _cost_limbs(record.cost_usd)
        redis_keys = [self._ledger, self._tasks, self._task_totals(task or "")]
        for key in keys:
            redis_keys += self._window_keys(key)
        args: list[str | int] = [
            reservation_id or "",
            cost_nano,
            _us(now),
            record.model_dump_json(exclude_defaults=True),
            self._settings.retention,
            task or "",
            _TASK_TTL_S,
            exponent,
            _FALLBACK_TTL_MS,
            "".join("0" if window == "total" else "1" for _, window in keys),
        ]
        for k, value in limbs:
            args += [f"d{k}", value]
        with self._errors("settle"):
            out = self._eval(_SETTLE_SCRIPT, redis_keys, args)
        standings = []
        for text in out:
            spent, held, released, expired, grant, refused = text.split()
            reserved = int(held) - int(released) - int(expired)
            standings.append(Standing(int(spent) + cost_nano, reserved, int(grant), refused == "1"))
        return tuple(standings)

    def refresh(self, reservation_id: str, keys: Sequence[BudgetKey], now: datetime, ttl_s: float) -> None:
        expires = _us(now) + round(ttl_s * 1_000_000)
        with self._errors("refreshing a reservation"):
            pipe = self._client.pipeline(transaction=True)
            for key in keys:
                pipe.zadd(self._window(key)[1], {reservation_id: expires}, xx=True)
            pipe.execute()

    def standing(self, key: BudgetKey, now: datetime) -> Standing:
        with self._errors("reading a budget"):
            return _standing(self._eval(_STANDING_SCRIPT, self._window_keys(key), [_us(now)]))

    def add_grant(self, grant: Grant) -> None:
        doc = _grant_json(grant)
        field = f"g:{grant.id}"
        budget_key = self._budget_grants(grant.budget)
        entry = f"{to_nano(grant.extra_usd)} {_us(grant.created_at)} {_us(grant.expires_at)}"

        def write(pipe: Any) -> None:
            old = pipe.hget(self._grants, grant.id)
            seq = pipe.zcard(self._grants_order)
            pipe.multi()
            pipe.hset(self._grants, grant.id, doc)
            pipe.zadd(self._grants_order, {grant.id: seq}, nx=True)
            if old is not None:
                previous = json.loads(old)["budget"]
                if previous != grant.budget:
                    pipe.hdel(self._budget_grants(previous), field)
            if grant.revoked:
                pipe.hdel(budget_key, field)
            else:
                pipe.hset(budget_key, field, entry)
            pipe.hincrby(budget_key, "gen", 1)  # clears the budget's refused flags

        with self._errors("storing a grant"):
            self._client.transaction(write, self._grants, self._grants_order)

    def revoke_grant(self, grant_id: str) -> Grant | None:
        revoked: list[Grant] = []

        def write(pipe: Any) -> None:
            revoked.clear()
            old = pipe.hget(self._grants, grant_id)
            if old is None:
                return
            grant = replace(_grant_from(old), revoked=True)
            pipe.multi()
            pipe.hset(self._grants, grant_id, _grant_json(grant))
            pipe.hdel(self._budget_grants(grant.budget), f"g:{grant_id}")
            revoked.append(grant)

        with self._errors("revoking a grant"):
            self._client.transaction(write, self._grants)
        return revoked[0] if revoked else None

    def grants(self, budget: str | None = None) -> list[Grant]:
        with self._errors("reading grants"):
            pipe = self._client.pipeline(transaction=True)
            pipe.hgetall(self._grants)
            pipe.zrange(self._grants_order, 0, -1)
            docs, order = pipe.execute()
        rank = {grant_id: i for i, grant_id in enumerate(order)}
        ids = sorted(docs, key=lambda grant_id: rank.get(grant_id, len(rank)))
        found = (_grant_from(docs[grant_id]) for grant_id in ids)
        return [g for g in found if budget is None or g.budget == budget]

    def claim_event(self, key: BudgetKey, kind: str) -> bool:
        window_hash = self._window(key)[0]
        with self._errors("claiming an event"):
            pipe = self._client.pipeline(transaction=True)
            pipe.hsetnx(window_hash, f"e:{kind}", 1)
            if key[1] != "total":
                pipe.pexpire(window_hash, FALLBACK_TTL, nx=True)
            first = pipe.execute()[0]
        return bool(first)

    def close(self) -> None:
        with suppress(*self._redis_errors):
            self._client.close()
