"""The store interface: where the ledger, budgets' spend and reservations, grants and threshold
events live.

A store is chosen by URI (``memory://``, ``sqlite:///path.db``, ``redis://host:port/db``). Every
backend implements this one interface and passes the same conformance suite
(``tests/stores/``). Money is integer nano-dollars; every method is atomic on its own, and
:meth:`Store.admit` is atomic across all the budgets of one call (all or nothing).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from ..budgets import Grant
from ..records import CallRecord, TaskRecord

__all__ = [
    "CALL_FIELDS",
    "TASK_FIELDS",
    "Admission",
    "CallQuery",
    "CallTotals",
    "Charge",
    "Standing",
    "Store",
    "TaskQuery",
    "TaskTotals",
    "group_key",
]

BudgetKey = tuple[str, str]
"""(budget name, period window id)"""


@dataclass(frozen=True)
class Charge:
    """One budget's part of a call's admission."""

    budget: str
    window: str
    cap_nano: int
    """The hard cap before grants (limit * hard_at); the store adds the budget's active grants."""
    estimate_nano: int
    """The call's pre-call upper bound, reserved if admitted."""
    block_nano: int | None = None
    """Refuse when committed spend has reached this plus the budget's active grants (a budget in
    review with ``review_action="block"``: an approved exception lifts the block too)."""
    window_end: datetime | None = None
    """When the period ends (a store may expire the window's data some time after)."""

    @property
    def key(self) -> BudgetKey:
        return (self.budget, self.window)


@dataclass(frozen=True)
class Standing:
    """A budget window as a store sees it."""

    spent_nano: int = 0
    reserved_nano: int = 0
    """Active (unexpired) reservations of calls in flight."""
    grant_nano: int = 0
    """Active grants of the budget."""
    refused: bool = False
    """A call was refused in this window since the budget's last grant."""


@dataclass(frozen=True)
class Admission:
    """The outcome of :meth:`Store.admit`: one standing per charge, as found before this call."""

    standings: tuple[Standing, ...]
    refused_index: int | None = None
    """The first charge that refused the call (nothing was reserved), or ``None`` if admitted."""
    refused_reason: str | None = None
    """``"cap"`` (the hard cap) or ``"review"`` (a budget in review that blocks)."""

    @property
    def admitted(self) -> bool:
        return self.refused_index is None


@dataclass(frozen=True)
class CallQuery:
    """Filters of :meth:`Guard.records`; ``None`` means any. ``tags`` matches a subset."""

    since: datetime | None = None
    until: datetime | None = None
    tags: Mapping[str, str] | None = None
    model: str | None = None
    task_id: str | None = None
    status: str | None = None

    def matches(self, r: CallRecord) -> bool:
        if self.since is not None and r.time < self.since:
            return False
        if self.until is not None and r.time >= self.until:
            return False
        if self.model is not None and self.model not in (r.request_model, r.response_model):
            return False
        if self.task_id is not None and r.task_id != self.task_id:
            return False
        if self.status is not None and r.status != self.status:
            return False
        return self.tags is None or all(r.tags.get(k) == v for k, v in self.tags.items())


@dataclass(frozen=True)
class TaskQuery:
    """Filters of :meth:`Guard.tasks`; ``None`` means any. ``tags`` matches a subset."""

    since: datetime | None = None
    until: datetime | None = None
    name: str | None = None
    tags: Mapping[str, str] | None = None
    outcome: str | None = None

    def matches(self, t: TaskRecord) -> bool:
        if self.since is not None and t.started_at < self.since:
            return False
        if self.until is not None and t.started_at >= self.until:
            return False
        if self.name is not None and t.name != self.name:
            return False
        if self.outcome is not None and t.outcome != self.outcome:
            return False
        return self.tags is None or all(t.tags.get(k) == v for k, v in self.tags.items())


# -- aggregation (reports) -------------------------------------------------------------------------

BUCKETS = ("day", "week", "month")
CALL_FIELDS = ("model", "request_model", "provider", "api", "operation", "status", "task", *BUCKETS)
"""What calls can be grouped by, besides tag keys. ``model`` is the model that billed (the
response's model, else the requested one); ``task`` is the task's name; ``day`` / ``week``
(from Monday) / ``month`` are calendar buckets of the call's start, in UTC."""
TASK_FIELDS = ("task", "outcome", "model", *BUCKETS)
"""What tasks can be grouped by, besides tag keys. ``model`` is the model that carried most of the
task's cost (``None`` for a task without priced calls); buckets are of the task's start."""


def group_key(key: str, fields: Sequence[str]) -> tuple[str, str]:
    """``("field", name)`` or ``("tag", key)``; ``"tag:<key>"`` names a tag that shares a field's name."""
    if key.startswith("tag:"):
        return ("tag", key[4:])
    return ("field", key) if key in fields else ("tag", key)


def bucket(kind: str, t: datetime) -> str:
    """The calendar bucket of ``t`` (UTC): ``2026-11-29``, ``2026-11-23`` (the week's Monday), ``2026-11``."""
    t = t.astimezone(timezone.utc)
    if kind == "month":
        return f"{t.year:04d}-{t.month:02d}"
    day = t.date()
    if kind == "week":
        day -= timedelta(days=day.weekday())
    return day.isoformat()


@dataclass
class CallTotals:
    """The calls of one group: counts, tokens and exact cost. ``key`` holds one value per grouping
    key, ``None`` where a call does not carry the tag (unattributed)."""

    key: tuple[str | None, ...]
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)
    unpriced_calls: int = 0
    """Calls with ``cost_usd=None`` (price unknown): counted, never as 0 silently."""
    error_calls: int = 0
    blocked_calls: int = 0

    def add(self, r: CallRecord) -> None:
        self.calls += 1
        self.input_tokens += r.input_tokens
        self.output_tokens += r.output_tokens
        self.cache_read_tokens += r.cache_read_tokens
        self.cache_write_tokens += r.cache_write_tokens
        self.reasoning_tokens += r.reasoning_tokens
        if r.cost_usd is None:
            self.unpriced_calls += 1
        else:
            self.cost_usd += r.cost_usd
        self.error_calls += r.status == "error"
        self.blocked_calls += r.status == "blocked"


@dataclass
class TaskTotals:
    """The finished tasks of one group: outcomes, reviews, and the calls and cost inside them."""

    key: tuple[str | None, ...]
    tasks: int = 0
    succeeded: int = 0
    failed: int = 0
    reviewed: int = 0
    accepted: int = 0
    edit_distance_sum: float = 0.0
    edit_distance_count: int = 0
    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: Decimal = field(default_factory=Decimal)

    def add(self, t: TaskRecord, tokens: tuple[int, int] = (0, 0)) -> None:
        self.tasks += 1
        self.succeeded += t.outcome == "succeeded"
        self.failed += t.outcome == "failed"
        if t.accepted is not None:
            self.reviewed += 1
            self.accepted += t.accepted
        if t.edit_distance is not None:
            self.edit_distance_sum += t.edit_distance
            self.edit_distance_count += 1
        self.calls += t.calls
        self.input_tokens += tokens[0]
        self.output_tokens += tokens[1]
        self.cost_usd += t.cost_usd


def _call_value(r: CallRecord, key: tuple[str, str]) -> str | None:
    kind, name = key
    if kind == "tag":
        return r.tags.get(name)
    if name == "model":
        return r.response_model or r.request_model
    if name == "task":
        return r.task_name
    if name in BUCKETS:
        return bucket(name, r.time)
    value = getattr(r, name)
    return None if value is None else str(value)


def _sorted(groups: Mapping[tuple[str | None, ...], Any]) -> list[Any]:
    """Groups in key order, ``None`` (unattributed) after every value."""
    return sorted(groups.values(), key=lambda g: tuple((v is None, v or "") for v in g.key))


@dataclass(frozen=True)
class Review:
    """A human review of a task's result."""

    accepted: bool
    edit_distance: float | None
    reviewer: str | None


class Store(ABC):
    """One backend. Methods are thread-safe; the store owns the exactness of money (``Decimal``)."""

    @abstractmethod
    def calls(self, query: CallQuery) -> Iterator[CallRecord]:
        """The ledger's calls matching ``query``, oldest first."""

    @abstractmethod
    def append_task(self, record: TaskRecord) -> None:
        """Record a finished task (its calls and cost are summed from the ledger when read)."""

    @abstractmethod
    def review_task(self, task_id: str, review: Review) -> None:
        """Attach a review to a task (finished or still running)."""

    @abstractmethod
    def has_task(self, task_id: str) -> bool:
        """Whether a finished task with this id is recorded."""

    @abstractmethod
    def tasks(self, query: TaskQuery) -> Iterator[TaskRecord]:
        """Finished tasks matching ``query``, oldest first, with their reviews, calls and cost."""

    # -- aggregation ---------------------------------------------------------------------------

    def call_totals(self, query: CallQuery, by: Sequence[str]) -> list[CallTotals]:
        """The calls matching ``query``, grouped by ``by`` (tag keys and :data:`CALL_FIELDS`), one
        :class:`CallTotals` per group sorted by key (unattributed last). The groups add up exactly
        to the calls matched. This default reads every call; a store may aggregate in place."""
        keys = [group_key(k, CALL_FIELDS) for k in by]
        groups: dict[tuple[str | None, ...], CallTotals] = {}
        for r in self.calls(query):
            k = tuple(_call_value(r, key) for key in keys)
            g = groups.get(k)
            if g is None:
                g = groups[k] = CallTotals(k)
            g.add(r)
        return _sorted(groups)

    def task_totals(self, query: TaskQuery, by: Sequence[str]) -> list[TaskTotals]:
        """The finished tasks matching ``query``, grouped by ``by`` (tag keys and
        :data:`TASK_FIELDS`), like :meth:`call_totals`; with the tokens of their calls."""
        keys = [group_key(k, TASK_FIELDS) for k in by]
        inside = self._task_calls(query)

        def value(t: TaskRecord, key: tuple[str, str]) -> str | None:
            kind, name = key
            if kind == "tag":
                return t.tags.get(name)
            if name == "task":
                return t.name
            if name == "model":
                return inside[t.id][0] if t.id in inside else None
            if name in BUCKETS:
                return bucket(name, t.started_at)
            return str(getattr(t, name))

        groups: dict[tuple[str | None, ...], TaskTotals] = {}
        for t in self.tasks(query):
            k = tuple(value(t, key) for key in keys)
            g = groups.get(k)
            if g is None:
                g = groups[k] = TaskTotals(k)
            _, input_tokens, output_tokens = inside.get(t.id, (None, 0, 0))
            g.add(t, (input_tokens, output_tokens))
        return _sorted(groups)

    def _task_calls(self, query: TaskQuery) -> dict[str, tuple[str | None, int, int]]:
        """Per task id: the model that carried most of its cost, and its calls' input and output tokens.
        (A task's calls start after the task does, so calls since ``query.since`` hold them all.)"""
        costs: dict[str, dict[str, Decimal]] = {}
        tokens: dict[str, tuple[int, int]] = {}
        for c in self.calls(CallQuery(since=query.since)):
            if not c.task_id:
                continue
            i, o = tokens.get(c.task_id, (0, 0))
            tokens[c.task_id] = (i + c.input_tokens, o + c.output_tokens)
            if c.cost_usd:
                per = costs.setdefault(c.task_id, {})
                model = c.response_model or c.request_model
                per[model] = per.get(model, Decimal(0)) + c.cost_usd
        return {
            task_id: ((max(costs[task_id], key=lambda m: costs[task_id][m]) if task_id in costs else None), i, o)
            for task_id, (i, o) in tokens.items()
        }

    # -- budgets -------------------------------------------------------------------------------

    @abstractmethod
    def admit(self, reservation_id: str, charges: Sequence[Charge], now: datetime, ttl_s: float) -> Admission:
        """Atomically, for all ``charges`` or none: admit when every budget has room
        (``spent + reserved + estimate <= cap + grants``, and not blocked in review), reserving
        each estimate under ``reservation_id`` until ``now + ttl_s``; otherwise mark the first
        refusing window as refused and reserve nothing. Expired reservations do not count."""

    @abstractmethod
    def settle(
        self,
        reservation_id: str | None,
        keys: Sequence[BudgetKey],
        cost_nano: int,
        record: CallRecord,
        now: datetime,
    ) -> tuple[Standing, ...]:
        """Atomically commit ``cost_nano`` to each budget window in ``keys``, release the
        reservation (if still held) and append ``record`` to the ledger. Returns the standings at
        ``now``, after the commit, one per key."""

    @abstractmethod
    def refresh(self, reservation_id: str, keys: Sequence[BudgetKey], now: datetime, ttl_s: float) -> None:
        """Keep a reservation alive until ``now + ttl_s`` (a long stream still being read)."""

    @abstractmethod
    def standing(self, key: BudgetKey, now: datetime) -> Standing:
        """The current standing of one budget window."""

    @abstractmethod
    def add_grant(self, grant: Grant) -> None:
        """Store a grant; the budget's refused flags are cleared (its cap was raised)."""

    @abstractmethod
    def revoke_grant(self, grant_id: str) -> Grant | None:
        """Revoke a grant; returns it (revoked) or ``None`` if no such grant exists."""

    @abstractmethod
    def grants(self, budget: str | None = None) -> list[Grant]:
        """Every grant (active, expired and revoked), oldest first, optionally of one budget."""

    @abstractmethod
    def claim_event(self, key: BudgetKey, kind: str) -> bool:
        """True for the first claim of ``kind`` (e.g. ``"alert"``) in a budget window across every
        process sharing the store; False afterwards. Makes threshold events fire once."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""
