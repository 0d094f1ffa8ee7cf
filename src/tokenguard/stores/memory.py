"""``memory://``: the default store, one process, nothing persisted."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from decimal import Decimal

from ..records import CallRecord, TaskRecord
from .base import CallQuery, Review, Store, TaskQuery

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Keeps the ledger in lists; per-task totals are maintained as calls are appended."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._calls: list[CallRecord] = []
        self._tasks: dict[str, TaskRecord] = {}
        self._reviews: dict[str, Review] = {}
        self._task_totals: dict[str, tuple[int, Decimal]] = {}

    def append_call(self, record: CallRecord) -> None:
        with self._lock:
            self._calls.append(record)
            if record.task_id is not None:
                calls, cost = self._task_totals.get(record.task_id, (0, Decimal(0)))
                self._task_totals[record.task_id] = (calls + 1, cost + (record.cost_usd or 0))

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
