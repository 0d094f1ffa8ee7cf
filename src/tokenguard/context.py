"""What is in force for the code running now: tags, the current task and the routing policy (step 2
of the pipeline).

Both live in :mod:`contextvars`, so they follow ``await`` and are copied into ``asyncio`` tasks when
those are created. Threads do not inherit context: :func:`bind` carries it into a thread pool.

This module imports nothing heavy: it is loaded by ``import tokenguard``.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
import re
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from contextvars import ContextVar
from datetime import datetime, timezone
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

if TYPE_CHECKING:
    from decimal import Decimal

    from .guard import Guard
    from .routing import Route

__all__ = ["Task", "bind", "current_tags", "current_task", "tags", "task"]

MAX_TAGS = 32
MAX_VALUE_LENGTH = 256
_KEY_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,63}")

_EMPTY: Mapping[str, str] = MappingProxyType({})
_tags_var: ContextVar[Mapping[str, str]] = ContextVar("tokenguard_tags", default=_EMPTY)
_task_var: ContextVar[Task | None] = ContextVar("tokenguard_task", default=None)
# The routing policy set by the enclosing tg.route(...) scopes, merged (see routing.py).
_route_var: ContextVar[Route | None] = ContextVar("tokenguard_route", default=None)

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


def validate_tags(new: Mapping[str, object], base: Mapping[str, str] = _EMPTY) -> Mapping[str, str]:
    """Return ``base`` merged with ``new`` (``new`` wins key by key), after checking every new tag.

    Raises ``TypeError`` for a non-string value and ``ValueError`` for a bad key, an over-long value or
    too many tags; each message names the key.
    """
    for key, value in new.items():
        if not isinstance(key, str) or _KEY_RE.fullmatch(key) is None:
            raise ValueError(
                f"tag key {key!r} is invalid: keys start with a letter or '_', then letters, digits, "
                f"'_', '.' or '-', at most 64 characters"
            )
        if not isinstance(value, str):
            raise TypeError(
                f"tag {key!r} has a {type(value).__name__} value {value!r}: tag values must be str "
                f"(convert it, e.g. {key}=str(...))"
            )
        if len(value) > MAX_VALUE_LENGTH:
            raise ValueError(
                f"tag {key!r} has a value of {len(value)} characters: at most {MAX_VALUE_LENGTH} are allowed"
            )
    merged = {**base, **cast(Mapping[str, str], new)}
    if len(merged) > MAX_TAGS:
        raise ValueError(
            f"{len(merged)} tags would be in force: at most {MAX_TAGS} are allowed "
            f"(tags are dimensions such as team, app, user; put free text elsewhere)"
        )
    return MappingProxyType(merged)


def current_tags() -> Mapping[str, str]:
    """The tags in force here, merged from every enclosing :func:`tags` scope (read-only)."""
    return _tags_var.get()


def current_task() -> Task | None:
    """The innermost :func:`task` in force here, or ``None``."""
    return _task_var.get()


class _Scope:
    """Shared machinery of :class:`tags` and :class:`Task`: a context manager that is also a
    decorator for sync and async functions (each call of a decorated function enters a fresh scope)."""

    def _fresh(self) -> _Scope:
        return self

    def __enter__(self) -> Any:
        raise NotImplementedError

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        raise NotImplementedError

    def __call__(self, fn: F) -> F:
        if inspect.iscoroutinefunction(fn):

            @functools.wraps(fn)
            async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
                with self._fresh():
                    return await fn(*args, **kwargs)

            return cast(F, async_wrapper)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with self._fresh():
                return fn(*args, **kwargs)

        return cast(F, wrapper)


class tags(_Scope):
    """Attribute the calls made inside to ``**tags`` (a context manager and a decorator).

    Nested scopes merge key by key, the inner value winning. Values must be ``str``. The tags are
    checked when the scope is entered: a non-string value raises ``TypeError``; a bad key, a value of
    more than 256 characters or more than 32 tags in force raise ``ValueError``.

    Example::

        with tg.tags(team="support", app="helpdesk"):
            client.chat.completions.create(...)

        @tg.tags(workflow="triage")
        async def triage(ticket): ...
    """

    def __init__(self, **tags: str) -> None:
        self._new: Mapping[str, str] = tags
        self._tokens: list[contextvars.Token[Mapping[str, str]]] = []

    def _fresh(self) -> tags:
        return tags(**self._new)

    def __enter__(self) -> Mapping[str, str]:
        merged = validate_tags(self._new, _tags_var.get())
        self._tokens.append(_tags_var.set(merged))
        return merged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _tags_var.reset(self._tokens.pop())


Outcome = Literal["succeeded", "failed", "unknown"]


class Task(_Scope):
    """A unit of work that may make many model calls; created by :func:`task`.

    Inside the block, ``task.succeed()`` or ``task.fail(reason)`` marks the outcome; an explicit mark
    wins over how the block ends. Leaving the block with an exception and no mark records
    ``"failed"``, leaving it unmarked records ``"unknown"``. ``task.id`` is a stable string; pass it
    to ``guard.review(task_id, accepted=...)`` later, or call ``task.review(...)``.
    """

    def __init__(self, name: str, *, guard: Guard | None = None, **tags: str) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"task name must be a non-empty str, got {name!r}")
        self.name = name
        self.id = uuid.uuid4().hex
        self._guard = guard
        self._new_tags: Mapping[str, str] = tags
        self.tags: Mapping[str, str] = _EMPTY
        self._mark: Outcome | None = None
        self.failure_reason: str | None = None
        self.started_at: datetime | None = None
        self._t0 = 0.0
        # Cost per model of the calls settled inside, for the smaller-model nudge's record.
        self.model_costs: dict[str, Decimal] = {}
        self._tokens: tuple[contextvars.Token[Task | None], contextvars.Token[Mapping[str, str]]] | None = None

    def _fresh(self) -> Task:
        return Task(self.name, guard=self._guard, **self._new_tags)

    @property
    def guard(self) -> Guard:
        """The Guard that records this task (the default Guard unless one was given)."""
        if self._guard is None:
            from .guard import default_guard

            self._guard = default_guard()
        return self._guard

    @property
    def outcome(self) -> Outcome:
        """The outcome as marked so far: ``"succeeded"``, ``"failed"`` or ``"unknown"``."""
        return self._mark or "unknown"

    def succeed(self) -> None:
        """Mark the task as succeeded (wins over how the block ends)."""
        self._mark = "succeeded"
        self.failure_reason = None

    def fail(self, reason: str | None = None) -> None:
        """Mark the task as failed, with an optional reason (wins over how the block ends)."""
        self._mark = "failed"
        self.failure_reason = reason

    def review(self, *, accepted: bool, edit_distance: float | None = None, reviewer: str | None = None) -> None:
        """Record a human review of this task's result (see :meth:`Guard.review`)."""
        self.guard.review(self.id, accepted=accepted, edit_distance=edit_distance, reviewer=reviewer)

    def __enter__(self) -> Task:
        if self.started_at is not None:
            state = "is already running" if self._tokens is not None else "has finished"
            raise RuntimeError(f"task {self.name!r} {state}: a task runs once; create a new tg.task(...) instead")
        self.tags = validate_tags(self._new_tags, _tags_var.get())
        self.guard._start_task(self)  # resolve the recording guard now, not when the block ends
        self.started_at = datetime.now(timezone.utc)
        self._t0 = time.perf_counter()
        self._tokens = (_task_var.set(self), _tags_var.set(self.tags))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tokens is not None
        task_token, tags_token = self._tokens
        self._tokens = None
        _tags_var.reset(tags_token)
        _task_var.reset(task_token)
        if self._mark is None and exc_type is not None:
            self._mark = "failed"
            self.failure_reason = exc_type.__name__
        self.guard._finish_task(self, duration_s=time.perf_counter() - self._t0)

    def __repr__(self) -> str:
        return f"Task(name={self.name!r}, id={self.id!r}, outcome={self.outcome!r})"


def task(name: str, *, guard: Guard | None = None, **tags: str) -> Task:
    """Start a unit of work named ``name`` (context manager, or decorator for sync/async functions).

    Calls made inside carry the task's id and name; ``**tags`` are added to the tags in force.
    The task is recorded by ``guard`` (default: the default Guard) when the block ends.

    Example::

        with tg.task("summarize_ticket") as t:
            reply = client.chat.completions.create(...)
            t.succeed()
    """
    return Task(name, guard=guard, **tags)


def bind(fn: Callable[..., R]) -> Callable[..., R]:
    """Return ``fn`` bound to the tags, task and route in force now, for running in another thread.

    Threads (``ThreadPoolExecutor``, ``threading.Thread``) do not inherit context; wrap the function
    you submit::

        with tg.tags(team="search"):
            pool.submit(tg.bind(work), item)

    The bound function may run in many threads at once. Coroutine functions are bound too (the
    coroutine runs with the captured tags and task).
    """
    captured_tags = _tags_var.get()
    captured_task = _task_var.get()
    captured_route = _route_var.get()

    if inspect.iscoroutinefunction(fn):
        async_fn = cast(Callable[..., Awaitable[Any]], fn)

        @functools.wraps(fn)
        async def async_bound(*args: Any, **kwargs: Any) -> Any:
            t1, t2, t3 = _tags_var.set(captured_tags), _task_var.set(captured_task), _route_var.set(captured_route)
            try:
                return await async_fn(*args, **kwargs)
            finally:
                _route_var.reset(t3)
                _task_var.reset(t2)
                _tags_var.reset(t1)

        return cast(Callable[..., R], async_bound)

    @functools.wraps(fn)
    def bound(*args: Any, **kwargs: Any) -> R:
        t1, t2, t3 = _tags_var.set(captured_tags), _task_var.set(captured_task), _route_var.set(captured_route)
        try:
            return fn(*args, **kwargs)
        finally:
            _route_var.reset(t3)
            _task_var.reset(t2)
            _tags_var.reset(t1)

    return bound
