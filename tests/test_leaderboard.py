"""The leaderboard over a real ledger: tasks and their calls are real governed calls (the real
openai SDK over HTTP to the fake server), reviews go through ``guard.review``, refusals come from a
real budget. Ranking order, the minimum sample, Wilson intervals checked against hand-computed
values, token volume never ranking, compliance, and rendering."""

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
from tokenguard.records import CallRecord
from tokenguard.reports import render
from tokenguard.reports.leaderboard import leaderboard, wilson_interval
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "hi"}]
# gpt-4o-mini: 1M input tokens cost $0.15; gpt-4o: $2.50
MILLION = FakeUsage(input_tokens=1_000_000, output_tokens=0)


def make_guard(store: str, **kw) -> tg.Guard:
    return tg.Guard(store=store, telemetry=False, nudges=False, **kw)


@pytest.fixture(params=["memory", "sqlite"])
def store(request, tmp_path):
    return "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ledger.db'}"


def client_for(guard, fake_llm):
    return guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))


def run_tasks(guard, client, team, n, *, reviewed=None, accepted=0, model="gpt-4o-mini", name="draft"):
    """``n`` tasks of one call each for ``team``; the first ``reviewed`` are reviewed, the first
    ``accepted`` of those accepted. Every task succeeds."""
    reviewed = n if reviewed is None else reviewed
    with tg.tags(team=team):
        for i in range(n):
            with tg.task(name, guard=guard) as t:
                client.chat.completions.create(model=model, messages=MSG, max_tokens=5)
                t.succeed()
            if i < reviewed:
                guard.review(t.id, accepted=i < accepted)


def test_wilson_interval_against_hand_computed_values():
    # 18 of 20: p = 0.9, z = 1.96, z^2 = 3.8415; denominator 1 + 3.8415/20 = 1.19207
    # centre (0.9 + 3.8415/40) / 1.19207 = 0.83556; half 1.64418 * sqrt(0.0045 + 0.0024009) = 0.13659
    lo, hi = wilson_interval(18, 20)
    assert (lo, hi) == (pytest.approx(0.6990, abs=5e-5), pytest.approx(0.9721, abs=5e-5))
    # 0 of 5: [0, z^2/(n + z^2)] = [0, 3.8415/8.8415]
    assert wilson_interval(0, 5) == (0.0, pytest.approx(3.8415 / 8.8415, abs=1e-4))
    lo, hi = wilson_interval(20, 20)  # [n/(n + z^2), 1]
    assert (lo, hi) == (pytest.approx(20 / 23.8415, abs=1e-4), 1.0)
    assert wilson_interval(0, 0) is None
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_ranking_order_minimum_sample_and_uncertainty(store, fake_llm):
    fake_llm.set_usage(MILLION)
    guard = make_guard(store)
    client = client_for(guard, fake_llm)
    run_tasks(guard, client, "alpha", 20, accepted=18)  # $3.00 / 18 accepted = $0.1667
    run_tasks(guard, client, "beta", 20, accepted=15)  # $3.00 / 15 = $0.20
    run_tasks(guard, client, "gamma", 20, accepted=20, model="gpt-4o")  # every task accepted, but $50 / 20 = $2.50
    run_tasks(guard, client, "delta", 5, accepted=5)  # the best figures, too few to rank
    run_tasks(guard, client, "epsilon", 30, reviewed=10, accepted=10)  # many tasks, too few reviewed
    with tg.task("draft", guard=guard) as t:  # a task with no team
        client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
        t.succeed()

    board = leaderboard(guard, "team")
    assert [(r.rank, r.key) for r in board.rows] == [
        (1, "alpha"),
        (2, "beta"),
        (3, "gamma"),
        (None, "epsilon"),  # unranked, most reviewed first, the unattributed group last
        (None, "delta"),
        (None, None),
    ]
    alpha = board.rows[0]
    assert (alpha.tasks, alpha.reviewed, alpha.accepted, alpha.succeeded) == (20, 20, 18, 20)
    assert alpha.cost_usd == Decimal("3.00")
    assert alpha.cost_per_accepted == Decimal("3.00") / 18
    assert alpha.acceptance_rate == 0.9
    assert alpha.acceptance_ci == (pytest.approx(0.6990, abs=5e-5), pytest.approx(0.9721, abs=5e-5))
    low, high = alpha.cost_per_accepted_ci
    assert low <= alpha.cost_per_accepted <= high
    # the ends: cost per task ($0.15) over the acceptance interval's ends
    assert float(low) == pytest.approx(0.15 / 0.97213, rel=1e-4)
    assert float(high) == pytest.approx(0.15 / 0.69897, rel=1e-4)
    assert alpha.compliance_rate == 1.0 and alpha.tokens == 20 * 1_000_000

    epsilon = board.rows[3]
    assert epsilon.note == "unranked: 10 reviewed tasks, 20 needed"
    # 30 tasks, 10 of 10 reviewed accepted: expected accepted 30, so cost per accepted = cost per task
    assert epsilon.cost_per_accepted == Decimal("0.15") and epsilon.acceptance_rate == 1.0
    assert board.rows[-1].note.startswith("unattributed")

    # a lower bar ranks delta and epsilon (cheapest per accepted task, then the surer acceptance)
    relaxed = leaderboard(guard, "team", min_tasks=5)
    assert [r.key for r in relaxed.rows if r.rank is not None] == ["epsilon", "delta", "alpha", "beta", "gamma"]
    assert [r.rank for r in relaxed.rows[:2]] == [1, 2]  # the same cost: epsilon's 10/10 beats delta's 5/5
    # workflows: every task here is the "draft" workflow
    [draft] = leaderboard(guard, "task", min_tasks=5).rows
    assert (draft.key, draft.rank, draft.tasks) == ("draft", 1, 96)


def test_token_volume_never_ranks(fake_llm):
    # verbose burns 10x the tokens of lean on a model a tenth the price: the same cost, the same
    # acceptance, the same compliance, so the same rank
    prices = {"bulk-model": tg.Price(input_mtok="0.015", output_mtok="0")}
    guard = make_guard("memory://", prices=prices)
    client = client_for(guard, fake_llm)
    fake_llm.set_usage(FakeUsage(input_tokens=10_000_000, output_tokens=0))
    run_tasks(guard, client, "verbose", 20, accepted=16, model="bulk-model")
    fake_llm.set_usage(MILLION)
    run_tasks(guard, client, "lean", 20, accepted=16)
    run_tasks(guard, client, "pricier", 20, accepted=16, model="gpt-4o")  # fewer tokens than verbose, dearer

    board = leaderboard(guard, "team")
    rows = {r.key: r for r in board.rows}
    assert rows["verbose"].tokens == 10 * rows["lean"].tokens == 20 * 10_000_000
    assert rows["verbose"].cost_usd == rows["lean"].cost_usd == Decimal("3.00")
    assert rows["verbose"].rank == rows["lean"].rank == 1  # a tie, whatever the tokens
    assert rows["pricier"].rank == 3 and rows["pricier"].tokens < rows["verbose"].tokens
    assert "tokens: raw volume, shown for context only and never used to rank" in board.table().notes


def test_compliance_breaks_ties_and_store_outages_do_not_count(fake_llm):
    fake_llm.set_usage(MILLION)
    cap = tg.Budget("careless", limit_usd="3.00", scope={"team": "careless"}, hard_at=1)
    guard = make_guard("memory://", budgets=[cap])
    client = client_for(guard, fake_llm)
    run_tasks(guard, client, "careless", 20, accepted=18)  # $3.00: the cap
    run_tasks(guard, client, "careful", 20, accepted=18)
    with tg.tags(team="careless"):
        for _ in range(2):
            with pytest.raises(tg.BudgetExceeded):
                client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=5)
    # a call refused only because the store was down is an outage, not the team's conduct
    outage = CallRecord(
        id="outage-1",
        time=datetime.now(timezone.utc),
        latency_s=0.0,
        provider="openai",
        operation="chat",
        api="chat.completions",
        request_model="gpt-4o-mini",
        cost_usd=Decimal(0),
        tags={"team": "careful"},
        status="blocked",
        decisions=("store:unavailable",),
    )
    guard.store.settle(None, (), 0, outage, datetime.now(timezone.utc))

    rows = {r.key: r for r in leaderboard(guard, "team").rows}
    assert [r.status for r in guard.records(tags={"team": "careless"})].count("blocked") == 2
    assert rows["careless"].compliance_rate == pytest.approx(20 / 22)
    assert rows["careful"].compliance_rate == 1.0
    assert rows["careless"].cost_per_accepted == rows["careful"].cost_per_accepted
    assert (rows["careful"].rank, rows["careless"].rank) == (1, 2)


def test_table_rendering(fake_llm):
    fake_llm.set_usage(MILLION)
    guard = make_guard("memory://")
    client = client_for(guard, fake_llm)
    run_tasks(guard, client, "alpha", 20, accepted=18)
    run_tasks(guard, client, "beta", 3, accepted=0)  # nothing accepted: no cost per accepted, an open interval
    board = leaderboard(guard, "team", since=datetime.now(timezone.utc) - timedelta(hours=1))
    table = board.table()
    assert [c.name for c in table.columns] == [
        "rank",
        "team",
        "tasks",
        "reviewed",
        "acceptance_rate",
        "acceptance_ci_low",
        "acceptance_ci_high",
        "cost_usd",
        "cost_per_accepted",
        "cost_per_accepted_ci_low",
        "cost_per_accepted_ci_high",
        "compliance_rate",
        "tokens",
        "note",
    ]
    beta = board.rows[1]
    assert beta.cost_per_accepted is None and beta.cost_per_accepted_ci[1] == Decimal("Infinity")

    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert [(r["rank"], r["team"]) for r in rows] == [("1", "alpha"), ("", "beta")]
    assert Decimal(rows[0]["cost_per_accepted"]) == Decimal("3.00") / 18
    assert float(rows[0]["acceptance_ci_low"]) == pytest.approx(0.6990, abs=5e-5)
    assert rows[1]["note"] == "unranked: 3 reviewed tasks, 20 needed"
    data = json.loads(render(table, "json"))
    assert data["rows"][0]["rank"] == 1 and data["rows"][1]["rank"] is None
    assert data["rows"][0]["tokens"] == 20_000_000
    assert any("never used to rank" in n for n in data["notes"])
    text = render(table, "table", width=250)
    assert "Leaderboard by team" in text and "alpha" in text and "90.0%" in text and "69.9%" in text


def test_nobody_ranked_yet_and_bad_arguments(fake_llm):
    fake_llm.set_usage(MILLION)
    guard = make_guard("memory://")
    run_tasks(guard, client_for(guard, fake_llm), "alpha", 2, accepted=1)
    board = leaderboard(guard)
    assert [r.rank for r in board.rows] == [None]
    assert "nobody is ranked yet: no group has 20 reviewed tasks" in board.table().notes
    with pytest.raises(tg.ConfigError, match="is a field"):
        leaderboard(guard, "day")
    with pytest.raises(tg.ConfigError, match="min_tasks"):
        leaderboard(guard, min_tasks=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        leaderboard(guard, until=datetime(2026, 1, 1))
    assert leaderboard(guard, "tag:model").rows[0].key is None  # a tag named like a field
