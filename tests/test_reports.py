"""Reports over a real ledger (real SDK calls to the fake server): totals reconcile exactly,
unattributed spend is its own row, chargeback allocations keep the total, outcomes, budgets,
exceptions and governance; rendered as a table, CSV and JSON."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openai
import pytest

import tokenguard as tg
from support import API_KEY
from tokenguard.reports import Allocation, render
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "hi"}]
# gpt-4o-mini: 1M input tokens cost $0.15; gpt-4o: $2.50
USAGE = FakeUsage(input_tokens=1_000_000, output_tokens=0)


def call(client, model="gpt-4o-mini"):
    client.chat.completions.create(model=model, messages=MSG, max_tokens=5)


@pytest.fixture
def ledger(fake_llm):
    """support 3 calls ($0.45), sales 1 call on gpt-4o ($2.50), the shared search app 2 calls with no
    team ($0.30), and 1 call with no tags at all ($0.15)."""
    fake_llm.set_usage(USAGE)
    guard = tg.Guard(telemetry=False, nudges=False)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    with tg.tags(team="support", app="helpdesk"):
        for _ in range(3):
            call(client)
    with tg.tags(team="sales", app="crm"):
        call(client, "gpt-4o")
    with tg.tags(app="search"):
        call(client)
        call(client)
    call(client)
    return guard


def by_key(report):
    return {r.key: r for r in report.rows}


def test_spend_rows_reconcile_exactly_with_the_ledger_and_show_unattributed_spend(ledger):
    report = ledger.reports.spend(["team"])
    rows = by_key(report)
    assert rows[("support",)].cost_usd == Decimal("0.45")
    assert rows[("sales",)].cost_usd == Decimal("2.5")
    assert rows[(None,)].cost_usd == Decimal("0.45") and rows[(None,)].calls == 3  # its own row, last
    assert report.rows[-1].key == (None,)
    ledger_total = sum(r.cost_usd for r in ledger.records())
    assert report.total.cost_usd == sum(r.cost_usd for r in report.rows) == ledger_total == Decimal("3.4")
    assert report.total.calls == 7


def test_spend_by_several_keys_and_buckets(ledger):
    today = datetime.now(timezone.utc)
    report = ledger.reports.spend(["app", "model", "month"])
    rows = by_key(report)
    month = f"{today.year:04d}-{today.month:02d}"
    assert rows[("crm", "gpt-4o", month)].calls == 1
    assert rows[("helpdesk", "gpt-4o-mini", month)].cost_usd == Decimal("0.45")
    assert (None, "gpt-4o-mini", month) in rows
    daily = ledger.reports.spend(["day"], since=today - timedelta(days=1))
    assert [r.key for r in daily.rows] == [(today.date().isoformat(),)]
    assert ledger.reports.spend(["team"], until=today - timedelta(days=1)).rows == []


def test_chargeback_allocations_keep_the_total(ledger):
    proportional = ledger.reports.spend(["team"], allocations=[Allocation(source={"app": "search"}, to="team")])
    rows = by_key(proportional)
    # $0.30 of search split as direct spend: support 0.45, sales 2.50
    assert rows[("support",)].allocated_usd + rows[("sales",)].allocated_usd == Decimal("0.30")
    assert rows[("support",)].allocated_usd == (Decimal("0.30") * Decimal("0.45") / Decimal("2.95")).quantize(
        Decimal("1e-12")
    )
    assert rows[(None,)].cost_usd == Decimal("0.15")  # the untagged call is still unattributed
    assert proportional.total.cost_usd == Decimal("3.4") == sum(r.cost_usd for r in proportional.rows)
    fixed = ledger.reports.spend(
        ["team"], allocations=[Allocation(source={"app": "search"}, to="team", weights={"support": 1, "sales": 3})]
    )
    assert by_key(fixed)[("sales",)].allocated_usd == Decimal("0.225")
    assert fixed.total.cost_usd == Decimal("3.4")
    assert "allocated $0.300000 of app=search to team by fixed weights" in fixed.notes
    with pytest.raises(tg.ConfigError, match="needs 'team' among the report's keys"):
        ledger.reports.spend(["app"], allocations=[Allocation(source={"app": "search"}, to="team")])


def test_rendered_as_table_csv_and_json(ledger):
    table = ledger.reports.spend(["team"]).table()
    text = render(table, "table")
    assert "support" in text and "(unattributed)" in text and "TOTAL" in text and "$3.400000" in text
    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert rows[-1]["team"] == "TOTAL" and Decimal(rows[-1]["cost_usd"]) == Decimal("3.4")
    assert sum(Decimal(r["cost_usd"]) for r in rows[:-1]) == Decimal("3.4")
    data = json.loads(render(table, "json"))
    assert Decimal(data["total"]["cost_usd"]) == Decimal("3.4") and data["rows"][-1]["team"] is None


def test_outcomes_cost_per_successful_task(fake_llm):
    fake_llm.set_usage(USAGE)
    guard = tg.Guard(telemetry=False, nudges=False)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    for i in range(4):
        with tg.tags(team="support"), tg.task("summarize", guard=guard) as t:
            call(client)
            t.succeed() if i < 3 else t.fail("wrong")
        if i < 2:
            guard.review(t.id, accepted=i == 0, edit_distance=0.2 * (i + 1))
    [row] = guard.reports.outcomes(["task"]).rows
    assert (row.tasks, row.succeeded, row.reviewed, row.accepted) == (4, 3, 2, 1)
    assert row.success_rate == 0.75 and row.acceptance_rate == 0.5
    assert row.mean_edit_distance == pytest.approx(0.3)
    assert row.cost_usd == Decimal("0.60") and row.cost_per_success == Decimal("0.2")
    assert row.tokens_per_success == pytest.approx((4 * (1_000_000 + 5)) / 3, rel=0.01)
    [by_model] = guard.reports.outcomes(["model", "team"]).rows
    assert by_model.key == ("gpt-4o-mini", "support")


def test_budget_projection_and_exceptions_audit(fake_llm):
    fake_llm.set_usage(USAGE)
    guard = tg.Guard(telemetry=False, nudges=False, budgets=[tg.Budget("b", limit_usd="0.20", hard_at=1)])
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    call(client)  # $0.15
    grant = guard.grant_exception("b", "0.50", "cfo", "launch", datetime.now(timezone.utc) + timedelta(days=1))
    call(client)  # $0.30 spent: $0.10 above the $0.20 cap came from the grant
    [row] = guard.reports.budgets().rows
    assert row.status.spent_usd == Decimal("0.30")
    assert row.projected_usd is not None and row.projected_usd >= Decimal("0.30")
    [audit] = guard.reports.exceptions().rows
    assert (audit.id, audit.used_usd, audit.status, audit.approved_by) == (grant.id, Decimal("0.10"), "active", "cfo")
    guard.revoke_exception(grant.id)
    assert guard.reports.exceptions().rows[0].status == "revoked"


def test_governance_report_of_the_demo():
    from tokenguard.cli import _demo_guard, _demo_workload
    from tokenguard.testing import FakeLLMServer

    guard = _demo_guard()
    with FakeLLMServer() as server:
        _demo_workload(guard, server)
    report = guard.reports.governance()
    assert report.blocked == {"usecase:contract_review:block": 1}
    assert report.unapproved_high_risk == {"contract_review": 1}
    assert report.routed == {"downgrade:review": 1, "fallback:429": 1}
    assert report.sensitive[("email", "redact")] == 8
    assert report.downgrade_savings_usd > 0
    text = render(report.table())
    assert "high-risk, no approval" in text and "downgrade:review" in text


def test_bad_arguments():
    guard = tg.Guard(telemetry=False)
    with pytest.raises(tg.ConfigError, match="at least one key"):
        guard.reports.spend([])
    with pytest.raises(ValueError, match="timezone-aware"):
        guard.reports.spend(["team"], since=datetime(2026, 1, 1))
    with pytest.raises(tg.ConfigError, match="weights"):
        Allocation(source={"app": "x"}, to="team", weights={"a": 0})
