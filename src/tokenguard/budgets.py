"""Budgets: spend limits over the calls whose tags (and model) match a scope, per calendar period,
with the threshold ladder alert -> review -> hard cap, and approved exceptions (grants).

Money in stores is integer nano-dollars (``NANO`` per USD): exact in Redis and SQLite arithmetic.
Estimates are rounded up (a reservation stays an upper bound), real costs to the nearest nano.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, tzinfo
from decimal import ROUND_CEILING, ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .periods import PERIODS, window
from .pricing import to_decimal

__all__ = ["NANO", "Budget", "BudgetEvent", "BudgetState", "BudgetStatus", "Grant", "from_nano", "to_nano"]

NANO = Decimal(1_000_000_000)
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:-]{0,127}")

BudgetState = Literal["ok", "alert", "review", "exceeded"]
ReviewAction = Literal["warn", "downgrade", "block"]
Amount = Decimal | int | float | str
"""A money amount or fraction as given: converted to ``Decimal`` (floats through ``str``)."""


def to_nano(usd: Decimal, *, up: bool = False) -> int:
    """USD as integer nano-dollars: rounded up for estimates (``up=True``), to nearest otherwise."""
    return int((usd * NANO).to_integral_value(ROUND_CEILING if up else ROUND_HALF_EVEN))


def from_nano(nano: int) -> Decimal:
    return Decimal(nano) / NANO


def _fraction(value: object, what: str) -> Decimal:
    result = to_decimal(value, what)
    if result <= 0:
        raise ConfigError(f"{what} must be > 0 (a fraction of limit_usd, e.g. 0.8), got {value!r}")
    return result


@dataclass(frozen=True)
class Budget:
    """A spend limit over the calls whose tags (and model) match ``scope``.

    ``scope`` maps tag keys to values (``{"team": "support"}``); the key ``model`` matches the model
    the call asks for (after routing). ``{}`` matches every call. ``period`` is a calendar window
    in ``timezone``: ``day``, ``week`` (from Monday), ``month``, ``quarter``, ``year``, or
    ``total`` (never resets).

    The ladder, as fractions of ``limit_usd``: at ``alert_at`` (0.8) the budget alerts, at
    ``review_at`` (1.0) it is in review and ``review_action`` applies (``"warn"``: flag calls;
    ``"downgrade"``: ask the router for a cheaper model; ``"block"``: refuse), at ``hard_at`` (1.2)
    calls are refused with :class:`~tokenguard.BudgetExceeded` unless a grant raises the cap.
    """

    name: str
    limit_usd: Decimal
    scope: Mapping[str, str] = field(default_factory=dict)
    period: str = "month"
    alert_at: Decimal = Decimal("0.8")
    review_at: Decimal = Decimal("1.0")
    hard_at: Decimal = Decimal("1.2")
    review_action: ReviewAction = "warn"
    timezone: str = "UTC"

    if TYPE_CHECKING:  # what the constructor accepts; the fields hold the normalised values

        def __init__(
            self,
            name: str,
            limit_usd: Amount,
            scope: Mapping[str, str] = ...,
            period: str = "month",
            alert_at: Amount = ...,
            review_at: Amount = ...,
            hard_at: Amount = ...,
            review_action: ReviewAction = "warn",
            timezone: str = "UTC",
        ) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or _NAME_RE.fullmatch(self.name) is None:
            raise ConfigError(
                f"budget name {self.name!r} is invalid: use letters, digits and _ . : - (at most 128 characters)"
            )
        what = f"budget {self.name!r}"
        object.__setattr__(self, "limit_usd", to_decimal(self.limit_usd, f"{what}: limit_usd"))
        if not isinstance(self.scope, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.scope.items()
        ):
            raise ConfigError(f"{what}: scope must map tag keys to str values, e.g. {{'team': 'support'}}")
        object.__setattr__(self, "scope", dict(self.scope))
        if self.period not in PERIODS:
            raise ConfigError(f"{what}: period {self.period!r} is not one of {', '.join(PERIODS)}")
        for key in ("alert_at", "review_at", "hard_at"):
            object.__setattr__(self, key, _fraction(getattr(self, key), f"{what}: {key}"))
        if not self.alert_at <= self.review_at <= self.hard_at:
            raise ConfigError(
                f"{what}: thresholds must rise: alert_at ({self.alert_at}) <= review_at ({self.review_at}) "
                f"<= hard_at ({self.hard_at})"
            )
        if self.review_action not in ("warn", "downgrade", "block"):
            raise ConfigError(
                f"{what}: review_action must be 'warn', 'downgrade' or 'block', got {self.review_action!r}"
            )
        try:
            self.zone  # noqa: B018 - validate the time zone now
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{what}: unknown time zone {self.timezone!r} (use an IANA name such as 'Europe/Paris')"
            ) from None

    @property
    def zone(self) -> tzinfo:
        return ZoneInfo(self.timezone)

    @property
    def cap_usd(self) -> Decimal:
        """The hard cap before grants: ``limit_usd * hard_at``."""
        return self.limit_usd * self.hard_at

    def matches(self, tags: Mapping[str, str], model: str) -> bool:
        """Whether a call with ``tags`` to ``model`` counts against this budget."""
        for key, value in self.scope.items():
            if key == "model":
                if model != value:
                    return False
            elif tags.get(key) != value:
                return False
        return True

    def window(self, now: datetime) -> tuple[datetime | None, datetime | None]:
        """The calendar period containing ``now``, ``[start, end)`` in UTC (``None`` for total)."""
        return window(self.period, now, self.zone)

    def window_id(self, now: datetime) -> str:
        """A stable id of the period containing ``now`` (its UTC start), ``"total"`` for total."""
        start, _ = self.window(now)
        return "total" if start is None else start.strftime("%Y%m%dT%H%M%SZ")

    def state(self, spent: Decimal, cap: Decimal, reserved: Decimal, refused: bool) -> BudgetState:
        """The state for committed ``spent`` against this budget's ladder and the current ``cap``."""
        if refused or spent + reserved >= cap:
            return "exceeded"
        if spent >= self.limit_usd * self.review_at:
            return "review"
        if spent >= self.limit_usd * self.alert_at:
            return "alert"
        return "ok"


@dataclass(frozen=True)
class BudgetStatus:
    """One budget's standing in its current period (see :meth:`Guard.budget_status`)."""

    name: str
    period_start: datetime | None
    period_end: datetime | None
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal
    cap_usd: Decimal
    state: BudgetState


@dataclass(frozen=True)
class Grant:
    """An approved, time-boxed raise of a budget's hard cap (see :meth:`Guard.grant_exception`)."""

    id: str
    budget: str
    extra_usd: Decimal
    approved_by: str
    reason: str
    created_at: datetime
    expires_at: datetime
    revoked: bool = False

    def active(self, now: datetime) -> bool:
        return not self.revoked and self.created_at <= now < self.expires_at


@dataclass(frozen=True)
class BudgetEvent:
    """A threshold crossed, delivered once per budget, kind and period to ``Guard(on_event=...)``.

    ``kind`` is ``"alert"``, ``"review"``, ``"exceeded"`` (the cap was reached or a call refused)
    or ``"exception_used"`` (a grant made room for a call). ``window`` identifies the period.
    """

    budget: str
    kind: str
    window: str
    spent_usd: Decimal
    limit_usd: Decimal
    cap_usd: Decimal
