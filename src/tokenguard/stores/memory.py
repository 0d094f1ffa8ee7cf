"""``memory://``: the default store, one process, nothing persisted."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import replace
from datetime import datetime
from decimal import Decimal

from ..budgets import Grant, to_nano
from ..records import CallRecord, TaskRecord
from .base import Admission, BudgetKey, CallQuery, Charge, Review, Standing, Store, TaskQuery

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Keeps everything in dicts behind one lock; per-task totals are kept as calls are appended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[CallRecord] = []
        self._tasks: dict[str, TaskRecord] = {}
        self._reviews: dict[str, Review] = {}
        self._task_totals: dict[str, tuple[int, Decimal]] = {}
        self._spent: dict[BudgetKey, int] = {}
        # reservation id -> {budget window: (amount, expires at (UTC timestamp))}
        self._reservations: dict[str, dict[BudgetKey, tuple[int, float]]] = {}
        self._refused: set[BudgetKey] = set()
        self._grants: dict[str, Grant] = {}
        self._events: set[tuple[BudgetKey, str]] = set()

    # -- ledger --------------------------------------------------------------------------------

    def calls(self, query: CallQuery) -> Iterator[CallRecord]:
        with self._lock:
            snapshot = list(self._calls)
        return (r for r in snapshot if query.matches(r))

    def append_task(self, record: TaskRecord) -> None:
        with self._lock:
            self._tasks[record.id] = record

    def review_task(self, task_id: str, review: Review) -> None:
        with self._lock:
            self._reviews[task_id] = review

    def has_task(self, task_id: str) -> bool:
        with self._lock:
            return task_id in self._tasks

    def tasks(self, query: TaskQuery) -> Iterator[TaskRecord]:
        with self._lock:
            rows = []
            for task in self._tasks.values():
                calls, cost = self._task_totals.get(task.id, (0, Decimal(0)))
                review = self._reviews.get(task.id)
                update: dict[str, object] = {"calls": calls, "cost_usd": cost}
                if review is not None:
                    update.update(
                        accepted=review.accepted, edit_distance=review.edit_distance, reviewer=review.reviewer
                    )
                rows.append(task.model_copy(update=update))
        return (t for t in rows if query.matches(t))

    # -- budgets (callers hold self._lock) -----------------------------------------------------

    def _standing(self, key: BudgetKey, now_ts: float, now: datetime, exclude: str | None = None) -> Standing:
        reserved = 0
        for rid, held in self._reservations.items():
            entry = held.get(key)
            if entry is not None and entry[1] > now_ts and rid != exclude:
                reserved += entry[0]
        grant = sum(to_nano(g.extra_usd) for g in self._grants.values() if g.budget == key[0] and g.active(now))
        return Standing(self._spent.get(key, 0), reserved, grant, key in self._refused)

    def _purge(self, now_ts: float) -> None:
        expired = [rid for rid, held in self._reservations.items() if all(exp <= now_ts for _, exp in held.values())]
        for rid in expired:
            del self._reservations[rid]

    def admit(self, reservation_id: str, charges: Sequence[Charge], now: datetime, ttl_s: float) -> Admission:
        now_ts = now.timestamp()
        with self._lock:
            self._purge(now_ts)
            standings = tuple(self._standing(c.key, now_ts, now) for c in charges)
            for i, (charge, st) in enumerate(zip(charges, standings, strict=True)):
                reason = None
                if charge.block_nano is not None and st.spent_nano >= charge.block_nano + st.grant_nano:
                    reason = "review"
                elif st.spent_nano + st.reserved_nano + charge.estimate_nano > charge.cap_nano + st.grant_nano:
                    reason = "cap"
                if reason is not None:
                    self._refused.add(charge.key)
                    return Admission(standings, i, reason)
            expires = now_ts + ttl_s
            self._reservations[reservation_id] = {c.key: (c.estimate_nano, expires) for c in charges}
            return Admission(standings)

    def settle(
        self,
        reservation_id: str | None,
        keys: Sequence[BudgetKey],
        cost_nano: int,
        record: CallRecord,
        now: datetime,
    ) -> tuple[Standing, ...]:
        with self._lock:
            if reservation_id is not None:
                self._reservations.pop(reservation_id, None)
            for key in keys:
                self._spent[key] = self._spent.get(key, 0) + cost_nano
            self._calls.append(record)
            if record.task_id is not None:
                calls, cost = self._task_totals.get(record.task_id, (0, Decimal(0)))
                self._task_totals[record.task_id] = (calls + 1, cost + (record.cost_usd or 0))
            return tuple(self._standing(key, now.timestamp(), now) for key in keys)

    def refresh(self, reservation_id: str, keys: Sequence[BudgetKey], now: datetime, ttl_s: float) -> None:
        with self._lock:
            held = self._reservations.get(reservation_id)
            if held is not None:
                expires = now.timestamp() + ttl_s
                for key, (amount, _) in list(held.items()):
                    held[key] = (amount, expires)

    def standing(self, key: BudgetKey, now: datetime) -> Standing:
        with self._lock:
            return self._standing(key, now.timestamp(), now)

    def add_grant(self, grant: Grant) -> None:
        with self._lock:
            self._grants[grant.id] = grant
            self._refused = {key for key in self._refused if key[0] != grant.budget}

    def revoke_grant(self, grant_id: str) -> Grant | None:
        with self._lock:
            grant = self._grants.get(grant_id)
            if grant is None:
                return None
            grant = self._grants[grant_id] = replace(grant, revoked=True)
            return grant

    def grants(self, budget: str | None = None) -> list[Grant]:
        with self._lock:
            return [g for g in self._grants.values() if budget is None or g.budget == budget]

    def claim_event(self, key: BudgetKey, kind: str) -> bool:
        with self._lock:
            if (key, kind) in self._events:
                return False
            self._events.add((key, kind))
            return True
