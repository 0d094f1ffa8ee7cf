"""Calendar windows for spend and budgets: ``day``, ``week`` (Monday first), ``month``, ``quarter``,
``year`` or ``total``, in a time zone (UTC by default). A window is ``[start, end)`` in UTC."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone, tzinfo
from typing import Literal

from .errors import ConfigError

__all__ = ["PERIODS", "Period", "window"]

Period = Literal["day", "week", "month", "quarter", "year", "total"]
PERIODS: tuple[str, ...] = ("day", "week", "month", "quarter", "year", "total")


def check_period(period: str) -> Period:
    if period not in PERIODS:
        raise ConfigError(f"period {period!r} is not one of {', '.join(PERIODS)}")
    return period  # type: ignore[return-value]


def _add_months(d: datetime, months: int) -> datetime:
    month0 = d.month - 1 + months
    return d.replace(year=d.year + month0 // 12, month=month0 % 12 + 1)


def window(period: str, now: datetime, tz: tzinfo = timezone.utc) -> tuple[datetime | None, datetime | None]:
    """The calendar window of ``period`` that contains ``now``, as UTC datetimes (``None`` for total)."""
    check_period(period)
    if period == "total":
        return None, None
    local = now.astimezone(tz)
    start = local.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "day":
        end = start + timedelta(days=1)
    elif period == "week":
        start -= timedelta(days=start.weekday())
        end = start + timedelta(days=7)
    elif period == "month":
        start = start.replace(day=1)
        end = _add_months(start, 1)
    elif period == "quarter":
        start = start.replace(day=1, month=(start.month - 1) // 3 * 3 + 1)
        end = _add_months(start, 3)
    else:
        start = start.replace(day=1, month=1)
        end = start.replace(year=start.year + 1)
    # Wall-clock midnights may shift across DST: rebuild them in the zone, then convert.
    start = start.replace(tzinfo=None).replace(tzinfo=tz)
    end = end.replace(tzinfo=None).replace(tzinfo=tz)
    return start.astimezone(timezone.utc), end.astimezone(timezone.utc)
