"""Nudges: non-blocking advice toward the cheaper path, given with a call and never stopping it.

A nudge is delivered four ways at once: a :class:`Nudge` warning (filter or escalate it with the
:mod:`warnings` module, e.g. ``warnings.simplefilter("error", tg.Nudge)`` in CI), a log line on the
``tokenguard.nudge`` logger, a ``tokenguard.nudge`` span event, and the ``nudges`` field of the
call's ledger record. Each kind of nudge is given at most once per subject (a task name, a
budget) per ``interval_s`` in a process.

Kinds:

* ``smaller_model``: a cheaper model that the route and use case allow has a good record for
  this task (its success rate within ``tolerance`` of the model asked for, over at least
  ``min_tasks`` finished tasks each) at a lower cost per successful task; the message states the
  saving in dollars. The record is this Guard's ledger of the last ``lookback_days`` (read once,
  in the background) plus the tasks finished since.
* ``context_length``: the prompt is longer than the organisation's standard
  (``context_length_tokens``).
* ``budget_alert``: a budget matching the call has passed its alert threshold.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    from .records import CallRecord, TaskRecord

__all__ = ["Nudge", "NudgePolicy", "Nudger"]

log = logging.getLogger("tokenguard.nudge")


class Nudge(UserWarning):
    """The warning category of tokenguard's nudges (non-blocking advice).

    ``kind`` says which nudge it is (``"smaller_model"``, ``"context_length"``, ``"budget_alert"``).
    """

    kind: str = ""

    def __init__(self, message: str, kind: str = "") -> None:
        super().__init__(message)
        self.kind = kind


@dataclass(frozen=True)
class NudgePolicy:
    """Which nudges a Guard gives, and how often (``Guard(nudges=...)``, ``[nudges]`` in TOML).

    ``context_length_tokens`` is the organisation's standard prompt length (``None``: no such
    nudge). ``min_tasks``, ``tolerance`` and ``min_saving`` decide when a smaller model's record
    is good enough to recommend it (``min_saving``: the fraction of the cost per successful task
    it must save, default 20 %).
    """

    enabled: bool = True
    smaller_model: bool = True
    context_length_tokens: int | None = None
    budget_alert: bool = True
    interval_s: float = 3600.0
    min_tasks: int = 20
    tolerance: float = 0.05
    min_saving: float = 0.2
    lookback_days: int = 30

    def __post_init__(self) -> None:
        for name in ("enabled", "smaller_model", "budget_alert"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigError(f"nudges.{name} must be true or false, got {getattr(self, name)!r}")
        for name in ("min_tasks", "lookback_days"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"nudges.{name} must be an int >= 1, got {value!r}")
        c = self.context_length_tokens
        if c is not None and (isinstance(c, bool) or not isinstance(c, int) or c < 1):
            raise ConfigError(f"nudges.context_length_tokens must be an int >= 1 or unset, got {c!r}")
        for name in ("interval_s", "tolerance", "min_saving"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
                raise ConfigError(f"nudges.{name} must be a number >= 0, got {value!r}")


@dataclass(slots=True)
class _ModelRecord:
    """How one model has done on one kind of task."""

    tasks: int = 0
    succeeded: int = 0
    cost: Decimal = Decimal(0)

    @property
    def success_rate(self) -> float:
        return self.succeeded / self.tasks if self.tasks else 0.0

    @property
    def cost_per_success(self) -> Decimal | None:
        return self.cost / self.succeeded if self.succeeded else None


class Nudger:
    """Decides and delivers a Guard's nudges; keeps the per-task, per-model record they rest on."""

    def __init__(self, policy: NudgePolicy) -> None:
        self.policy = policy
        self._lock = threading.Lock()
        self._last: dict[tuple[str, str], float] = {}
        self._record: dict[str, dict[str, _ModelRecord]] = {}
        self._seeded: threading.Event | None = None
        # Tasks finished from now on are folded in as they finish; the ledger is read up to here.
        self._created = datetime.now(timezone.utc)

    def due(self, kind: str, subject: str) -> bool:
        """Whether a ``kind`` nudge about ``subject`` may be given now (then it counts as given)."""
        now = time.monotonic()
        key = (kind, subject)
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.policy.interval_s:
                return False
            self._last[key] = now
            return True

    @staticmethod
    def deliver(kind: str, message: str) -> None:
        """The warning and the log line (the caller adds the span event and the ledger field)."""
        log.info("%s", message)
        warnings.warn(Nudge(message, kind), stacklevel=_caller_level())

    # -- the record of models per task ---------------------------------------------------------

    def task_finished(self, name: str, outcome: str, model_costs: dict[str, Decimal]) -> None:
        """Fold a finished task into the record, under the model that carried most of its cost."""
        if not model_costs:
            return
        model = max(model_costs, key=lambda m: model_costs[m])
        with self._lock:
            r = self._record.setdefault(name, {}).setdefault(model, _ModelRecord())
            r.tasks += 1
            r.succeeded += outcome == "succeeded"
            r.cost += sum(model_costs.values(), Decimal(0))

    def seed(
        self,
        calls: Callable[[datetime], Iterable[CallRecord]],
        tasks: Callable[[datetime, datetime], Iterable[TaskRecord]],
    ) -> None:
        """Read the ledger's recent tasks into the record, once, in a background thread."""
        with self._lock:
            if self._seeded is not None:
                return
            self._seeded = threading.Event()

        def load() -> None:
            try:
                since = datetime.now(timezone.utc) - timedelta(days=self.policy.lookback_days)
                costs: dict[str, dict[str, Decimal]] = {}
                for c in calls(since):
                    if c.task_id and c.cost_usd:
                        per = costs.setdefault(c.task_id, {})
                        per[c.request_model] = per.get(c.request_model, Decimal(0)) + c.cost_usd
                for t in tasks(since, self._created):
                    self.task_finished(t.name, t.outcome, costs.get(t.id, {}))
            except Exception:
                log.exception("tokenguard could not read its ledger for smaller-model nudges")
            finally:
                assert self._seeded is not None
                self._seeded.set()

        threading.Thread(target=load, name="tokenguard-nudge-seed", daemon=True).start()

    def wait_seeded(self, timeout: float | None = None) -> bool:
        """Wait for the ledger to be read (tests and scripts that want deterministic nudges)."""
        event = self._seeded
        return event.wait(timeout) if event is not None else True

    def smaller_model(self, task_name: str, model: str, allowed: Callable[[str], bool]) -> str | None:
        """The smaller-model advice for a call to ``model`` in a ``task_name`` task, or ``None``."""
        p = self.policy
        with self._lock:
            per_model = dict(self._record.get(task_name, {}))
        current = per_model.get(model)
        if current is None or current.tasks < p.min_tasks:
            return None
        current_cost = current.cost_per_success
        if current_cost is None:
            return None
        best: tuple[Decimal, str, _ModelRecord] | None = None
        for other, r in per_model.items():
            cost = r.cost_per_success
            if (
                other == model
                or r.tasks < p.min_tasks
                or cost is None
                or r.success_rate < current.success_rate - p.tolerance
                or cost > current_cost * Decimal(1 - p.min_saving)
                or not allowed(other)
            ):
                continue
            if best is None or cost < best[0]:
                best = (cost, other, r)
        if best is None:
            return None
        cost, other, r = best
        saving = current_cost - cost
        return (
            f"tokenguard: {task_name!r} tasks can likely be done with the smaller model {other}: "
            f"{r.success_rate:.0%} succeeded over {r.tasks} tasks at ${_money(cost)} per successful task, "
            f"vs {current.success_rate:.0%} at ${_money(current_cost)} with {model}. "
            f"Switching would save about ${_money(saving)} per task "
            f"(${_money(saving * current.succeeded)} over the {current.succeeded} successful {model} tasks on record)."
        )


_OWN_MODULES = ("tokenguard.", "openai.", "anthropic.", "httpx", "tenacity", "asyncio.", "contextlib")


def _caller_level() -> int:
    """The ``stacklevel`` of the application's frame that made the call (past tokenguard, the
    vendor SDK and their helpers), so that warning filters by module and the printed location
    point at the user's code."""
    frame = sys._getframe(2)  # the caller of deliver()
    level = 2
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not (module == "tokenguard" or module.startswith(_OWN_MODULES)):
            return level
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return 2


def _money(value: Decimal) -> str:
    """A dollar amount with 4 significant decimals for small values, cents for large ones."""
    if value >= 1:
        return f"{value:.2f}"
    return f"{value:.4g}" if value else "0"
