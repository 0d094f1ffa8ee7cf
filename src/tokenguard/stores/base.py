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
from dataclasses import dataclass
from datetime import datetime

from ..budgets import Grant
from ..records import CallRecord, TaskRecord

__all__ = ["Admission", "CallQuery", "Charge", "Standing", "Store", "TaskQuery"]

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
