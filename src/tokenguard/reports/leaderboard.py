"""The efficiency leaderboard: teams, users or workflows ranked by what their AI spend achieved.

It rewards the right thing. A group is ranked by its **cost per accepted task** (lowest first), then
by how sure we are that its work is accepted (the lower end of the acceptance rate's 95% interval,
highest first), then by its **compliance** (the share of its calls no policy had to refuse). Raw
token volume is shown for context only: it never enters the ranking, so burning tokens cannot buy a
place on the board ("usage theatre").

Small samples are not ranked. A group needs ``min_tasks`` human-reviewed tasks before it gets a
rank; until then it is listed at the end, unranked, with its figures and a note saying why. Every
rate comes with its uncertainty: the acceptance rate with a Wilson 95% interval, and the cost per
accepted task with the interval that follows from it.

How the figures are computed (all from the store's grouped totals, no loop over the ledger):

* ``acceptance_rate`` = accepted / reviewed: human reviews (``task.review(accepted=...)`` or
  ``guard.review``) are the measure of quality. Succeeded-but-unreviewed tasks are *not* used as a
  proxy: a self-reported "succeeded" and a human's "accepted" are different bars, and mixing them
  would let a group that skips reviews outrank one that does them.
* ``cost_per_accepted`` = ``cost_usd`` / (``tasks`` * ``acceptance_rate``): the group's whole task
  cost (failed and unreviewed tasks included) over the number of its tasks expected to be accepted,
  assuming its unreviewed tasks are accepted at the same rate as its reviewed ones. When every task
  was reviewed this is exactly ``cost_usd / accepted``; when only some were, it does not penalise a
  group for reviewing fewer of its tasks.
* ``cost_per_accepted_ci``: the same formula at both ends of the acceptance interval
  (cost per task / upper bound, cost per task / lower bound). With no accepted task the upper end
  is ``Decimal("Infinity")``: the data cannot bound it.
* ``compliance_rate`` = 1 - refused / calls over all the group's calls in the window (inside tasks
  or not), where *refused* counts the calls a policy refused before sending (status ``blocked``:
  a budget's hard cap, a use case without approval, sensitive data with the ``block`` action,
  a routing rule, an unpriced model under a hard budget, an escalated nudge). A call refused only
  because the store was down (``store:unavailable``) is an outage, not the group's conduct, and
  counts as compliant. Redacted or flagged sensitive data is not a refusal.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal
from statistics import NormalDist
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..stores.base import CALL_FIELDS, TASK_FIELDS, CallQuery, CallTotals, TaskQuery, TaskTotals, group_key
from .table import Column, Table, aware, window_title

if TYPE_CHECKING:
    from ..guard import Guard
    from ..records import CallRecord

__all__ = ["Leaderboard", "LeaderboardRow", "leaderboard", "wilson_interval"]

Z95 = NormalDist().inv_cdf(0.975)
"""1.959963...: the two-sided 95% quantile of the standard normal distribution."""
_ZERO = Decimal(0)
_NANO = Decimal("1e-9")  # interval ends are rounded to a nano-dollar, the store's unit of money
_OUTAGE = "store:unavailable"


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float] | None:
    """The Wilson score interval of a proportion ``successes / n`` (95% by default), or ``None``
    when ``n`` is 0.

    In plain words: the range of true rates that the observed count is compatible with. Unlike the
    textbook "p ± 1.96·standard error", it stays inside [0, 1] and is honest for small samples and
    for rates of 0% or 100% (3 of 3 accepted gives 44%-100%, not 100%-100%). The formula, with
    p = successes / n::

        centre = (p + z²/2n) / (1 + z²/n)
        half   = z / (1 + z²/n) · sqrt(p(1 - p)/n + z²/4n²)
        interval = centre ± half
    """
    if n <= 0:
        return None
    if not 0 <= successes <= n:
        raise ValueError(f"successes must be between 0 and n={n}, got {successes}")
    p = successes / n
    z2 = z * z
    denominator = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    return (max(0.0, centre - half), min(1.0, centre + half))


@dataclass(frozen=True)
class LeaderboardRow:
    """One group of the leaderboard (see the module's documentation for every formula)."""

    rank: int | None
    """1 is best; equal figures share a rank (1, 1, 3). ``None``: not ranked (see ``note``)."""
    key: str | None
    """The group: a team, user or workflow; ``None`` for tasks and calls without the key."""
    tasks: int
    reviewed: int
    accepted: int
    succeeded: int
    acceptance_rate: float | None
    """accepted / reviewed (``None`` without reviews)."""
    acceptance_ci: tuple[float, float] | None
    """Wilson 95% interval of the acceptance rate."""
    cost_usd: Decimal
    """The cost of the group's finished tasks (the calls inside them)."""
    cost_per_accepted: Decimal | None
    """cost_usd / (tasks * acceptance_rate); ``None`` without reviews or accepted tasks."""
    cost_per_accepted_ci: tuple[Decimal, Decimal] | None
    """cost per task / the acceptance interval's upper and lower ends."""
    compliance_rate: float | None
    """Share of the group's calls not refused by a policy (``None`` without calls)."""
    tokens: int
    """Input + output tokens of all the group's calls: context only, never used to rank."""
    note: str | None = None
    """Why the group is not ranked, when it is not."""


@dataclass(frozen=True)
class Leaderboard:
    """Ranked groups first (best first), then the unranked ones."""

    by: str
    min_tasks: int
    since: datetime | None
    until: datetime | None
    rows: list[LeaderboardRow]
    notes: list[str] = field(default_factory=list)

    def table(self) -> Table:
        cols = [
            Column("rank", "int"),
            Column(self.by),
            Column("tasks", "int"),
            Column("reviewed", "int"),
            Column("acceptance_rate", "pct"),
            Column("acceptance_ci_low", "pct"),
            Column("acceptance_ci_high", "pct"),
            Column("cost_usd", "usd"),
            Column("cost_per_accepted", "usd"),
            Column("cost_per_accepted_ci_low", "usd"),
            Column("cost_per_accepted_ci_high", "usd"),
            Column("compliance_rate", "pct"),
            Column("tokens", "int"),
            Column("note"),
        ]
        rows: list[list[object]] = []
        for r in self.rows:
            a_lo, a_hi = r.acceptance_ci if r.acceptance_ci else (None, None)
            c_lo, c_hi = r.cost_per_accepted_ci if r.cost_per_accepted_ci else (None, None)
            rows.append(
                [
                    r.rank,
                    r.key,
                    r.tasks,
                    r.reviewed,
                    r.acceptance_rate,
                    a_lo,
                    a_hi,
                    r.cost_usd,
                    r.cost_per_accepted,
                    c_lo,
                    c_hi,
                    r.compliance_rate,
                    r.tokens,
                    r.note or "",
                ]
            )
        return Table(
            title=f"Leaderboard by {self.by}" + window_title(self.since, self.until),
            columns=cols,
            rows=rows,
            notes=[
                "ranked by cost per accepted task (lowest first), then the acceptance interval's lower end, "
                "then compliance; equal figures share a rank",
                "tokens: raw volume, shown for context only and never used to rank",
                f"a group needs {self.min_tasks} reviewed tasks to be ranked; "
                "acceptance intervals are Wilson 95%, cost per accepted task's interval follows from them",
                "compliance: share of calls not refused by a policy before sending (store outages excluded)",
                *self.notes,
            ],
        )


def leaderboard(
    guard: Guard,
    by: str = "team",
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    min_tasks: int = 20,
) -> Leaderboard:
    """Rank the groups of ``by`` (a tag key such as ``team`` or ``user``, ``"task"`` for workflows,
    or ``"tag:<key>"`` for a tag named like a field) over tasks started and calls made in
    ``[since, until)``.

    Ranking, best first: lower cost per accepted task; then the higher lower end of the acceptance
    rate's Wilson 95% interval; then higher compliance. A group with fewer than ``min_tasks``
    reviewed tasks, and the unattributed group (``key=None``), is listed after the ranked ones with
    ``rank=None`` and a note. Token volume is reported and never used.
    """
    by = _check_by(by)
    if isinstance(min_tasks, bool) or not isinstance(min_tasks, int) or min_tasks < 1:
        raise ConfigError(f"leaderboard: min_tasks must be an integer >= 1, got {min_tasks!r}")
    since, until = aware(since), aware(until)
    store = guard.store
    task_totals: dict[str | None, TaskTotals] = {
        t.key[0]: t for t in store.task_totals(TaskQuery(since=since, until=until), [by])
    }
    call_query = CallQuery(since=since, until=until)
    call_totals: dict[str | None, CallTotals] = {t.key[0]: t for t in store.call_totals(call_query, [by])}
    outages = _outage_refusals(store.calls(CallQuery(since=since, until=until, status="blocked")), by)

    rows: list[LeaderboardRow] = []
    for key in set(task_totals) | set(call_totals):
        rows.append(_row(key, task_totals.get(key), call_totals.get(key), outages.get(key, 0), min_tasks))
    ranked = sorted((r for r in rows if r.note is None), key=lambda r: (_merit(r), _order(r.key)))
    unranked = sorted(
        (r for r in rows if r.note is not None), key=lambda r: (r.key is None, -r.reviewed, -r.tasks, r.key or "")
    )
    final: list[LeaderboardRow] = []
    for i, r in enumerate(ranked):
        tied = i > 0 and _merit(r) == _merit(ranked[i - 1])
        rank = final[-1].rank if tied else i + 1
        final.append(replace(r, rank=rank))
    notes = []
    if not ranked:
        notes.append(f"nobody is ranked yet: no group has {min_tasks} reviewed tasks")
    return Leaderboard(by, min_tasks, since, until, final + unranked, notes)


def _row(key: str | None, t: TaskTotals | None, c: CallTotals | None, outages: int, min_tasks: int) -> LeaderboardRow:
    t = t or TaskTotals((key,))
    c = c or CallTotals((key,))
    acceptance = t.accepted / t.reviewed if t.reviewed else None
    interval = wilson_interval(t.accepted, t.reviewed)
    cost_per_accepted: Decimal | None = None
    cost_ci: tuple[Decimal, Decimal] | None = None
    if t.reviewed and t.tasks:
        per_task = t.cost_usd / t.tasks
        if t.accepted:
            cost_per_accepted = t.cost_usd * t.reviewed / (t.tasks * t.accepted)
        if interval is not None:
            lo, hi = interval
            cost_ci = (_divide(per_task, hi), _divide(per_task, lo))
    refused = c.blocked_calls - outages
    compliance = 1 - refused / c.calls if c.calls else None
    note = None
    if key is None:
        note = "unattributed: not a group, never ranked"
    elif t.reviewed < min_tasks:
        note = f"unranked: {t.reviewed} reviewed tasks, {min_tasks} needed"
    return LeaderboardRow(
        rank=None,
        key=key,
        tasks=t.tasks,
        reviewed=t.reviewed,
        accepted=t.accepted,
        succeeded=t.succeeded,
        acceptance_rate=acceptance,
        acceptance_ci=interval,
        cost_usd=t.cost_usd,
        cost_per_accepted=cost_per_accepted,
        cost_per_accepted_ci=cost_ci,
        compliance_rate=compliance,
        tokens=c.input_tokens + c.output_tokens,
        note=note,
    )


def _divide(amount: Decimal, rate: float) -> Decimal:
    """``amount / rate`` to a nano-dollar; ``Infinity`` when the rate is 0 (and the amount is not)."""
    if rate <= 0:
        return Decimal("Infinity") if amount > 0 else _ZERO
    return (amount / Decimal(repr(rate))).quantize(_NANO)


def _merit(r: LeaderboardRow) -> tuple[bool, Decimal, float, float]:
    """The ranking key, smaller is better. Tokens are deliberately absent."""
    low = r.acceptance_ci[0] if r.acceptance_ci else 0.0
    return (
        r.cost_per_accepted is None,
        r.cost_per_accepted if r.cost_per_accepted is not None else _ZERO,
        -low,
        -(r.compliance_rate if r.compliance_rate is not None else 0.0),
    )


def _order(key: str | None) -> tuple[bool, str]:
    return (key is None, key or "")


def _check_by(by: str) -> str:
    if not isinstance(by, str) or not by:
        raise ConfigError(f"leaderboard: by must be a tag key (e.g. 'team', 'user') or 'task', got {by!r}")
    if by == "task" or by.startswith("tag:"):
        return by
    if by in CALL_FIELDS or by in TASK_FIELDS:
        raise ConfigError(
            f"leaderboard: by={by!r} is a field, not a group of people or a workflow; "
            f"give a tag key (e.g. 'team', 'user'), 'task', or 'tag:{by}' for a tag named {by!r}"
        )
    return by


def _outage_refusals(blocked: Iterable[CallRecord], by: str) -> dict[str | None, int]:
    """Per group, the blocked calls refused only because the store was down (read from the
    ``blocked`` records alone, a small part of a ledger)."""
    kind, name = group_key(by, CALL_FIELDS)
    counts: dict[str | None, int] = {}
    for r in blocked:
        if _OUTAGE in r.decisions:
            value = r.task_name if kind == "field" else r.tags.get(name)
            counts[value] = counts.get(value, 0) + 1
    return counts
