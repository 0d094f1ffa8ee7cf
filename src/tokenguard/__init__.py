"""tokenguard: govern your application's own LLM spend, in-process.

Wrap the official ``openai`` or ``anthropic`` client in one line; every model call is then
attributed, priced, traced with OpenTelemetry and written to a ledger::

    import tokenguard as tg
    from openai import OpenAI

    guard = tg.Guard()
    client = guard.wrap(OpenAI())
    with tg.tags(team="support", app="helpdesk"):
        client.chat.completions.create(model="gpt-4o-mini", messages=[...])

``import tokenguard`` stays light (no vendor SDK, no pydantic, no OpenTelemetry): the names below
that need them are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .context import Task, bind, current_tags, current_task, tags, task
from .errors import BudgetExceeded, ConfigError, PolicyViolation, StoreError, StoreUnavailable, TokenguardError

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .budgets import Budget, BudgetEvent, BudgetStatus, Grant
    from .guard import Guard, configure, wrap
    from .nudges import Nudge, NudgePolicy
    from .pricing import Price
    from .records import CallRecord, TaskRecord
    from .routing import Route, route
    from .sensitive import Finding, Scanner, scan
    from .usecases import Tier, UseCase

__all__ = [
    "Budget",
    "BudgetEvent",
    "BudgetExceeded",
    "BudgetStatus",
    "Grant",
    "CallRecord",
    "ConfigError",
    "Finding",
    "Guard",
    "Nudge",
    "NudgePolicy",
    "PolicyViolation",
    "Price",
    "Route",
    "Scanner",
    "StoreError",
    "StoreUnavailable",
    "Task",
    "TaskRecord",
    "Tier",
    "TokenguardError",
    "UseCase",
    "__version__",
    "bind",
    "configure",
    "current_tags",
    "current_task",
    "route",
    "scan",
    "tags",
    "task",
    "wrap",
]

_LAZY = {
    "Budget": "budgets",
    "BudgetEvent": "budgets",
    "BudgetStatus": "budgets",
    "Grant": "budgets",
    "Guard": "guard",
    "configure": "guard",
    "wrap": "guard",
    "Price": "pricing",
    "CallRecord": "records",
    "TaskRecord": "records",
    "Route": "routing",
    "route": "routing",
    "UseCase": "usecases",
    "Tier": "usecases",
    "Nudge": "nudges",
    "NudgePolicy": "nudges",
    "scan": "sensitive",
    "Finding": "sensitive",
    "Scanner": "sensitive",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'tokenguard' has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
