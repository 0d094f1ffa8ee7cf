"""Anomalies: what is unusual in the ledger, each group judged against its own history.

Three kinds, each with its rule in plain words:

``spend_spike``
    A bucket (day, week or month) in which a group spent far more than it usually does. "Usually"
    is the group's own **median** spend per bucket, and "far" is measured in units of the group's
    own typical spread, so a team that always spends $500 a day is not flagged while one that
    normally spends $2 and suddenly spends $40 is: there is no single dollar threshold across groups.

``failure_burst``
    A bucket in which an unusual share of a group's calls failed (status ``error``: vendor or
    transport errors), against the group's own median error rate, *and* at least
    :data:`MIN_BURST_ERRORS` calls failed (a couple of errors is never a burst, whatever the rate).

``high_spend_low_success``
    A group that spends more than the median group but whose tasks succeed clearly less often than
    the other groups' tasks (see :func:`find_anomalies` for the exact rule).

Robust statistics. Means and standard deviations are dragged by the very outliers we are looking
for; medians are not. For a group's values x1..xn (one per bucket in which it made calls):

* ``median`` is the baseline;
* ``MAD`` (median absolute deviation) = median(|xi - median|), the typical distance from it;
* the modified z-score of a value x is ``0.6745 * (x - median) / MAD`` (Iglewicz and Hoaglin);
  0.6745 makes it comparable to an ordinary z-score for normally distributed data, and the usual
  cut-off is 3.5 (``threshold``). Equivalently: ``(x - median) / spread`` with
  ``spread = 1.4826 * MAD``.
* **MAD = 0** happens whenever more than half the values are identical (a scheduled job that costs
  the same every day, or a group whose calls almost never fail). Then the spread is estimated from
  the *mean* absolute deviation instead, ``spread = 1.2533 * mean(|xi - median|)`` (1.2533 =
  sqrt(pi/2) scales it to a standard deviation for normal data), which is non-zero as soon as any
  value differs.
* The spread also has a floor, so that a tiny wobble of a near-constant series is not a
  "20-sigma event": for spend it is never taken below 10% of the median
  (:data:`SPEND_SPREAD_FLOOR`), so a perfectly steady group is flagged only from about
  1 + 0.1 * 3.5 = 1.35 times its median at the default threshold; for error rates it is never below
  the sampling noise of the bucket's rate, sqrt(p * (1 - p) / calls) with p the group's overall
  error rate in the window.

Only buckets in which a group made calls count: an idle day is not a cheap day, and a group with
fewer than ``min_history`` such buckets has too little history to have a baseline (it is listed in
the report's notes, not judged). Only values above the baseline are anomalies here.

The numbers come from the store's grouped totals (:meth:`Store.call_totals` and
:meth:`Store.task_totals`): aggregation happens in the store, not in a loop over the ledger.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from statistics import mean, median
from typing import TYPE_CHECKING, Literal

from ..errors import ConfigError
from ..stores.base import BUCKETS, CALL_FIELDS, TASK_FIELDS, CallQuery, CallTotals, TaskQuery, group_key
from .leaderboard import wilson_interval
from .table import Column, Table, aware, window_title

if TYPE_CHECKING:
    from ..guard import Guard

__all__ = [
    "MIN_BURST_ERRORS",
    "SPEND_SPREAD_FLOOR",
    "SUCCESS_GAP",
    "Anomaly",
    "AnomalyReport",
    "find_anomalies",
    "robust_baseline",
]

AnomalyKind = Literal["spend_spike", "failure_burst", "high_spend_low_success"]

MAD_TO_SD = 1.4826
"""1 / 0.6745: turns a MAD into a standard deviation for normal data."""
MEAN_AD_TO_SD = 1.2533
"""sqrt(pi / 2): turns a mean absolute deviation into a standard deviation for normal data."""
SPEND_SPREAD_FLOOR = 0.10
"""A group's spend spread is never taken below this share of its median spend."""
MIN_BURST_ERRORS = 5
"""A failure burst needs at least this many failed calls in the bucket."""
SUCCESS_GAP = 0.10
"""A low-success group's success rate is at least this far (10 points) below the other groups'."""

_PER = {"day": "a day", "week": "a week", "month": "a month"}


@dataclass(frozen=True)
class Anomaly:
    """One unusual thing, with what was seen, what is usual, and how unusual it is."""

    kind: AnomalyKind
    key: tuple[str | None, ...]
    """The group: one value per key of the report's ``by`` (``None``: calls without that tag)."""
    when: str | None
    """The bucket (``2026-11-28``, the week's Monday, or ``2026-11``) of a spike or burst;
    ``None`` for ``high_spend_low_success``, which is about the whole window."""
    value: float
    """What was seen: USD spent in the bucket (spike), the bucket's error rate (burst), or the
    group's task success rate (high spend, low success)."""
    baseline: float
    """What is usual: the group's median spend or error rate per bucket, or, for high spend and low
    success, the success rate of the other groups' tasks."""
    score: float
    """How unusual, larger is more: the robust z-score (spike, burst) or the two-proportion
    z statistic of the success-rate gap (high spend, low success)."""
    message: str


@dataclass(frozen=True)
class AnomalyReport:
    """The anomalies found, most anomalous first."""

    by: tuple[str, ...]
    bucket: str
    since: datetime | None
    until: datetime | None
    rows: list[Anomaly]
    notes: list[str] = field(default_factory=list)

    def table(self) -> Table:
        cols = [
            Column("kind"),
            *(Column(k) for k in self.by),
            Column("when"),
            Column("value", "float"),
            Column("baseline", "float"),
            Column("score", "float"),
            Column("message"),
        ]
        rows = [
            [a.kind, *a.key, a.when or "", a.value, a.baseline, a.score, a.message]
            for a in sorted(self.rows, key=_rank)
        ]
        title = f"Anomalies by {', '.join(self.by) or 'all calls'} per {self.bucket}"
        return Table(
            title=title + window_title(self.since, self.until),
            columns=cols,
            rows=rows,
            notes=[
                "value / baseline: USD per bucket (spend_spike), error rate (failure_burst), "
                "task success rate against the other groups' (high_spend_low_success)",
                "score: robust z-score against the group's own median and spread (spikes, bursts); "
                "z statistic of the success-rate gap (high_spend_low_success)",
                *self.notes,
            ],
        )


def robust_baseline(values: Sequence[float]) -> tuple[float, float]:
    """``(median, spread)`` of ``values``: the spread is 1.4826 * MAD, or, when the MAD is 0
    (over half the values equal), 1.2533 * the mean absolute deviation from the median. The spread
    is 0 only when every value is the same. ``(x - median) / spread`` is the modified z-score."""
    if not values:
        raise ValueError("robust_baseline needs at least one value")
    centre = median(values)
    deviations = [abs(v - centre) for v in values]
    mad = median(deviations)
    if mad > 0:
        return centre, MAD_TO_SD * mad
    return centre, MEAN_AD_TO_SD * mean(deviations)


def find_anomalies(
    guard: Guard,
    by: Sequence[str] = ("team",),
    *,
    bucket: str = "day",
    since: datetime | None = None,
    until: datetime | None = None,
    threshold: float = 3.5,
    min_history: int = 7,
) -> AnomalyReport:
    """Spend spikes, failure bursts and high-spend-low-success groups among the calls and tasks in
    ``[since, until)``, grouped by ``by`` (tag keys and call fields, as in ``Reports.spend``).

    * **Spend spike**: a bucket whose spend has a robust z-score above ``threshold`` against the
      group's own buckets (module docs), for groups with calls in at least ``min_history`` buckets.
    * **Failure burst**: a bucket with at least :data:`MIN_BURST_ERRORS` failed calls whose error
      rate (failed / sent; calls refused before sending are not sent) has a robust z-score above
      ``threshold`` against the group's own per-bucket error rates, same history rule.
    * **High spend, low success**: a group whose spend in the window is above the median group's
      spend, and whose task success rate is well below the rate of all the other groups' tasks:
      the upper end of its Wilson 95% interval is below the others' rate (so the gap is not a
      small-sample accident) *and* the gap is at least :data:`SUCCESS_GAP` (10 points, so it
      matters). Checked only when every key of ``by`` means the same for calls and tasks (tag
      keys, ``task``, ``model``). ``threshold`` and ``min_history`` do not apply to this rule.

    The report's rows are sorted by score, most anomalous first; its notes list the groups that
    had too little history to be judged.
    """
    by = _check_by(by)
    if bucket not in BUCKETS:
        raise ConfigError(f"anomalies: bucket must be one of {', '.join(BUCKETS)}, got {bucket!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not threshold > 0:
        raise ConfigError(f"anomalies: threshold must be a number > 0, got {threshold!r}")
    if isinstance(min_history, bool) or not isinstance(min_history, int) or min_history < 3:
        raise ConfigError(f"anomalies: min_history must be an integer >= 3, got {min_history!r}")
    since, until = aware(since), aware(until)
    store = guard.store

    series: dict[tuple[str | None, ...], list[tuple[str, CallTotals]]] = {}
    for t in store.call_totals(CallQuery(since=since, until=until), [*by, bucket]):
        series.setdefault(t.key[:-1], []).append((str(t.key[-1]), t))
    rows: list[Anomaly] = []
    short: list[tuple[str | None, ...]] = []
    for key, buckets in series.items():
        buckets.sort(key=lambda b: b[0])
        if len(buckets) < min_history:
            short.append(key)
            continue
        rows += _spend_spikes(by, key, bucket, buckets, threshold)
        rows += _failure_bursts(by, key, bucket, buckets, threshold, min_history)

    notes: list[str] = []
    if short:
        labels = [_label(by, k) for k in sorted(short, key=_order)]
        names = "; ".join(labels[:10]) + (f"; and {len(labels) - 10} more" if len(labels) > 10 else "")
        notes.append(f"not checked for spikes or bursts (calls in fewer than {min_history} {bucket}s): {names}")
    if all(group_key(k, CALL_FIELDS) == group_key(k, TASK_FIELDS) for k in by):
        rows += _low_success(guard, by, since, until)
    else:
        notes.append(f"high spend, low success not checked: tasks cannot be grouped by {', '.join(by)}")
    rows.sort(key=_rank)
    return AnomalyReport(by, bucket, since, until, rows, notes)


def _spend_spikes(
    by: tuple[str, ...],
    key: tuple[str | None, ...],
    bucket: str,
    buckets: list[tuple[str, CallTotals]],
    threshold: float,
) -> list[Anomaly]:
    spend = [float(t.cost_usd) for _, t in buckets]
    centre, spread = robust_baseline(spend)
    spread = max(spread, SPEND_SPREAD_FLOOR * abs(centre))
    found = []
    for (when, _), x in zip(buckets, spend, strict=True):
        if spread <= 0 or x <= centre:
            continue
        score = (x - centre) / spread
        if score > threshold:
            times = f", {x / centre:.1f}x its median of {_usd(centre)} {_PER[bucket]}" if centre > 0 else ""
            message = (
                f"{_label(by, key)} spent {_usd(x)} {_bucket_phrase(bucket, when)}{times} "
                f"(robust z {score:.1f} against its own {len(buckets)} {bucket}s)"
            )
            found.append(Anomaly("spend_spike", key, when, x, centre, score, message))
    return found


def _failure_bursts(
    by: tuple[str, ...],
    key: tuple[str | None, ...],
    bucket: str,
    buckets: list[tuple[str, CallTotals]],
    threshold: float,
    min_history: int,
) -> list[Anomaly]:
    sent = [(when, t.calls - t.blocked_calls, t.error_calls) for when, t in buckets if t.calls > t.blocked_calls]
    if len(sent) < min_history:
        return []
    total_sent = sum(n for _, n, _ in sent)
    pooled = sum(e for _, _, e in sent) / total_sent
    rates = [e / n for _, n, e in sent]
    centre, spread = robust_baseline(rates)
    found = []
    for (when, n, errors), rate in zip(sent, rates, strict=True):
        if errors < MIN_BURST_ERRORS or rate <= centre:
            continue
        noise = math.sqrt(pooled * (1 - pooled) / n)  # the sampling noise of a rate over n calls
        scale = max(spread, noise)
        if scale <= 0:
            continue
        score = (rate - centre) / scale
        if score > threshold:
            message = (
                f"{_label(by, key)}: {errors} of {n} calls failed {_bucket_phrase(bucket, when)} ({rate:.1%}), "
                f"against a median of {centre:.1%} {_PER[bucket]} (robust z {score:.1f})"
            )
            found.append(Anomaly("failure_burst", key, when, rate, centre, score, message))
    return found


def _low_success(guard: Guard, by: tuple[str, ...], since: datetime | None, until: datetime | None) -> list[Anomaly]:
    store = guard.store
    tasks = store.task_totals(TaskQuery(since=since, until=until), by)
    spend = {t.key: t.cost_usd for t in store.call_totals(CallQuery(since=since, until=until), by)}
    if len(spend) < 2 or not tasks:
        return []
    median_spend: Decimal = median(spend.values())
    all_tasks = sum(t.tasks for t in tasks)
    all_succeeded = sum(t.succeeded for t in tasks)
    found = []
    for t in tasks:
        cost = spend.get(t.key, Decimal(0))
        others = all_tasks - t.tasks
        if cost <= median_spend or not t.tasks or not others:
            continue
        rate = t.succeeded / t.tasks
        others_rate = (all_succeeded - t.succeeded) / others
        interval = wilson_interval(t.succeeded, t.tasks)
        assert interval is not None
        if not (interval[1] < others_rate and rate <= others_rate - SUCCESS_GAP):
            continue
        pooled = all_succeeded / all_tasks  # 0 < pooled < 1 here: the group failed, the others succeeded
        score = (others_rate - rate) / math.sqrt(pooled * (1 - pooled) * (1 / t.tasks + 1 / others))
        message = (
            f"{_label(by, t.key)} spent {_usd(float(cost))}, above the median group's {_usd(float(median_spend))}, "
            f"but only {t.succeeded} of {t.tasks} tasks succeeded ({rate:.1%}, 95% interval "
            f"{interval[0]:.1%}-{interval[1]:.1%}) against {others_rate:.1%} for the other groups"
        )
        found.append(Anomaly("high_spend_low_success", t.key, None, rate, others_rate, score, message))
    return found


def _rank(a: Anomaly) -> tuple[float, str, tuple[tuple[bool, str], ...], str]:
    return (-a.score, a.kind, _order(a.key), a.when or "")


def _order(key: tuple[str | None, ...]) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, v or "") for v in key)


def _label(by: tuple[str, ...], key: tuple[str | None, ...]) -> str:
    if not by:
        return "all calls"
    return ", ".join(f"{k}={'(unattributed)' if v is None else v}" for k, v in zip(by, key, strict=True))


def _bucket_phrase(bucket: str, when: str) -> str:
    if bucket == "week":
        return f"in the week of {when}"
    return f"on {when}" if bucket == "day" else f"in {when}"


def _usd(amount: float) -> str:
    if abs(amount) >= 1:
        return f"${amount:,.2f}"
    return f"${amount:.4f}" if abs(amount) >= 0.01 else f"${amount:.6f}"


def _check_by(by: Sequence[str]) -> tuple[str, ...]:
    if isinstance(by, str):
        by = (by,)
    keys = tuple(by)
    for k in keys:
        if not isinstance(k, str) or not k:
            raise ConfigError(f"anomalies: group keys are tag keys or one of {', '.join(CALL_FIELDS)}; got {k!r}")
        if k in BUCKETS:
            raise ConfigError(f"anomalies: {k!r} is a time bucket; pass it as bucket={k!r}, not in by")
    return keys
