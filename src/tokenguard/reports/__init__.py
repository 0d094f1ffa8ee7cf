"""Reports over the ledger: showback and chargeback, outcome economics, budgets, the exceptions
audit and governance. ``guard.reports`` returns a :class:`Reports`; each method returns a typed
report whose ``table()`` renders as a terminal table, CSV or JSON (:func:`render`).

Every view pairs spend with outcomes, and money is exact: a report's rows add up to its total,
and its total to the ledger's. Spend that carries no value for a grouping key is its own row
(``None``, shown as ``(unattributed)``), never hidden or spread silently; chargeback spreads a
shared cost only by an explicit :class:`Allocation`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..stores.base import CALL_FIELDS, TASK_FIELDS, CallQuery, CallTotals, TaskQuery, TaskTotals
from .table import Column, Table, aware, render, window_title

if TYPE_CHECKING:
    from ..budgets import BudgetStatus, Grant
    from ..guard import Guard
    from .anomalies import AnomalyReport
    from .leaderboard import Leaderboard

__all__ = [
    "Allocation",
    "BudgetReport",
    "ExceptionsReport",
    "GovernanceReport",
    "OutcomeReport",
    "Reports",
    "SpendReport",
    "Table",
    "render",
]

_ZERO = Decimal(0)
_REFUSALS = (":block", ":blocked", "price:unknown", "store:unavailable")  # decisions that refuse a call
_CENT_FRACTION = Decimal("1e-12")  # shares of an allocation are exact to a pico-dollar; the last takes the rest


def _check_keys(by: Sequence[str], fields: Sequence[str], what: str) -> tuple[str, ...]:
    if isinstance(by, str):
        by = (by,)
    if not by:
        raise ConfigError(f"{what}: give at least one key to group by (a tag key, or one of {', '.join(fields)})")
    for key in by:
        if not isinstance(key, str) or not key:
            raise ConfigError(f"{what}: group keys are tag keys or one of {', '.join(fields)}; got {key!r}")
    return tuple(by)


@dataclass(frozen=True)
class Allocation:
    """A chargeback rule: the spend of the calls whose tags match ``source`` is charged to the
    values of the grouping key ``to`` (e.g. ``team``), by fixed ``weights`` or, without them, in
    proportion to each value's own direct spend in the same report row (other keys equal).

    Example: ``Allocation(source={"app": "search"}, to="team")`` spreads the shared search app's
    spend over teams as they spend on their own. The report's total does not change.
    """

    source: Mapping[str, str]
    to: str
    weights: Mapping[str, Decimal | int | float | str] | None = None

    def __post_init__(self) -> None:
        if not self.source or not all(isinstance(k, str) and isinstance(v, str) for k, v in self.source.items()):
            raise ConfigError(f"Allocation.source must map tag keys to values, got {self.source!r}")
        if self.weights is not None:
            parsed = {k: Decimal(str(v)) for k, v in self.weights.items()}
            if not parsed or any(w < 0 for w in parsed.values()) or sum(parsed.values()) <= 0:
                raise ConfigError(f"Allocation.weights must be >= 0 and not all 0, got {self.weights!r}")
            object.__setattr__(self, "weights", parsed)


@dataclass(frozen=True)
class SpendRow:
    """One group of a spend report. ``cost_usd`` is what the group is charged: its own calls'
    cost (``direct_usd``) plus what allocations moved to it (``allocated_usd``)."""

    key: tuple[str | None, ...]
    calls: int
    input_tokens: int
    output_tokens: int
    direct_usd: Decimal
    allocated_usd: Decimal
    unpriced_calls: int
    error_calls: int
    blocked_calls: int

    @property
    def cost_usd(self) -> Decimal:
        return self.direct_usd + self.allocated_usd


@dataclass(frozen=True)
class SpendReport:
    """Showback (no allocations) or chargeback: spend, calls and tokens per group."""

    by: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    rows: list[SpendRow]
    total: SpendRow
    notes: list[str] = field(default_factory=list)

    def table(self) -> Table:
        cols = [Column(k) for k in self.by] + [
            Column("calls", "int"),
            Column("input_tokens", "int"),
            Column("output_tokens", "int"),
            Column("cost_usd", "usd"),
            Column("share", "pct"),
        ]
        allocating = any(r.allocated_usd for r in self.rows)
        if allocating:
            cols[-1:-1] = [Column("direct_usd", "usd"), Column("allocated_usd", "usd")]
        unpriced = any(r.unpriced_calls for r in self.rows)
        if unpriced:
            cols.append(Column("unpriced_calls", "int"))
        whole = self.total.cost_usd

        def line(r: SpendRow, key: Sequence[str | None]) -> list[object]:
            values: list[object] = [*key, r.calls, r.input_tokens, r.output_tokens, r.cost_usd]
            if allocating:
                values += [r.direct_usd, r.allocated_usd]
            values.append(round(float(r.cost_usd / whole), 6) if whole else None)
            if unpriced:
                values.append(r.unpriced_calls)
            return values

        title = f"Spend by {', '.join(self.by)}" + (" (chargeback)" if allocating else "")
        return Table(
            title=title + window_title(self.since, self.until),
            columns=cols,
            rows=[line(r, r.key) for r in self.rows],
            total=line(self.total, ["TOTAL", *([""] * (len(self.by) - 1))]),
            notes=self.notes,
        )


@dataclass(frozen=True)
class OutcomeRow:
    """What a group's finished tasks achieved, and what they cost per success."""

    key: tuple[str | None, ...]
    tasks: int
    succeeded: int
    reviewed: int
    accepted: int
    mean_edit_distance: float | None
    calls: int
    tokens: int
    cost_usd: Decimal

    @property
    def success_rate(self) -> float | None:
        return self.succeeded / self.tasks if self.tasks else None

    @property
    def acceptance_rate(self) -> float | None:
        """Accepted among the reviewed tasks (``None`` when none was reviewed)."""
        return self.accepted / self.reviewed if self.reviewed else None

    @property
    def cost_per_success(self) -> Decimal | None:
        """All the group's cost (failed tasks included) over its successful tasks."""
        return self.cost_usd / self.succeeded if self.succeeded else None

    @property
    def tokens_per_success(self) -> float | None:
        return self.tokens / self.succeeded if self.succeeded else None


@dataclass(frozen=True)
class OutcomeReport:
    by: tuple[str, ...]
    since: datetime | None
    until: datetime | None
    rows: list[OutcomeRow]

    def table(self) -> Table:
        cols = [Column(k) for k in self.by] + [
            Column("tasks", "int"),
            Column("success_rate", "pct"),
            Column("acceptance_rate", "pct"),
            Column("mean_edit_distance", "float"),
            Column("cost_usd", "usd"),
            Column("cost_per_success", "usd"),
            Column("tokens_per_success", "int"),
        ]
        rows = [
            [
                *r.key,
                r.tasks,
                r.success_rate,
                r.acceptance_rate,
                r.mean_edit_distance,
                r.cost_usd,
                r.cost_per_success,
                None if r.tokens_per_success is None else round(r.tokens_per_success),
            ]
            for r in self.rows
        ]
        return Table(
            title=f"Outcomes by {', '.join(self.by)}" + window_title(self.since, self.until),
            columns=cols,
            rows=rows,
            notes=["cost_per_success: all the group's cost, failed tasks included, over its successful tasks"],
        )


@dataclass(frozen=True)
class BudgetRow:
    status: BudgetStatus
    projected_usd: Decimal | None
    """Spend at the period's end if the period goes on at its rate so far (``None`` for ``total``)."""

    @property
    def projected_state(self) -> str | None:
        if self.projected_usd is None:
            return None
        s = self.status
        if self.projected_usd >= s.cap_usd:
            return "exceeded"
        return "over limit" if self.projected_usd >= s.limit_usd else "within limit"


@dataclass(frozen=True)
class BudgetReport:
    rows: list[BudgetRow]

    def table(self) -> Table:
        cols = [
            Column("budget"),
            Column("state"),
            Column("spent_usd", "usd"),
            Column("reserved_usd", "usd"),
            Column("limit_usd", "usd"),
            Column("cap_usd", "usd"),
            Column("used", "pct"),
            Column("projected_usd", "usd"),
            Column("projection"),
            Column("period_end"),
        ]
        rows = []
        for r in self.rows:
            s = r.status
            rows.append(
                [
                    s.name,
                    s.state,
                    s.spent_usd,
                    s.reserved_usd,
                    s.limit_usd,
                    s.cap_usd,
                    s.spent_usd / s.limit_usd if s.limit_usd else None,
                    r.projected_usd,
                    r.projected_state or "-",
                    s.period_end.isoformat() if s.period_end else "never",
                ]
            )
        return Table(title="Budgets", columns=cols, rows=rows)


@dataclass(frozen=True)
class ExceptionRow:
    id: str
    budget: str
    extra_usd: Decimal
    used_usd: Decimal
    approved_by: str
    reason: str
    created_at: datetime
    expires_at: datetime
    status: str


@dataclass(frozen=True)
class ExceptionsReport:
    """Every exception: who approved what, why, until when, and how much of it was used."""

    rows: list[ExceptionRow]

    def table(self) -> Table:
        cols = [
            Column("id"),
            Column("budget"),
            Column("extra_usd", "usd"),
            Column("used_usd", "usd"),
            Column("approved_by"),
            Column("reason"),
            Column("created_at"),
            Column("expires_at"),
            Column("status"),
        ]
        rows = [
            [
                r.id,
                r.budget,
                r.extra_usd,
                r.used_usd,
                r.approved_by,
                r.reason,
                r.created_at.isoformat(timespec="seconds"),
                r.expires_at.isoformat(timespec="seconds"),
                r.status,
            ]
            for r in self.rows
        ]
        return Table(
            title="Exceptions (grants)",
            columns=cols,
            rows=rows,
            notes=[
                "used_usd: the spend above the budget's own cap in the period the grant was given, "
                "charged to the period's grants in the order they were given"
            ],
        )


@dataclass(frozen=True)
class GovernanceReport:
    """What governance did: sensitive data found, calls refused and why, high-risk calls without an
    approval, routing and what downgrades saved, nudges given."""

    since: datetime | None
    until: datetime | None
    calls: int
    sensitive: Mapping[tuple[str, str], int]
    """(kind, action) -> detections."""
    blocked: Mapping[str, int]
    """The decision that refused -> calls."""
    unapproved_high_risk: Mapping[str, int]
    """Use case -> calls refused for want of an approval reference."""
    routed: Mapping[str, int]
    """Route reason -> calls."""
    downgrade_savings_usd: Decimal
    """What the downgraded calls would have cost on the model asked for, minus what they cost."""
    nudges: Mapping[str, int]

    def table(self) -> Table:
        rows: list[list[object]] = []
        rows += [["sensitive data", f"{kind} ({action})", n] for (kind, action), n in sorted(self.sensitive.items())]
        rows += [["refused before sending", d, n] for d, n in sorted(self.blocked.items())]
        rows += [["high-risk, no approval", u, n] for u, n in sorted(self.unapproved_high_risk.items())]
        rows += [["routed", reason, n] for reason, n in sorted(self.routed.items())]
        rows += [["nudges", kind, n] for kind, n in sorted(self.nudges.items())]
        return Table(
            title="Governance" + window_title(self.since, self.until),
            columns=[Column("area"), Column("what"), Column("count", "int")],
            rows=rows,
            notes=[
                f"{self.calls:,} calls; downgrades saved ${self.downgrade_savings_usd} against the models asked for"
            ],
        )


class Reports:
    """The reports of one Guard's ledger (``guard.reports``). Times are timezone-aware; ``since``
    is inclusive and ``until`` exclusive, as in :meth:`Guard.records`."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    # -- showback and chargeback -----------------------------------------------------------------

    def spend(
        self,
        by: Sequence[str] = ("team",),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        model: str | None = None,
        allocations: Sequence[Allocation] = (),
    ) -> SpendReport:
        """Spend, calls and tokens grouped by ``by``: tag keys and ``model`` (the one that billed),
        ``request_model``, ``provider``, ``api``, ``operation``, ``status``, ``task``, ``day``,
        ``week``, ``month`` (``tag:<key>`` for a tag named like one of those). ``allocations``
        turn showback into chargeback (see :class:`Allocation`)."""
        by = _check_keys(by, CALL_FIELDS, "spend")
        store = self.guard.store
        query = CallQuery(since=aware(since), until=aware(until), tags=tags, model=model)
        totals = {t.key: t for t in store.call_totals(query, by)}
        allocated: dict[tuple[str | None, ...], Decimal] = {}
        notes: list[str] = []
        for rule in allocations:
            if rule.to not in by:
                raise ConfigError(f"Allocation(to={rule.to!r}) needs {rule.to!r} among the report's keys {by}")
            source_query = CallQuery(
                since=query.since, until=query.until, tags={**(tags or {}), **rule.source}, model=model
            )
            moved = _allocate(rule, by, totals, store.call_totals(source_query, by), allocated)
            what = ", ".join(f"{k}={v}" for k, v in rule.source.items())
            how = "by fixed weights" if rule.weights else "in proportion to direct spend"
            notes.append(f"allocated ${moved:,.6f} of {what} to {rule.to} {how}")
        keys = sorted(set(totals) | set(allocated), key=lambda k: tuple((v is None, v or "") for v in k))
        rows = []
        for k in keys:
            t = totals.get(k) or CallTotals(k)
            rows.append(
                SpendRow(
                    k,
                    t.calls,
                    t.input_tokens,
                    t.output_tokens,
                    t.cost_usd,
                    allocated.get(k, _ZERO),
                    t.unpriced_calls,
                    t.error_calls,
                    t.blocked_calls,
                )
            )
        rows = [r for r in rows if r.calls or r.cost_usd]
        total = SpendRow(
            ("TOTAL",),
            sum(r.calls for r in rows),
            sum(r.input_tokens for r in rows),
            sum(r.output_tokens for r in rows),
            sum((r.direct_usd for r in rows), _ZERO),
            sum((r.allocated_usd for r in rows), _ZERO),
            sum(r.unpriced_calls for r in rows),
            sum(r.error_calls for r in rows),
            sum(r.blocked_calls for r in rows),
        )
        if total.unpriced_calls:
            notes.append(f"{total.unpriced_calls} calls have no known price: counted, not priced (never as $0)")
        return SpendReport(by, query.since, query.until, rows, total, notes)

    # -- outcomes --------------------------------------------------------------------------------

    def outcomes(
        self,
        by: Sequence[str] = ("task",),
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> OutcomeReport:
        """Outcome economics of finished tasks grouped by ``by`` (``task``, ``outcome``, ``model``
        (the model that carried most of a task's cost), buckets, tag keys): success and
        acceptance rates, mean edit distance, cost and tokens per successful task."""
        by = _check_keys(by, TASK_FIELDS, "outcomes")
        query = TaskQuery(since=aware(since), until=aware(until), tags=tags)
        rows = [_outcome_row(t) for t in self.guard.store.task_totals(query, by)]
        return OutcomeReport(by, query.since, query.until, rows)

    # -- budgets and exceptions ----------------------------------------------------------------

    def budgets(self, now: datetime | None = None) -> BudgetReport:
        """Every budget's current period, with the spend projected to its end at the rate so far."""
        now = aware(now) or datetime.now(timezone.utc)
        rows = []
        for s in self.guard.budget_status():
            projected = None
            if s.period_start is not None and s.period_end is not None:
                elapsed = (now - s.period_start).total_seconds()
                length = (s.period_end - s.period_start).total_seconds()
                if elapsed > 0:
                    projected = (s.spent_usd * Decimal(length) / Decimal(elapsed)).quantize(Decimal("0.000001"))
            rows.append(BudgetRow(s, projected))
        return BudgetReport(rows)

    def exceptions(self, budget: str | None = None, now: datetime | None = None) -> ExceptionsReport:
        """Every exception granted, with how much of it the budget's spend used."""
        now = aware(now) or datetime.now(timezone.utc)
        guard = self.guard
        grants = guard.exceptions(budget)
        used: dict[str, Decimal] = {}
        by_window: dict[tuple[str, str], list[Grant]] = {}
        for g in grants:
            b = guard._budget(g.budget)
            by_window.setdefault((b.name, b.window_id(g.created_at)), []).append(g)
        for (name, _), window_grants in by_window.items():
            b = guard._budget(name)
            start, end = b.window(window_grants[0].created_at)
            scope = dict(b.scope)
            scoped_model = scope.pop("model", None)
            spent = sum(
                (
                    t.cost_usd
                    for t in guard.store.call_totals(
                        CallQuery(since=start, until=end, tags=scope, model=scoped_model), ()
                    )
                ),
                _ZERO,
            )
            overflow = max(spent - b.cap_usd, _ZERO)
            for g in sorted(window_grants, key=lambda g: g.created_at):
                share = min(overflow, g.extra_usd)
                used[g.id] = share
                overflow -= share
        rows = [
            ExceptionRow(
                g.id,
                g.budget,
                g.extra_usd,
                used.get(g.id, _ZERO),
                g.approved_by,
                g.reason,
                g.created_at,
                g.expires_at,
                "revoked" if g.revoked else ("active" if g.active(now) else "expired"),
            )
            for g in grants
        ]
        return ExceptionsReport(rows)

    # -- anomalies and the leaderboard -----------------------------------------------------------

    def anomalies(
        self,
        by: Sequence[str] = ("team",),
        *,
        bucket: str = "day",
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> AnomalyReport:
        """Spend spikes and failure bursts against each group's own baseline, and groups with high
        spend and low success (see :mod:`tokenguard.reports.anomalies`)."""
        from .anomalies import find_anomalies

        return find_anomalies(
            self.guard, _check_keys(by, CALL_FIELDS, "anomalies"), bucket=bucket, since=since, until=until
        )

    def leaderboard(
        self, by: str = "team", *, since: datetime | None = None, until: datetime | None = None, min_tasks: int = 20
    ) -> Leaderboard:
        """Teams, users or workflows ranked by cost per accepted task and quality, never by token
        volume (see :mod:`tokenguard.reports.leaderboard`)."""
        from .leaderboard import leaderboard

        return leaderboard(self.guard, by, since=since, until=until, min_tasks=min_tasks)

    # -- governance ------------------------------------------------------------------------------

    def governance(self, *, since: datetime | None = None, until: datetime | None = None) -> GovernanceReport:
        """Counts of what governance did over the ledger's calls (see :class:`GovernanceReport`)."""
        guard = self.guard
        sensitive: dict[tuple[str, str], int] = {}
        blocked: dict[str, int] = {}
        unapproved: dict[str, int] = {}
        routed: dict[str, int] = {}
        nudges: dict[str, int] = {}
        savings = _ZERO
        calls = 0
        for r in guard.records(since=since, until=until):
            calls += 1
            for kind, n in r.findings.items():
                action = next((d.rsplit(":", 1)[1] for d in r.decisions if d.startswith(f"sensitive:{kind}:")), "?")
                sensitive[(kind, action)] = sensitive.get((kind, action), 0) + n
            if r.status == "blocked":
                refusal = next((d for d in r.decisions if d.endswith(_REFUSALS)), "other")
                blocked[refusal] = blocked.get(refusal, 0) + 1
                if refusal.startswith("usecase:"):
                    use_case = refusal.split(":")[1]
                    unapproved[use_case] = unapproved.get(use_case, 0) + 1
            if r.route_reason:
                routed[r.route_reason] = routed.get(r.route_reason, 0) + 1
                if r.route_reason == "downgrade:review" and r.routed_from and r.cost_usd is not None:
                    rates = guard.prices.rates(r.provider, r.routed_from, r.time)
                    if rates is not None:
                        savings += rates.cost(r.usage()) - r.cost_usd
            for kind in r.nudges:
                nudges[kind] = nudges.get(kind, 0) + 1
        return GovernanceReport(since, until, calls, sensitive, blocked, unapproved, routed, savings, nudges)


def _outcome_row(t: TaskTotals) -> OutcomeRow:
    return OutcomeRow(
        key=t.key,
        tasks=t.tasks,
        succeeded=t.succeeded,
        reviewed=t.reviewed,
        accepted=t.accepted,
        mean_edit_distance=t.edit_distance_sum / t.edit_distance_count if t.edit_distance_count else None,
        calls=t.calls,
        tokens=t.input_tokens + t.output_tokens,
        cost_usd=t.cost_usd,
    )


def _allocate(
    rule: Allocation,
    by: tuple[str, ...],
    totals: dict[tuple[str | None, ...], CallTotals],
    sources: list[CallTotals],
    allocated: dict[tuple[str | None, ...], Decimal],
) -> Decimal:
    """Move each source group's cost from its row to the rows of ``rule.to`` values (same other
    keys), exactly: every share but the last is rounded to a pico-dollar, the last takes the rest."""
    i = by.index(rule.to)
    moved = _ZERO
    for src in sources:
        cost = src.cost_usd
        if not cost:
            continue
        # the source's own calls stay counted in their row; their cost moves
        row = totals[src.key]
        row.cost_usd -= cost
        others = src.key[:i] + src.key[i + 1 :]
        weights: dict[str, Decimal]
        if rule.weights is not None:
            weights = {v: Decimal(str(w)) for v, w in rule.weights.items() if Decimal(str(w)) > 0}
        else:
            weights = {
                value: t.cost_usd
                for k, t in totals.items()
                if (value := k[i]) is not None and k[:i] + k[i + 1 :] == others and t.cost_usd > 0
            }
        if not weights:  # nobody to charge: the cost stays where it was
            row.cost_usd += cost
            continue
        whole = sum(weights.values(), _ZERO)
        targets = sorted(weights)
        left = cost
        for n, value in enumerate(targets):
            share = left if n == len(targets) - 1 else (cost * weights[value] / whole).quantize(_CENT_FRACTION)
            left -= share
            key = (*src.key[:i], value, *src.key[i + 1 :])
            allocated[key] = allocated.get(key, _ZERO) + share
        moved += cost
    return moved
