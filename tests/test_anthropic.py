"""Governed Anthropic calls through the real `anthropic` SDK over loopback HTTP."""

from __future__ import annotations

import asyncio
import gc
from decimal import Decimal

import anthropic
import pytest

import tokenguard as tg
from support import Otel, records
from tokenguard.testing import FakeUsage

MSG = [{"role": "user", "content": "Classify this ticket."}]
MODEL = "claude-sonnet-4-6"  # its price changed on 2026-03-13: a time-dependent price


def test_messages_create_usage_and_cost(anthropic_client, guard, fake_llm):
    assert isinstance(anthropic_client, anthropic.Anthropic)
    fake_llm.set_usage(FakeUsage(input_tokens=1000, output_tokens=100, cache_read_tokens=300, cache_write_tokens=200))
    msg = anthropic_client.messages.create(model=MODEL, max_tokens=100, messages=MSG)
    # Anthropic's wire format reports the uncached part alone
    assert msg.usage.input_tokens == 500 and msg.usage.cache_read_input_tokens == 300
    [r] = records(guard)
    assert (r.provider, r.operation, r.api) == ("anthropic", "chat", "messages")
    assert (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.cache_write_tokens) == (1000, 100, 300, 200)
    # claude-sonnet-4-6 (since 2026-03-13): $3 input, $0.30 cache read, $3.75 cache write, $15 output per MTok
    expected = (Decimal(3) * 500 + Decimal("0.3") * 300 + Decimal("3.75") * 200 + Decimal(15) * 100) / 1_000_000
    assert r.cost_usd == expected
    assert r.reasoning_tokens == 0


def test_stream_create_and_helper(anthropic_client, guard, fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=50, output_tokens=20, cache_read_tokens=10))
    events = list(anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=MSG, stream=True))
    assert events[-1].type == "message_stop"
    with anthropic_client.messages.stream(model=MODEL, max_tokens=64, messages=MSG) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 20
    rs = records(guard)
    assert [(r.stream, r.status, r.input_tokens, r.output_tokens, r.cache_read_tokens) for r in rs] == [
        (True, "ok", 50, 20, 10),
        (True, "ok", 50, 20, 10),
    ]


@pytest.mark.parametrize("how", ["close", "helper_exit", "break_gc"])
def test_abandoned_stream_cancelled(anthropic_client, guard, how):
    if how == "close":
        stream = anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=MSG, stream=True)
        for _ in zip(range(4), stream):
            pass
        stream.close()
        assert len(list(guard.records())) == 1
    elif how == "helper_exit":
        with anthropic_client.messages.stream(model=MODEL, max_tokens=64, messages=MSG) as stream:
            for _ in zip(range(4), stream):
                pass
        assert len(list(guard.records())) == 1
    else:
        for i, _ in enumerate(anthropic_client.messages.create(model=MODEL, max_tokens=64, messages=MSG, stream=True)):
            if i == 3:
                break
    [r] = records(guard)
    assert r.status == "cancelled" and r.usage_estimated
    assert r.input_tokens > 0  # from message_start: the vendor's own count
    assert r.output_tokens >= 1


def test_vendor_error_unchanged(anthropic_client, guard, fake_llm):
    fake_llm.fail_next(429, retry_after=0.01)
    with pytest.raises(anthropic.RateLimitError):
        anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    [r] = records(guard)
    assert r.status == "error" and r.error_type == "RateLimitError"


def test_count_tokens_passes_through(anthropic_client, guard):
    out = anthropic_client.messages.count_tokens(model=MODEL, messages=MSG)
    assert out.input_tokens > 0
    assert records(guard) == []


def test_raw_and_streaming_response(anthropic_client, guard):
    raw = anthropic_client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MSG)
    assert raw.parse().usage.output_tokens == 10
    with anthropic_client.messages.with_streaming_response.create(model=MODEL, max_tokens=10, messages=MSG) as r:
        r.parse()
    rs = records(guard)
    assert [(r.status, r.output_tokens, r.usage_estimated) for r in rs] == [("ok", 10, False), ("ok", 10, False)]


def test_exactly_one_span_despite_native_tracing(anthropic_client, otel: Otel):
    with tg.tags(team="ml"):
        anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MSG)
        list(anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MSG, stream=True))
    spans = otel.finished()
    assert [s.instrumentation_scope.name for s in spans] == ["tokenguard", "tokenguard"]
    a = spans[0].attributes
    assert spans[0].name == f"chat {MODEL}"
    assert a["gen_ai.provider.name"] == "anthropic"
    assert a["gen_ai.response.finish_reasons"] == ("end_turn",) or a["gen_ai.response.finish_reasons"] == (
        "max_tokens",
    )
    # An API call tokenguard does not govern keeps the SDK's native span.
    anthropic_client.messages.count_tokens(model=MODEL, messages=MSG)
    assert len(otel.finished()) == 3
    assert otel.finished()[2].instrumentation_scope.name != "tokenguard"


async def test_async_messages(async_anthropic_client, guard, otel):
    await async_anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MSG)
    stream = await async_anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MSG, stream=True)
    async for _ in stream:
        pass
    async with async_anthropic_client.messages.stream(model=MODEL, max_tokens=10, messages=MSG) as s:
        await s.get_final_message()
    stream = await async_anthropic_client.messages.create(model=MODEL, max_tokens=10, messages=MSG, stream=True)
    async for _ in stream:
        break
    await stream.close()
    raw = await async_anthropic_client.messages.with_raw_response.create(model=MODEL, max_tokens=10, messages=MSG)
    await raw.parse()
    gc.collect()
    await asyncio.sleep(0)
    rs = records(guard)
    assert [(r.stream, r.status) for r in rs] == [
        (False, "ok"),
        (True, "ok"),
        (True, "ok"),
        (True, "cancelled"),
        (False, "ok"),
    ]
    assert len(otel.finished()) == 5


async def test_concurrent_tasks_stay_apart(async_anthropic_client, guard):
    async def work(name: str) -> str:
        with tg.task(name, guard=guard) as t, tg.tags(worker=name):
            for _ in range(3):
                await async_anthropic_client.messages.create(model=MODEL, max_tokens=5, messages=MSG)
                await asyncio.sleep(0)
            t.succeed()
            return t.id

    ids = await asyncio.gather(*(work(f"w{i}") for i in range(5)))
    by_task: dict[str, set[str]] = {}
    for r in records(guard):
        by_task.setdefault(r.task_id, set()).add(r.tags["worker"])
    assert set(by_task) == set(ids)
    assert all(len(workers) == 1 for workers in by_task.values())
    tasks = {t.id: t for t in guard.tasks()}
    assert all(tasks[i].calls == 3 and tasks[i].outcome == "succeeded" for i in ids)
