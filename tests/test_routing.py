"""Routing through the real SDKs and the loopback fake server: default and allowed models,
context-length rules, budget downgrades, and retries/fallbacks as chains of recorded attempts."""

from __future__ import annotations

import asyncio
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import anthropic
import openai
import pytest

import tokenguard as tg
from support import API_KEY, records
from tokenguard.stores.sqlite import APPLICATION_ID
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "hi"}]


def sent_models(fake_llm):
    return [r.body["model"] for r in fake_llm.requests]


def create(client, model="gpt-4o", **kw):
    return client.chat.completions.create(model=model, messages=MSG, max_tokens=10, **kw)


# -- choosing the model --------------------------------------------------------------------------


def test_auto_goes_to_the_route_default(guard, openai_client, fake_llm):
    with tg.route(default="gpt-4o-mini"):
        reply = create(openai_client, model="auto")
    assert reply.model == "gpt-4o-mini"
    assert sent_models(fake_llm) == ["gpt-4o-mini"]
    [r] = records(guard)
    assert (r.request_model, r.routed_from, r.route_reason) == ("gpt-4o-mini", "auto", "default")
    assert "route:default" in r.decisions
    assert r.status == "ok" and r.cost_usd > 0


def test_auto_without_a_default_is_refused_before_sending(guard, openai_client, fake_llm):
    with pytest.raises(tg.PolicyViolation, match=r"model='auto'.*tg\.route\(default=") as info:
        create(openai_client, model="auto")
    assert not isinstance(info.value, openai.OpenAIError)
    assert fake_llm.requests == []
    [r] = records(guard)
    assert r.status == "blocked" and r.cost_usd == 0
    assert r.decisions == ("route:default:block",)


def test_a_model_outside_the_allow_list_goes_to_the_default(guard, openai_client, fake_llm):
    with tg.route(allow=["gpt-4o-mini*"], default="gpt-4o-mini"):
        create(openai_client, model="gpt-4o")
        create(openai_client, model="gpt-4o-mini")
    assert sent_models(fake_llm) == ["gpt-4o-mini", "gpt-4o-mini"]
    first, second = records(guard)
    assert (first.routed_from, first.route_reason) == ("gpt-4o", "allow-list")
    assert (second.routed_from, second.route_reason) == (None, None)


def test_a_model_outside_the_allow_list_without_default_is_refused(guard, openai_client, fake_llm):
    with tg.route(allow=["gpt-4o-mini"]), pytest.raises(tg.PolicyViolation, match="does not allow model 'gpt-4o'"):
        create(openai_client, model="gpt-4o")
    assert fake_llm.requests == []


def test_nested_routes_merge_field_by_field_and_decorate_sync_and_async(guard, fake_llm):
    @tg.route(default="gpt-4o-mini")
    def outer(client):
        with tg.route(allow=["gpt-4o-mini"]):  # inherits the default
            return create(client, model="gpt-4o")

    @tg.route(default="gpt-4.1-mini")
    async def run_async(client):
        return await client.chat.completions.create(model="auto", messages=MSG, max_tokens=5)

    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    assert outer(client).model == "gpt-4o-mini"
    aclient = guard.wrap(openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    assert asyncio.run(run_async(aclient)).model == "gpt-4.1-mini"
    assert tg.routing.current_route() is None


def test_bind_carries_the_route_into_threads(guard, openai_client, fake_llm):
    with tg.route(default="gpt-4o-mini"), ThreadPoolExecutor(2) as pool:
        model = pool.submit(tg.bind(lambda: create(openai_client, model="auto").model)).result()
    assert model == "gpt-4o-mini"


def test_long_prompts_go_to_the_long_context_model_or_are_refused(guard, openai_client, fake_llm):
    long = [{"role": "user", "content": "word " * 400}]
    with tg.route(max_input_tokens=100, long_context_model="gpt-4.1"):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=long, max_tokens=5)
        create(openai_client, model="gpt-4o-mini")  # short: stays
    assert sent_models(fake_llm) == ["gpt-4.1", "gpt-4o-mini"]
    assert records(guard)[0].route_reason == "context-length"
    with (
        tg.route(max_input_tokens=100),
        pytest.raises(tg.PolicyViolation, match=r"about \d+ input tokens"),
        pytest.warns(tg.Nudge, match="above the 100 allowed"),  # refused, with the advice as a nudge
    ):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=long, max_tokens=5)
    assert len(fake_llm.requests) == 2
    refused = records(guard)[-1]
    assert (refused.status, refused.nudges) == ("blocked", ("context_length",))
    assert "route:context-length:block" in refused.decisions


def test_guard_routes_apply_by_scope(fake_llm):
    guard = tg.Guard(
        telemetry=False,
        routes=[
            tg.Route(scope={"team": "support"}, allow=["gpt-4o-mini"], default="gpt-4o-mini"),
            tg.Route(scope={"team": "support", "app": "bot"}, default="gpt-4.1-nano", allow=["gpt-4.1-nano"]),
        ],
    )
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    create(client, model="gpt-4o")  # no route matches
    with tg.tags(team="support"):
        create(client, model="gpt-4o")
        with tg.tags(app="bot"):
            create(client, model="gpt-4o")  # the later, narrower route wins field by field
        with tg.route(allow=["gpt-4o"]):
            create(client, model="gpt-4o")  # tg.route wins over the Guard's routes
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o-mini", "gpt-4.1-nano", "gpt-4o"]


def test_bad_routes_are_config_errors():
    with pytest.raises(tg.ConfigError, match="retries must be an int"):
        tg.route(retries=-1)
    with pytest.raises(tg.ConfigError, match="downgrade must map"):
        tg.Route(downgrade=["gpt-4o"])
    with pytest.raises(tg.ConfigError, match="its fields are"):
        tg.route(fallback=["x"])
    with pytest.raises(tg.ConfigError, match="scope= is for Guard"):
        tg.route(scope={"team": "a"})
    with pytest.raises(tg.ConfigError, match="routes must be a sequence"):
        tg.Guard(routes=[{"default": "x"}])


# -- budgets in review downgrade -----------------------------------------------------------------


def test_a_budget_in_review_downgrades_through_the_route(fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=100_000, output_tokens=0))  # $0.25 on gpt-4o
    guard = tg.Guard(
        telemetry=False,
        budgets=[
            tg.Budget("support", limit_usd="0.40", hard_at="2", scope={"team": "support"}, review_action="downgrade")
        ],
    )
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    with tg.tags(team="support"), tg.route(downgrade={"gpt-4o": "gpt-4o-mini"}):
        for _ in range(3):
            create(client, model="gpt-4o")
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o", "gpt-4o-mini"]
    third = records(guard)[2]
    assert (third.routed_from, third.route_reason) == ("gpt-4o", "downgrade:review")
    assert "budget:support:review" in third.decisions and "budget:support:downgrade" in third.decisions
    assert third.cost_usd == Decimal("0.015")  # 100k input tokens at gpt-4o-mini's $0.15/M


# -- retries and fallbacks -----------------------------------------------------------------------


def test_429_retries_then_falls_back_as_one_chain(guard, openai_client, fake_llm, otel):
    fake_llm.fail_next(429, times=3, retry_after=0.01, model="gpt-4o")
    with tg.route(fallbacks=["gpt-4o-mini"], retries=2):
        reply = create(openai_client, model="gpt-4o")
    assert reply.model == "gpt-4o-mini"
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o", "gpt-4o", "gpt-4o-mini"]
    rs = records(guard)
    assert [(r.request_model, r.status, r.error_type, r.attempt, r.route_reason) for r in rs] == [
        ("gpt-4o", "error", "RateLimitError", 1, None),
        ("gpt-4o", "error", "RateLimitError", 2, "retry:429"),
        ("gpt-4o", "error", "RateLimitError", 3, "retry:429"),
        ("gpt-4o-mini", "ok", None, 4, "fallback:429"),
    ]
    assert len({r.chain_id for r in rs}) == 1 and rs[0].chain_id
    assert rs[3].routed_from == "gpt-4o" and "route:fallback:429" in rs[3].decisions
    spans = otel.spans.get_finished_spans()
    [chain] = [s for s in spans if s.name == "chain gpt-4o"]
    attempts = [s for s in spans if s.name.startswith("chat ")]
    assert len(attempts) == 4
    assert all(s.parent is not None and s.parent.span_id == chain.context.span_id for s in attempts)
    assert chain.attributes["tokenguard.chain.attempts"] == 4
    assert chain.attributes["tokenguard.chain.model"] == "gpt-4o-mini"
    assert attempts[3].attributes["tokenguard.route.reason"] == "fallback:429"
    assert attempts[3].attributes["tokenguard.route.requested_model"] == "gpt-4o"


def test_when_every_attempt_fails_the_vendor_error_is_raised_unchanged(guard, openai_client, fake_llm, otel):
    fake_llm.fail_next(500, times=4)
    with tg.route(fallbacks=["gpt-4o-mini"], retries=1, backoff_s=0.001), pytest.raises(openai.InternalServerError):
        create(openai_client, model="gpt-4o")
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o", "gpt-4o-mini", "gpt-4o-mini"]
    assert [r.route_reason for r in records(guard)] == [None, "retry:5xx", "fallback:5xx", "retry:5xx"]
    [chain] = [s for s in otel.spans.get_finished_spans() if s.name.startswith("chain")]
    assert chain.attributes["error.type"] == "InternalServerError"


def test_a_request_error_is_not_retried(guard, openai_client, fake_llm):
    fake_llm.fail_next(400)
    with tg.route(fallbacks=["gpt-4o-mini"]), pytest.raises(openai.BadRequestError):
        create(openai_client)
    assert len(fake_llm.requests) == 1
    assert len(records(guard)) == 1


def test_a_long_retry_after_moves_to_the_fallback_at_once(guard, openai_client, fake_llm):
    fake_llm.fail_next(429, retry_after=120)
    with tg.route(fallbacks=["gpt-4o-mini"], max_wait_s=5):
        create(openai_client)
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o-mini"]


def test_fallbacks_of_another_provider_are_skipped(guard, openai_client, fake_llm):
    fake_llm.fail_next(429, retry_after=0)
    with tg.route(fallbacks=["claude-3-5-haiku-latest", "gpt-4o-mini"], retries=0):
        create(openai_client)
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o-mini"]


def test_each_attempt_is_admitted_with_the_model_that_bills(fake_llm):
    """A budget on the fallback model holds even when the primary model is the one asked for."""
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))
    guard = tg.Guard(telemetry=False, budgets=[tg.Budget("mini", limit_usd="0.01", scope={"model": "gpt-4o-mini"})])
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    create(client, model="gpt-4o-mini")  # spends $0.15: the "mini" budget is exhausted
    fake_llm.fail_next(429, retry_after=0, model="gpt-4o")
    with tg.route(fallbacks=["gpt-4o-mini"], retries=0), pytest.raises(tg.BudgetExceeded) as info:
        create(client)  # gpt-4o itself is outside the budget's scope; its fallback is not
    assert info.value.budget == "mini"
    _, first, second = records(guard)
    assert (first.request_model, first.status) == ("gpt-4o", "error")
    assert (second.request_model, second.status, second.route_reason) == ("gpt-4o-mini", "blocked", "fallback:429")
    assert second.chain_id == first.chain_id
    assert sent_models(fake_llm) == ["gpt-4o-mini", "gpt-4o"]


def test_a_stream_falls_back_and_settles_once(guard, openai_client, fake_llm):
    fake_llm.fail_next(503, model="gpt-4o")
    with tg.route(fallbacks=["gpt-4o-mini"], retries=0):
        stream = create(openai_client, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    first, second = records(guard)
    assert (first.status, second.status, second.stream, second.request_model) == ("error", "ok", True, "gpt-4o-mini")
    assert second.output_tokens > 0 and not second.usage_estimated


async def test_async_chain(guard, async_openai_client, fake_llm):
    fake_llm.fail_next(429, times=2, retry_after=0.01, model="gpt-4o")
    with tg.route(fallbacks=["gpt-4o-mini"], retries=1):
        reply = await async_openai_client.chat.completions.create(model="gpt-4o", messages=MSG, max_tokens=5)
    assert reply.model == "gpt-4o-mini"
    assert [r.attempt for r in records(guard)] == [1, 2, 3]


def test_anthropic_chain(guard, anthropic_client, fake_llm):
    fake_llm.fail_next(529, model="claude-sonnet-4-6")
    with tg.route(fallbacks=["claude-haiku-4-5"], retries=0):
        reply = anthropic_client.messages.create(model="claude-sonnet-4-6", messages=MSG, max_tokens=5)
    assert reply.model == "claude-haiku-4-5"
    first, second = records(guard)
    assert (first.error_type, second.route_reason) == ("OverloadedError", "fallback:5xx")
    assert isinstance(anthropic_client, anthropic.Anthropic)


def test_the_sdk_own_retries_stay_inside_one_attempt(guard, fake_llm):
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=1))
    fake_llm.fail_next(429, retry_after=0)
    with tg.route(fallbacks=["gpt-4o-mini"]):
        create(client)
    assert sent_models(fake_llm) == ["gpt-4o", "gpt-4o"]  # the SDK retried; one record
    [r] = records(guard)
    assert (r.status, r.attempt) == ("ok", 1)


# -- the ledger keeps the routing fields -----------------------------------------------------------


def test_sqlite_ledger_keeps_routing_fields_and_migrates_schema_1(tmp_path, fake_llm):
    path = tmp_path / "ledger.db"
    conn = sqlite3.connect(path)  # a schema-1 ledger, as tokenguard 0.1 wrote it
    conn.executescript(
        """
        CREATE TABLE calls (seq INTEGER PRIMARY KEY, id TEXT NOT NULL, time_us INTEGER NOT NULL,
          latency_s REAL NOT NULL, provider TEXT NOT NULL, operation TEXT NOT NULL, api TEXT NOT NULL,
          request_model TEXT NOT NULL, response_model TEXT, stream INTEGER NOT NULL, response_id TEXT,
          input_tokens INTEGER NOT NULL, output_tokens INTEGER NOT NULL, cache_read_tokens INTEGER NOT NULL,
          cache_write_tokens INTEGER NOT NULL, reasoning_tokens INTEGER NOT NULL, usage_estimated INTEGER NOT NULL,
          cost_usd TEXT, cost_nano INTEGER, estimated_cost_usd TEXT, tags TEXT NOT NULL, task_id TEXT,
          task_name TEXT, status TEXT NOT NULL, error_type TEXT, decisions TEXT NOT NULL);
        INSERT INTO calls VALUES (1, 'old', 1700000000000000, 0.1, 'openai', 'chat', 'chat.completions',
          'gpt-4o', 'gpt-4o', 0, NULL, 1, 1, 0, 0, 0, 0, '0.00001', 10000, NULL, '{}', NULL, NULL, 'ok',
          NULL, '[]');
        PRAGMA user_version = 1;
        """
    )
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.close()
    guard = tg.Guard(store=f"sqlite:///{path}", telemetry=False)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    fake_llm.fail_next(429, retry_after=0)
    with tg.route(fallbacks=["gpt-4o-mini"], retries=0):
        create(client)
    old, first, second = records(guard)
    assert (old.id, old.attempt, old.chain_id, old.findings, old.nudges) == ("old", 1, None, {}, ())
    assert (second.routed_from, second.route_reason, second.attempt) == ("gpt-4o", "fallback:429", 2)
    assert second.chain_id == first.chain_id is not None
    guard.close()


def test_timeouts_are_retried(guard, fake_llm):
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0, timeout=0.05))
    fake_llm.set_latency(0.3)
    with tg.route(retries=1, backoff_s=0.001), pytest.raises(openai.APITimeoutError):
        create(client)
    assert [(r.status, r.error_type, r.route_reason) for r in records(guard)] == [
        ("error", "APITimeoutError", None),
        ("error", "APITimeoutError", "retry:timeout"),
    ]
