"""Anomalies over a real ledger: today's calls are real governed calls (the real openai SDK over
HTTP to the fake server); the weeks of history before them are CallRecords written into the same
Guard's real store (a ledger cannot be made in the past otherwise)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from itertools import count

import openai
import pytest

import tokenguard as tg
from support import API_KEY
from tokenguard.records import CallRecord
from tokenguard.reports import render
from tokenguard.reports.anomalies import MEAN_AD_TO_SD, find_anomalies, robust_baseline
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "hi"}]
# gpt-4o-mini: 1M input tokens cost $0.15; gpt-4o: $2.50
USAGE = FakeUsage(input_tokens=1_000_000, output_tokens=0)
NOW = datetime.now(timezone.utc)
TODAY = NOW.date().isoformat()
_ids = count()


@pytest.fixture(autouse=True)
def _clock():
    """Today as each test starts (a long session may cross midnight)."""
    global NOW, TODAY
    NOW = datetime.now(timezone.utc)
    TODAY = NOW.date().isoformat()


@pytest.fixture(params=["memory", "sqlite"])
def guard(request, tmp_path):
    store = "memory://" if request.param == "memory" else f"sqlite:///{tmp_path / 'ledger.db'}"
    g = tg.Guard(store=store, telemetry=False, nudges=False)
    yield g
    g.store.close()


@pytest.fixture
def client(guard, fake_llm):
    fake_llm.set_usage(USAGE)
    c = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    yield c
    c.close()


def call(client, model="gpt-4o-mini"):
    client.chat.completions.create(model=model, messages=MSG, max_tokens=5)


def past(guard, days_ago: int, team: str, cost: str, *, status: str = "ok", n: int = 1) -> None:
    """Append ``n`` call records of ``team`` made ``days_ago`` days ago, each costing ``cost``."""
    for _ in range(n):
        record = CallRecord(
            id=f"past-{next(_ids)}",
            time=NOW - timedelta(days=days_ago),
            latency_s=0.3,
            provider="openai",
            operation="chat",
            api="chat.completions",
            request_model="gpt-4o-mini",
            response_model="gpt-4o-mini",
            input_tokens=1000,
            output_tokens=100,
            cost_usd=Decimal(cost),
            estimated_cost_usd=Decimal(cost),
            tags={"team": team},
            status=status,  # type: ignore[arg-type]
            error_type="InternalServerError" if status == "error" else None,
        )
        guard.store.settle(None, (), 0, record, NOW)


def of_kind(report, kind):
    return [a for a in report.rows if a.kind == kind]


def test_a_spike_against_the_groups_own_baseline_and_not_a_steady_higher_spender(guard, client):
    wobble = ["0.30", "0.28", "0.33", "0.31", "0.29", "0.32", "0.30", "0.27", "0.31", "0.30", "0.29", "0.33", "0.30"]
    for day, cost in enumerate(wobble, start=1):
        past(guard, day, "spiky", cost)
        past(guard, day, "steady", str(Decimal("5") + Decimal(cost) - Decimal("0.30")))
    for day in (1, 2, 3):
        past(guard, day, "newcomer", "0.01")
    with tg.tags(team="spiky"):
        for _ in range(20):  # $3.00 today, ten times its usual
            call(client)
    with tg.tags(team="steady"):
        call(client, "gpt-4o")
        call(client, "gpt-4o")  # $5.00 today: more than spiky's spike, as usual for steady
    with tg.tags(team="newcomer"):
        for _ in range(20):
            call(client, "gpt-4o")  # $50 today, but three days are no history to judge by

    report = find_anomalies(guard, ["team"])
    [spike] = of_kind(report, "spend_spike")
    assert (spike.key, spike.when) == (("spiky",), TODAY)
    assert spike.value == pytest.approx(3.0)
    assert spike.baseline == pytest.approx(0.30)
    assert spike.score > 3.5
    assert "team=spiky spent $3.00 on " + TODAY in spike.message and "10.0x its median of $0.3000" in spike.message
    assert not of_kind(report, "failure_burst")
    assert any("newcomer" in n and "fewer than 7 days" in n for n in report.notes)
    # the same ledger with a stricter history rule: nobody has 20 days, nothing is judged
    assert find_anomalies(guard, ["team"], min_history=20).rows == []
    # and a window that leaves today out finds no spike
    assert not of_kind(find_anomalies(guard, ["team"], until=NOW - timedelta(hours=1)), "spend_spike")


def test_mad_zero_falls_back_to_the_mean_absolute_deviation_with_a_floor(guard):
    # Three scheduled jobs that cost exactly $1.00 on each of 10 days (MAD = 0), then one odd day each
    for day in range(2, 12):
        for team in ("cron-a", "cron-b", "cron-c", "flat"):
            past(guard, day, team, "1.00")
    past(guard, 1, "cron-a", "1.30")  # +30%: below the 10%-of-median floor's reach (z = 3.0)
    past(guard, 1, "cron-b", "1.50")  # +50%: z = 5.0 on the floor
    past(guard, 1, "cron-c", "3.00")  # the mean absolute deviation decides
    past(guard, 1, "flat", "1.00")  # every day the same: spread 0, nothing to find, no division by 0

    spikes = {a.key[0]: a for a in of_kind(find_anomalies(guard, "team"), "spend_spike")}
    assert set(spikes) == {"cron-b", "cron-c"}
    assert spikes["cron-b"].score == pytest.approx(0.5 / 0.1)  # the floor: 10% of the $1.00 median
    mean_ad = 2.0 / 11  # |3.00 - 1.00| once, 0 ten times
    assert spikes["cron-c"].score == pytest.approx(2.0 / (MEAN_AD_TO_SD * mean_ad))
    assert spikes["cron-c"].baseline == 1.0


def test_robust_baseline():
    assert robust_baseline([1.0, 2.0, 3.0, 4.0, 100.0]) == pytest.approx((3.0, 1.4826 * 1.0))
    assert robust_baseline([5.0] * 8) == (5.0, 0.0)
    centre, spread = robust_baseline([0.0] * 9 + [9.0])  # MAD 0: mean absolute deviation 0.9
    assert (centre, spread) == (0.0, pytest.approx(1.2533 * 0.9))
    with pytest.raises(ValueError):
        robust_baseline([])


def test_failure_burst_against_the_groups_own_error_rate(guard, client, fake_llm):
    for day in range(1, 15):
        past(guard, day, "ops", "0.01", n=20)
        if day % 5 == 0:
            past(guard, day, "ops", "0", status="error")  # about one failure a week
        # busy fails 10% of 50 calls every day: many failures, but as usual
        past(guard, day, "busy", "0.01", n=45 + day % 3)
        past(guard, day, "busy", "0", status="error", n=5 - day % 3 + 1)
        past(guard, day, "tiny", "0.01", n=3)
    with tg.tags(team="ops"):
        for _ in range(10):
            call(client)
        fake_llm.fail_next(500, times=8)
        for _ in range(8):
            with pytest.raises(openai.InternalServerError):
                call(client)
    with tg.tags(team="busy"):
        for _ in range(45):
            call(client)
        fake_llm.fail_next(500, times=5)
        for _ in range(5):
            with pytest.raises(openai.InternalServerError):
                call(client)
    with tg.tags(team="tiny"):  # every call failed today, but 3 failures are not a burst
        fake_llm.fail_next(500, times=3)
        for _ in range(3):
            with pytest.raises(openai.InternalServerError):
                call(client)

    report = find_anomalies(guard, ["team"])
    [burst] = of_kind(report, "failure_burst")
    assert (burst.key, burst.when) == (("ops",), TODAY)
    assert burst.value == pytest.approx(8 / 18)
    assert burst.baseline == 0.0
    assert burst.message.startswith(f"team=ops: 8 of 18 calls failed on {TODAY} (44.4%), against a median of 0.0%")


def test_high_spend_low_success(guard, client):
    def tasks(team, n, succeeded, model="gpt-4o-mini"):
        with tg.tags(team=team):
            for i in range(n):
                with tg.task("draft", guard=guard) as t:
                    call(client, model)
                    t.succeed() if i < succeeded else t.fail("rejected")

    tasks("research", 20, 5, "gpt-4o")  # $50.00, 25% succeed
    tasks("legal", 20, 17, "gpt-4o")  # $50.00, 85%: a little lower, not clearly below
    tasks("support", 20, 19)  # $3.00
    tasks("sales", 20, 19)  # $3.00
    tasks("intern", 10, 2)  # $1.50, 20%: low success, but low spend too
    report = find_anomalies(guard, ["team"])
    [low] = of_kind(report, "high_spend_low_success")
    assert low.key == ("research",) and low.when is None
    others = (17 + 19 + 19 + 2) / 70
    assert low.value == 0.25 and low.baseline == pytest.approx(others)
    pooled = (5 + 17 + 19 + 19 + 2) / 90
    assert low.score == pytest.approx((others - 0.25) / (pooled * (1 - pooled) * (1 / 20 + 1 / 70)) ** 0.5)
    assert "team=research spent $50.00, above the median group's $3.00, but only 5 of 20 tasks succeeded" in (
        low.message
    )
    # grouped by a call field tasks do not have, the rule is skipped and says so
    by_provider = find_anomalies(guard, ["provider"])
    assert not of_kind(by_provider, "high_spend_low_success")
    assert any("tasks cannot be grouped by provider" in n for n in by_provider.notes)


def test_table_sorted_by_score_and_rendered(guard, client):
    for day in range(1, 11):
        past(guard, day, "a", "0.10")
        past(guard, day, "b", "1.00")
    past(guard, 1, "a", "0.90")  # a's spike is the bigger one
    with tg.tags(team="b"):
        for _ in range(10):
            call(client)  # $1.50 today against $1.00: z 5
    report = find_anomalies(guard, ["team"], bucket="day")
    table = report.table()
    assert [c.name for c in table.columns] == ["kind", "team", "when", "value", "baseline", "score", "message"]
    scores = [row[5] for row in table.rows]
    assert [row[1] for row in table.rows] == ["a", "b"] and scores == sorted(scores, reverse=True)

    rows = list(csv.DictReader(io.StringIO(render(table, "csv"))))
    assert rows[1]["team"] == "b" and rows[1]["when"] == TODAY and float(rows[1]["value"]) == pytest.approx(1.5)
    data = json.loads(render(table, "json"))
    assert data["rows"][0]["kind"] == "spend_spike" and data["rows"][0]["team"] == "a"
    text = render(table, "table")
    assert "Anomalies by team per day" in text and "spend_spike" in text and "robust z-score" in text

    weekly = find_anomalies(guard, ["team"], bucket="week", min_history=3)
    assert weekly.bucket == "week" and all(a.when and len(a.when) == 10 for a in weekly.rows)


def test_bad_arguments():
    guard = tg.Guard(telemetry=False)
    with pytest.raises(tg.ConfigError, match="bucket must be one of day, week, month"):
        find_anomalies(guard, bucket="hour")
    with pytest.raises(tg.ConfigError, match="pass it as bucket='day'"):
        find_anomalies(guard, ["team", "day"])
    with pytest.raises(tg.ConfigError, match="min_history"):
        find_anomalies(guard, min_history=1)
    with pytest.raises(tg.ConfigError, match="threshold"):
        find_anomalies(guard, threshold=0)
    with pytest.raises(ValueError, match="timezone-aware"):
        find_anomalies(guard, since=datetime(2026, 1, 1))
    empty = find_anomalies(guard)
    assert empty.rows == [] and render(empty.table(), "csv").startswith("kind,team,when")
