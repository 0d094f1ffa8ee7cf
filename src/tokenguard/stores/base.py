"""The store interface: where the ledger (and, later, budgets' spend and reservations) lives.

A store is chosen by URI (``memory://``, ``sqlite:///path.db``, ``redis://host:port/db``). Every
backend implements this one small interface and passes the same conformance tests.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime

from ..records import CallRecord, TaskRecord

__all__ = ["CallQuery", "Store", "TaskQuery"]


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
    def append_call(self, record: CallRecord) -> None:
        """Add one settled call to the ledger."""

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

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections and files."""
