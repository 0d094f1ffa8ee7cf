"""What-if: replay a period of the ledger under another policy file, and show what its budgets,
routing, use cases and nudges would have done, and what the period would have cost.

Each call that reached the vendor is replayed in order, with its tags, task, usage and sensitive-
data findings, through the new policy's rules:

* **use cases**: a high-risk task without an approval reference is refused; a model its tier does
  not allow goes to the tier's default model, or is refused;
* **sensitive data**: a kind the new policy blocks refuses the call (the findings are those
  recorded by the original scan, so only kinds that were scanned for then can be judged);
* **routes** of the file (scoped ``[[routes]]``): allow-lists and defaults, ``max_input_tokens``
  (on the call's recorded input tokens), and ``downgrade`` while a simulated budget is in review;
* **budgets**: each call is admitted with its (re-priced) real cost against the simulated spend of
  every matching budget; past the cap, or in review with ``review_action="block"``, it is refused;
* **nudges**: the calls that would have had a ``context_length`` nudge, and the budgets that would
  have crossed their alert threshold.

A rerouted call is priced with the same usage on the new model. Not replayed: ``tg.route`` scopes
in the application's code (they are not in a policy file), calls that were refused at the time
(the vendor never reported their usage), and the vendor's answers themselves.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

from ..records import CallRecord
from ..routing import Unroutable, choose_model, effective
from ..stores.base import CallQuery
from .table import Column, Table

if TYPE_CHECKING:
    from ..guard import Guard

__all__ = ["SimulationReport", "simulate"]

_ZERO = Decimal(0)


@dataclass
class BudgetOutcome:
    name: str
    limit_usd: Decimal
    cap_usd: Decimal
    spent_usd: Decimal = _ZERO
    refused: int = 0
    alerted: bool = False

    @property
    def state(self) -> str:
        if self.refused or self.spent_usd >= self.cap_usd:
            return "exceeded"
        return "review" if self.spent_usd >= self.limit_usd else "ok"


@dataclass
class SimulationReport:
    """The outcome of replaying a period under another policy (see the module's docstring)."""

    policy: str
    since: datetime | None
    until: datetime | None
    calls: int = 0
    skipped: int = 0
    """Calls refused at the time: no usage to replay."""
    actual_usd: Decimal = _ZERO
    simulated_usd: Decimal = _ZERO
    refused: dict[str, int] = field(default_factory=dict)
    """The decision that would have refused -> calls."""
    refused_usd: Decimal = _ZERO
    """What the calls that would have been refused actually cost."""
    rerouted: dict[str, int] = field(default_factory=dict)
    """``reason: model -> model`` -> calls."""
    rerouted_delta_usd: Decimal = _ZERO
    """Simulated minus actual cost of the rerouted calls."""
    nudges: dict[str, int] = field(default_factory=dict)
    budgets: list[BudgetOutcome] = field(default_factory=list)
    unpriced: int = 0
    """Rerouted calls whose new model has no known price (kept at their actual cost)."""

    def table(self) -> Table:
        rows: list[list[object]] = [
            ["period", "calls replayed", self.calls, self.actual_usd],
            ["period", "cost under the new policy", self.calls - sum(self.refused.values()), self.simulated_usd],
            ["period", "difference", None, self.simulated_usd - self.actual_usd],
        ]
        rows += [["would refuse", d, n, None] for d, n in sorted(self.refused.items())]
        if self.refused:
            rows.append(["would refuse", "their actual cost", sum(self.refused.values()), self.refused_usd])
        rows += [["would reroute", what, n, None] for what, n in sorted(self.rerouted.items())]
        if self.rerouted:
            rows.append(["would reroute", "cost difference", sum(self.rerouted.values()), self.rerouted_delta_usd])
        rows += [["nudges", kind, n, None] for kind, n in sorted(self.nudges.items())]
        rows += [
            ["budget " + b.name, f"{b.state}: spent of ${b.limit_usd} (cap ${b.cap_usd})", b.refused, b.spent_usd]
            for b in self.budgets
        ]
        notes = [f"policy {self.policy}; {self.skipped} calls refused at the time were not replayed"]
        if self.unpriced:
            notes.append(f"{self.unpriced} rerouted calls have no price for their new model: kept at their cost")
        return Table(
            title="Simulation",
            columns=[Column("section"), Column("what"), Column("calls", "int"), Column("usd", "usd")],
            rows=rows,
            notes=notes,
        )


def simulate(
    guard: Guard,
    policy: str | Path,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    progress: bool = False,
) -> SimulationReport:
    """Replay ``guard``'s ledger between ``since`` and ``until`` under the policy file ``policy``.

    Nothing is written anywhere: the new policy runs on a ``memory://`` store of its own.
    ``progress`` shows a progress bar on standard error (for long ledgers).
    """
    import tokenguard as tg

    new = tg.Guard.from_file(policy, store="memory://", telemetry=False, nudges=True)
    report = SimulationReport(str(policy), since, until)
    outcomes = {b.name: BudgetOutcome(b.name, b.limit_usd, b.cap_usd) for b in new.budgets}
    report.budgets = list(outcomes.values())
    spent: dict[tuple[str, str], Decimal] = {}
    context_limit = new.nudger.policy.context_length_tokens if new.nudger is not None else None
    for r in _with_progress(guard.records(since=since, until=until), progress, guard, since, until):
        if r.status == "blocked":
            report.skipped += 1
            continue
        report.calls += 1
        report.actual_usd += r.cost_usd or _ZERO
        refusal, model, reason = _policy(new, r, spent)
        cost = r.cost_usd or _ZERO
        if refusal is None and model != r.request_model:
            rates = new.prices.rates(r.provider, model, r.time)
            if rates is None:
                report.unpriced += 1
            else:
                cost = rates.cost(r.usage())
        if refusal is None:
            refusal = _admit(new, r, model, cost, spent, outcomes)
        if refusal is not None:
            report.refused[refusal] = report.refused.get(refusal, 0) + 1
            report.refused_usd += r.cost_usd or _ZERO
            continue
        if reason is not None:
            what = f"{reason}: {r.request_model} -> {model}"
            report.rerouted[what] = report.rerouted.get(what, 0) + 1
            report.rerouted_delta_usd += cost - (r.cost_usd or _ZERO)
        report.simulated_usd += cost
        if context_limit is not None and r.input_tokens > context_limit:
            report.nudges["context_length"] = report.nudges.get("context_length", 0) + 1
    alerts = sum(1 for b in outcomes.values() if b.alerted)
    if alerts:
        report.nudges["budget_alert"] = alerts
    return report


def _policy(new: Guard, r: CallRecord, spent: Mapping[tuple[str, str], Decimal]) -> tuple[str | None, str, str | None]:
    """(the refusing decision or None, the model, the routing reason) under the new policy."""
    tags = r.tags
    binding = new.catalog.bind(r.task_name) if r.task_name and new.catalog else None
    sensitive = binding.sensitive if binding is not None else new.sensitive
    model = r.request_model
    if binding is not None and binding.requires_approval and not tags.get(binding.approval_tag):
        return f"usecase:{binding.name}:block", model, None
    for kind in sorted(r.findings):
        if sensitive.get(kind) == "block":
            return f"sensitive:{kind}:block", model, None
    try:
        model, reason = choose_model(
            r.provider,
            model,
            effective(new.routes, tags, model),
            binding,
            belongs=new._belongs,
            input_tokens=lambda _model: r.input_tokens,
            in_review=lambda m: _in_review(new, r, m, spent),
        )
    except Unroutable as exc:
        return f"route:{exc.rule}:block", model, None
    return None, model, reason


def _in_review(new: Guard, r: CallRecord, model: str, spent: Mapping[tuple[str, str], Decimal]) -> bool:
    return any(
        b.review_action == "downgrade"
        and b.matches(r.tags, model)
        and spent.get((b.name, b.window_id(r.time)), _ZERO) >= b.limit_usd * b.review_at
        for b in new.budgets
    )


def _admit(
    new: Guard,
    r: CallRecord,
    model: str,
    cost: Decimal,
    spent: dict[tuple[str, str], Decimal],
    outcomes: Mapping[str, BudgetOutcome],
) -> str | None:
    """Admit the call's real cost into every matching budget, or name the budget that refuses it."""
    matching = [b for b in new.budgets if b.matches(r.tags, model)]
    for b in matching:
        so_far = spent.get((b.name, b.window_id(r.time)), _ZERO)
        blocked_in_review = b.review_action == "block" and so_far >= b.limit_usd * b.review_at
        if blocked_in_review or so_far + cost > b.cap_usd:
            outcomes[b.name].refused += 1
            return f"budget:{b.name}:blocked"
    for b in matching:
        key = (b.name, b.window_id(r.time))
        spent[key] = spent.get(key, _ZERO) + cost
        outcome = outcomes[b.name]
        outcome.spent_usd += cost
        if spent[key] >= b.limit_usd * b.alert_at:
            outcome.alerted = True
    return None


def _with_progress(
    records: Iterator[CallRecord], progress: bool, guard: Guard, since: datetime | None, until: datetime | None
) -> Iterator[CallRecord]:
    if not progress:
        yield from records
        return
    from rich.progress import Progress

    total = sum(t.calls for t in guard.store.call_totals(CallQuery(since=since, until=until), ()))
    with Progress(transient=True) as bar:
        task = bar.add_task("replaying the ledger", total=total)
        for n, r in enumerate(records, 1):
            yield r
            if n % 1000 == 0:
                bar.update(task, completed=n)
        bar.update(task, completed=total)
