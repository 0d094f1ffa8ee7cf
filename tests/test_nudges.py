"""Nudges on real calls: delivered as a tg.Nudge warning, a log line, a span event and a ledger
field; rate-limited; the smaller-model advice rests on the ledger's record of each model."""

from __future__ import annotations

import logging
import warnings

import openai
import pytest

import tokenguard as tg
from support import API_KEY, records
from tokenguard.testing import FakeUsage

LONG = [{"role": "user", "content": "lorem ipsum " * 300}]


def client_of(guard, fake_llm):
    return guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))


def test_a_long_prompt_is_nudged_four_ways_once_per_interval(fake_llm, otel, caplog):
    guard = tg.Guard(tracer_provider=otel.tracer_provider, nudges={"context_length_tokens": 100, "interval_s": 3600})
    client = client_of(guard, fake_llm)
    with caplog.at_level(logging.INFO, logger="tokenguard.nudge"), pytest.warns(tg.Nudge) as caught:
        client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=5)
    [warning] = [w for w in caught if issubclass(w.category, tg.Nudge)]
    assert warning.message.kind == "context_length"
    assert "above your organisation's standard context length of 100" in str(warning.message)
    assert warning.filename == __file__  # points at the application's line, not tokenguard's
    assert any("standard context length" in m for m in caplog.messages)
    [span] = otel.spans.get_finished_spans()
    [event] = [e for e in span.events if e.name == "tokenguard.nudge"]
    assert event.attributes["tokenguard.nudge.kind"] == "context_length"
    assert span.attributes["tokenguard.nudges"] == ("context_length",)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tg.Nudge)  # a second nudge would now raise
        client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=5)
    first, second = records(guard)
    assert (first.nudges, second.nudges) == (("context_length",), ())


def test_an_escalated_nudge_refuses_the_call_and_records_it(fake_llm):
    guard = tg.Guard(telemetry=False, nudges={"context_length_tokens": 100})
    client = client_of(guard, fake_llm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tg.Nudge)
        with pytest.raises(tg.Nudge):
            client.chat.completions.create(model="gpt-4o-mini", messages=LONG, max_tokens=5)
    assert fake_llm.requests == []
    [r] = records(guard)
    assert (r.status, r.nudges) == ("blocked", ("context_length",))


def test_a_budget_past_its_alert_threshold_nudges(fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))  # $0.15 per call
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("team", limit_usd="0.18", hard_at="3")])
    client = client_of(guard, fake_llm)
    client.chat.completions.create(model="gpt-4o-mini", messages=LONG[:1], max_tokens=5)
    with pytest.warns(tg.Nudge, match=r"budget 'team' is at 83% of its \$0.18 month limit"):
        client.chat.completions.create(model="gpt-4o-mini", messages=LONG[:1], max_tokens=5)
    assert records(guard)[1].nudges == ("budget_alert",)


def run_tasks(guard, client, model, n, succeed=True):
    for _ in range(n):
        with tg.task("summarize", guard=guard) as t:
            client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}], max_tokens=5)
            if succeed:
                t.succeed()
            else:
                t.fail("rejected")


def test_a_cheaper_model_with_a_good_record_is_recommended_with_the_saving(fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=10_000, output_tokens=1_000))
    guard = tg.Guard(telemetry=False, nudges={"min_tasks": 3})
    client = client_of(guard, fake_llm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", tg.Nudge)
        run_tasks(guard, client, "gpt-4o", 3)
        run_tasks(guard, client, "gpt-4o-mini", 3)
    with pytest.warns(tg.Nudge) as caught, tg.task("summarize", guard=guard):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    [warning] = caught
    text = str(warning.message)
    # gpt-4o: 10k in at $2.50/M + 1k out at $10/M = $0.035; gpt-4o-mini: $0.0015 + $0.0006 = $0.0021
    assert warning.message.kind == "smaller_model"
    assert "gpt-4o-mini" in text and "100% succeeded over 3 tasks at $0.0021 per successful task" in text
    assert "save about $0.0329 per task" in text
    assert records(guard)[-1].nudges == ("smaller_model",)


def test_no_recommendation_when_the_cheaper_model_fails_more_or_is_not_allowed(fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=10_000, output_tokens=1_000))
    guard = tg.Guard(telemetry=False, nudges={"min_tasks": 3})
    client = client_of(guard, fake_llm)
    with warnings.catch_warnings():
        warnings.simplefilter("error", tg.Nudge)  # any nudge here fails the test
        run_tasks(guard, client, "gpt-4o", 3)
        run_tasks(guard, client, "gpt-4o-mini", 2)
        run_tasks(guard, client, "gpt-4o-mini", 1, succeed=False)  # 67% vs 100%: not good enough
        run_tasks(guard, client, "gpt-4o", 1)
        run_tasks(guard, client, "gpt-4.1-nano", 3)
        with tg.route(allow=["gpt-4o", "gpt-4o-mini"]):  # nano has a good record but is not allowed
            run_tasks(guard, client, "gpt-4o", 1)


def test_the_record_is_read_from_a_persistent_ledger(tmp_path, fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=10_000, output_tokens=1_000))
    store = f"sqlite:///{tmp_path / 'ledger.db'}"
    first = tg.Guard(store=store, telemetry=False, nudges=False)
    client = client_of(first, fake_llm)
    run_tasks(first, client, "gpt-4o", 3)
    run_tasks(first, client, "gpt-4o-mini", 3)
    first.close()

    later = tg.Guard(store=store, telemetry=False, nudges={"min_tasks": 3})  # e.g. the next deploy
    client = client_of(later, fake_llm)
    with tg.task("warm_up", guard=later):  # the first call in a task starts reading the ledger (in the background)
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    assert later.nudger is not None and later.nudger.wait_seeded(10)
    with pytest.warns(tg.Nudge, match="smaller model gpt-4o-mini"), tg.task("summarize", guard=later):
        client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}], max_tokens=5)
    later.close()


def test_nudge_policy_validation():
    with pytest.raises(tg.ConfigError, match="min_tasks"):
        tg.Guard(nudges={"min_tasks": 0})
    with pytest.raises(tg.ConfigError, match="nudges:"):
        tg.Guard(nudges={"frequency": 1})
    assert tg.Guard(nudges=False).nudger is None
    assert tg.Guard(nudges=tg.NudgePolicy(enabled=False)).nudger is None
