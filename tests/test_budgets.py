"""Budgets on the governed client: reservation before sending, the threshold ladder, exceptions."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import openai
import pytest

import tokenguard as tg
from support import records
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "hi"}]
CALL_COST = Decimal("0.15")  # 1M input tokens of gpt-4o-mini


def client_for(guard, fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))
    return guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))


def call(client, **kw):
    return client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10, **kw)


def test_hard_cap_refuses_before_sending(fake_llm):
    events = []
    guard = tg.Guard(
        telemetry=False,
        budgets=[tg.Budget("support", limit_usd="1.00", scope={"team": "support"})],
        on_event=events.append,
    )
    client = client_for(guard, fake_llm)
    states = []
    with tg.tags(team="support"):
        for _ in range(8):
            call(client)
            states.append(guard.budget_status()[0].state)
        sent = len(fake_llm.requests)
        with pytest.raises(tg.BudgetExceeded) as info:
            call(client)
    assert len(fake_llm.requests) == sent  # never sent
    assert states == ["ok"] * 5 + ["alert", "review", "exceeded"]
    err = info.value
    assert (err.budget, err.spent_usd, err.reserved_usd, err.cap_usd) == ("support", Decimal("1.2"), 0, Decimal("1.2"))
    assert err.estimate_usd > 0
    assert "support" in str(err) and "grant_exception" in str(err)
    assert not isinstance(err, openai.OpenAIError)
    rs = records(guard)
    assert rs[-1].status == "blocked" and rs[-1].cost_usd == 0
    assert "budget:support:blocked" in rs[-1].decisions
    assert [r.decisions for r in rs[:1]] == [("budget:support:ok",)]
    assert "budget:support:alert" in rs[6].decisions and "budget:support:review" in rs[7].decisions
    assert [e.kind for e in events] == ["alert", "review", "exceeded"]  # once each, not per call
    assert guard.spend({"team": "support"}) == 8 * CALL_COST
    # calls outside the scope are not limited
    call(client)


def test_all_budgets_must_admit(fake_llm):
    guard = tg.Guard(
        telemetry=False,
        budgets=[
            tg.Budget("global", limit_usd=100),
            tg.Budget("tight", limit_usd="0.10", hard_at=1, alert_at=1, review_at=1, scope={"app": "x"}),
        ],
    )
    client = client_for(guard, fake_llm)
    with tg.tags(app="x"):
        call(client)  # 0.15 > 0.10 cap? the estimate fits; the real cost overshoots once
        with pytest.raises(tg.BudgetExceeded, match="'tight'"):
            call(client)
    status = {s.name: s for s in guard.budget_status()}
    assert status["global"].spent_usd == CALL_COST
    assert status["global"].reserved_usd == 0  # the refused call reserved nothing anywhere
    assert status["tight"].state == "exceeded"


def test_grant_raises_cap_and_is_audited(fake_llm):
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("b", limit_usd="0.30", hard_at=1)])
    client = client_for(guard, fake_llm)
    call(client)
    call(client)
    with pytest.raises(tg.BudgetExceeded):
        call(client)
    assert guard.budget_status()[0].state == "exceeded"
    expires = datetime.now(timezone.utc) + timedelta(hours=1)
    grant = guard.grant_exception("b", "0.15", approved_by="cfo", reason="quarter close", expires_at=expires)
    assert guard.budget_status()[0].cap_usd == Decimal("0.45")
    assert guard.budget_status()[0].state == "review"  # the grant cleared the refusal
    call(client)
    assert f"grant:{grant.id}" in records(guard)[-1].decisions
    assert [g.id for g in guard.exceptions("b")] == [grant.id]
    revoked = guard.revoke_exception(grant.id)
    assert revoked.revoked
    with pytest.raises(tg.BudgetExceeded):
        call(client)
    with pytest.raises(ValueError, match="in the past"):
        guard.grant_exception("b", 1, approved_by="x", reason="y", expires_at=datetime.now(timezone.utc))
    with pytest.raises(KeyError, match="no budget named"):
        guard.grant_exception("nope", 1, approved_by="x", reason="y", expires_at=expires)
    with pytest.raises(KeyError):
        guard.revoke_exception("unknown")


def test_unpriced_calls_refused_by_budgets_unless_admitted(fake_llm):
    budgets = [tg.Budget("all", limit_usd=10)]
    guard = tg.Guard(telemetry=False, budgets=budgets)
    client = client_for(guard, fake_llm)
    with pytest.raises(tg.PolicyViolation, match=r"no price is known.*budget 'all'.*admit_unpriced"):
        client.chat.completions.create(model="my-llm", messages=MSG)
    assert fake_llm.requests == []
    lenient = tg.Guard(telemetry=False, budgets=budgets, admit_unpriced=True)
    client2 = client_for(lenient, fake_llm)
    client2.chat.completions.create(model="my-llm", messages=MSG)
    [r] = records(lenient)
    assert r.cost_usd is None and "price:unknown" in r.decisions


def test_review_action_block(fake_llm):
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("r", limit_usd="0.30", review_action="block")])
    client = client_for(guard, fake_llm)
    call(client)
    call(client)  # spent 0.30: in review
    with pytest.raises(tg.PolicyViolation, match="in review"):
        call(client)


def test_review_action_downgrade_is_recorded(fake_llm):
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("d", limit_usd="0.15", review_action="downgrade", hard_at=2)])
    client = client_for(guard, fake_llm)
    call(client)
    call(client)
    assert "budget:d:downgrade" in records(guard)[-1].decisions


def test_stream_holds_its_reservation_until_settled(fake_llm):
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("s", limit_usd=10)])
    client = client_for(guard, fake_llm)
    stream = client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10, stream=True)
    next(iter(stream))
    held = guard.budget_status()[0]
    assert held.reserved_usd > 0 and held.spent_usd == 0
    list(stream)
    done = guard.budget_status()[0]
    assert done.reserved_usd == 0 and done.spent_usd == CALL_COST


def test_reservations_expire(fake_llm):
    from tokenguard.stores.base import Charge

    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("t", limit_usd=1, hard_at=1)])
    now = datetime.now(timezone.utc)
    key = ("t", guard.budgets[0].window_id(now))
    charge = Charge("t", key[1], cap_nano=10**9, estimate_nano=6 * 10**8)
    assert guard.store.admit("r1", [charge], now, ttl_s=0.05).admitted
    assert not guard.store.admit("r2", [charge], now, ttl_s=60).admitted  # 0.6 + 0.6 > 1
    later = now + timedelta(seconds=1)
    assert guard.store.standing(key, later).reserved_nano == 0  # r1 expired (a process died mid-call)
    assert guard.store.admit("r3", [charge], later, ttl_s=60).admitted


def test_hard_cap_holds_under_threads(fake_llm):
    # The reservation is an upper bound: max_tokens=250k prices the output side at $0.15, at least
    # what each call (1M input tokens, fixed by the fake server) really costs.
    limit = Decimal("1.06")  # room for 7 calls of 0.15 with the 8th's estimate not fitting
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("c", limit_usd=limit, hard_at=1)])
    client = client_for(guard, fake_llm)
    refused = []

    def worker():
        for _ in range(5):
            try:
                client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=250_000)
            except tg.BudgetExceeded:
                refused.append(1)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    status = guard.budget_status()[0]
    assert status.spent_usd <= limit
    assert status.spent_usd == 7 * CALL_COST  # the cap is used, not wasted
    assert status.reserved_usd == 0  # nothing leaked
    assert len(refused) == 40 - 7


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "b", "limit_usd": -1}, ">= 0"),
        ({"name": "b", "limit_usd": 1, "period": "fortnight"}, "period"),
        ({"name": "b", "limit_usd": 1, "alert_at": 1.5}, "thresholds must rise"),
        ({"name": "b", "limit_usd": 1, "timezone": "Mars/Olympus"}, "unknown time zone"),
        ({"name": "b c", "limit_usd": 1}, "budget name"),
        ({"name": "b", "limit_usd": 1, "scope": {"team": 1}}, "scope"),
        ({"name": "b", "limit_usd": 1, "review_action": "panic"}, "review_action"),
    ],
)
def test_budget_validation(kwargs, match):
    with pytest.raises(tg.ConfigError, match=match):
        tg.Budget(**kwargs)
    assert issubclass(tg.ConfigError, ValueError)


def test_periods_and_timezones():
    b = tg.Budget("m", limit_usd=1, period="month", timezone="America/New_York")
    start, end = b.window(datetime(2026, 3, 1, 3, 0, tzinfo=timezone.utc))  # still Feb 28 in New York
    assert start == datetime(2026, 2, 1, 5, 0, tzinfo=timezone.utc)
    assert end == datetime(2026, 3, 1, 5, 0, tzinfo=timezone.utc)
    total = tg.Budget("t", limit_usd=1, period="total")
    assert total.window(datetime.now(timezone.utc)) == (None, None)
    assert total.window_id(datetime.now(timezone.utc)) == "total"
    with pytest.raises(tg.ConfigError):
        tg.Guard(budgets=[tg.Budget("x", limit_usd=1), tg.Budget("x", limit_usd=2)])


def test_stream_being_read_keeps_its_reservation_alive(fake_llm):
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("k", limit_usd=10)], reservation_ttl_s=0.3)
    client = client_for(guard, fake_llm)
    fake_llm.set_chunk_delay(0.03)  # 20 chunks over ~0.6 s: twice the TTL
    seen = []
    for _ in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=10, stream=True):
        seen.append(guard.budget_status()[0].reserved_usd)
    assert all(r > 0 for r in seen)  # never expired while being read
    assert guard.budget_status()[0].reserved_usd == 0


def test_threshold_events_are_span_events(fake_llm, otel):
    guard = tg.Guard(
        tracer_provider=otel.tracer_provider,
        meter_provider=otel.meter_provider,
        budgets=[tg.Budget("e", limit_usd="0.15", alert_at="0.5")],
    )
    client = client_for(guard, fake_llm)
    call(client)
    [span] = otel.finished()
    assert [e.name for e in span.events] == ["tokenguard.budget.alert", "tokenguard.budget.review"]
    assert span.events[0].attributes["tokenguard.budget.name"] == "e"
    assert "budget:e:ok" in span.attributes["tokenguard.decisions"]


def test_an_exception_lifts_a_review_block(fake_llm):
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("r", limit_usd="0.30", review_action="block")])
    client = client_for(guard, fake_llm)
    call(client)
    call(client)
    with pytest.raises(tg.PolicyViolation, match="in review"):
        call(client)
    guard.grant_exception(
        "r",
        "0.15",
        approved_by="lead",
        reason="finish the batch",
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    call(client)  # spent 0.30 < 0.30 + 0.15
    with pytest.raises(tg.PolicyViolation):
        call(client)  # spent 0.45: blocked again


def test_store_errors_are_tokenguard_errors():
    from tokenguard.stores.sqlite import SQLiteStoreError

    assert issubclass(SQLiteStoreError, tg.StoreError)
    assert issubclass(tg.StoreError, tg.TokenguardError)
    guard = tg.Guard(store="sqlite:////nonexistent-dir-for-tokenguard/tg.db", budgets=[tg.Budget("b", limit_usd=1)])
    with pytest.raises(tg.TokenguardError, match="nonexistent-dir-for-tokenguard"):
        guard.budget_status()


def test_spool_of_an_exited_process_is_adopted(fake_llm, tmp_path):
    """A process that exits during an outage leaves its spool; the next one replays it."""
    import subprocess
    import sys

    db = tmp_path / "later" / "tg.db"  # its directory does not exist yet: the store is down
    uri = f"sqlite:///{db}"
    spool = tmp_path / "spool"
    script = f"""
import openai, tokenguard as tg
from tokenguard.testing import FakeUsage
guard = tg.Guard(store={uri!r}, spool_dir={str(spool)!r}, telemetry=False)
client = guard.wrap(openai.OpenAI(base_url={fake_llm.openai_base_url!r}, api_key="k", max_retries=0))
with tg.tags(owner="first-process"):
    client.chat.completions.create(model="gpt-4o-mini", messages=[{{"role": "user", "content": "hi"}}])
"""
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)
    assert len(list(spool.glob("spool-*.jsonl"))) == 1
    db.parent.mkdir()  # the store is back
    guard = tg.Guard(store=uri, spool_dir=spool, telemetry=False)
    client = client_for(guard, fake_llm)
    with tg.tags(owner="second-process"):
        call(client)
    assert sorted(r.tags["owner"] for r in guard.records()) == ["first-process", "second-process"]
    assert list(spool.glob("spool-*.jsonl")) == []


def test_two_guards_keep_separate_spools(tmp_path, fake_llm):
    a = tg.Guard(store=f"sqlite:///{tmp_path / 'a' / 'a.db'}", spool_dir=tmp_path / "s", telemetry=False)
    b = tg.Guard(store=f"sqlite:///{tmp_path / 'b' / 'b.db'}", spool_dir=tmp_path / "s", telemetry=False)
    assert a.spool.path != b.spool.path
