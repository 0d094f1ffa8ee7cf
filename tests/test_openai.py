"""Governed OpenAI calls through the real `openai` SDK over loopback HTTP."""

from __future__ import annotations

import asyncio
import gc
import json
from decimal import Decimal

import openai
import pytest

import tokenguard as tg
from support import Otel, records
from tokenguard.testing import FakeLLMServer, FakeUsage

MSG = [{"role": "user", "content": "Summarize the ticket please."}]


def test_wrap_keeps_type_and_results(openai_client, guard, fake_llm):
    assert isinstance(openai_client, openai.OpenAI)
    assert type(openai_client).__name__ == "OpenAI"
    fake_llm.set_usage(FakeUsage(input_tokens=1000, output_tokens=200, cache_read_tokens=400, reasoning_tokens=50))
    reply = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert isinstance(reply, openai.types.chat.ChatCompletion)
    assert reply.usage.prompt_tokens == 1000
    [r] = records(guard)
    assert (r.provider, r.operation, r.api, r.status, r.stream) == ("openai", "chat", "chat.completions", "ok", False)
    assert (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.reasoning_tokens) == (1000, 200, 400, 50)
    assert r.request_model == "gpt-4o-mini" and r.response_model == "gpt-4o-mini"
    # gpt-4o-mini: $0.15 input, $0.075 cached input, $0.60 output per MTok
    expected = (Decimal("0.15") * 600 + Decimal("0.075") * 400 + Decimal("0.60") * 200) / 1_000_000
    assert r.cost_usd == expected
    assert isinstance(r.cost_usd, Decimal)
    assert r.estimated_cost_usd is not None and r.estimated_cost_usd > 0
    assert r.usage_estimated is False
    assert r.response_id == reply.id


def test_with_options_and_copy_stay_governed(openai_client, guard):
    openai_client.with_options(timeout=5).chat.completions.create(model="gpt-4o-mini", messages=MSG)
    openai_client.copy(max_retries=1).embeddings.create(model="text-embedding-3-small", input="hello")
    assert [r.api for r in records(guard)] == ["chat.completions", "embeddings"]


def test_unsupported_object_raises_type_error(guard):
    with pytest.raises(TypeError, match="supports openai.OpenAI, openai.AsyncOpenAI, anthropic.Anthropic"):
        guard.wrap(object())


def test_rewrap_moves_client_to_new_guard(openai_client, guard):
    other = tg.Guard(telemetry=False)
    assert other.wrap(openai_client) is openai_client
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert records(guard) == [] and len(records(other)) == 1


def test_ungoverned_endpoints_pass_through(openai_client, guard, fake_llm):
    with pytest.raises(openai.NotFoundError):
        openai_client.models.list()
    assert records(guard) == []
    assert fake_llm.requests[-1].path == "/v1/models"


def test_stream_hides_injected_usage_chunk(openai_client, guard, fake_llm):
    chunks = list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    assert all(c.usage is None for c in chunks)
    assert all(c.choices for c in chunks), "the injected usage chunk must not reach the user"
    assert fake_llm.requests[-1].body["stream_options"] == {"include_usage": True}
    [r] = records(guard)
    assert r.status == "ok" and r.stream and not r.usage_estimated and r.output_tokens == 20


def test_stream_keeps_usage_chunk_when_asked(openai_client, guard):
    stream = openai_client.chat.completions.create(
        model="gpt-4o-mini", messages=MSG, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 20
    [r] = records(guard)
    assert r.output_tokens == 20 and r.status == "ok"


@pytest.mark.parametrize("how", ["close", "with", "break_gc", "never_iterated"])
def test_abandoned_stream_settles_once_as_cancelled(openai_client, guard, how):
    def make():
        return openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)

    if how == "close":
        stream = make()
        next(iter(stream))
        stream.close()
        assert len(list(guard.records())) == 1  # settled at close, not later
    elif how == "with":
        with make() as stream:
            for _ in zip(range(3), stream):
                pass
        assert len(list(guard.records())) == 1
    elif how == "break_gc":
        for i, _ in enumerate(make()):
            if i == 2:
                break
    else:
        make()
    gc.collect()
    [r] = records(guard)
    assert r.status == "cancelled"
    assert r.usage_estimated is True
    assert r.input_tokens > 0
    assert r.cost_usd is not None and r.cost_usd > 0


def test_stream_error_mid_stream_is_recorded(openai_client, guard, fake_llm):
    fake_llm.fail_stream_after(3)
    with pytest.raises(openai.APIError):
        for _ in openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
            pass
    [r] = records(guard)
    assert r.status == "error" and r.error_type


def test_vendor_error_reaches_caller_unchanged(openai_client, guard, fake_llm):
    fake_llm.fail_next(429, retry_after=0.01)
    with pytest.raises(openai.RateLimitError) as info:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert info.value.status_code == 429
    [r] = records(guard)
    assert (r.status, r.error_type, r.cost_usd) == ("error", "RateLimitError", Decimal(0))


def test_sdk_retries_stay_one_record(guard, fake_llm):
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=2))
    fake_llm.fail_next(500, times=1, retry_after=0.01)
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert len(fake_llm.requests) == 2
    [r] = records(guard)
    assert r.status == "ok"


def test_stream_helper_and_parse_helper(openai_client, guard):
    with openai_client.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()
    assert final.choices[0].message.content
    openai_client.chat.completions.parse(model="gpt-4o-mini", messages=MSG)
    rs = records(guard)
    assert [(r.stream, r.status) for r in rs] == [(True, "ok"), (False, "ok")]
    assert all(r.output_tokens == 20 for r in rs)


def test_stream_helper_left_early_settles_at_exit(openai_client, guard):
    with openai_client.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as stream:
        for _ in zip(range(2), stream):
            pass
    [r] = list(guard.records())
    assert r.status == "cancelled"


def test_responses_create_and_stream(openai_client, guard, fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=300, output_tokens=40, cache_read_tokens=100, reasoning_tokens=10))
    resp = openai_client.responses.create(model="gpt-4o-mini", input="hello", max_output_tokens=64)
    assert resp.usage.input_tokens == 300
    events = list(openai_client.responses.create(model="gpt-4o-mini", input="hello", stream=True))
    assert events[-1].type == "response.completed"
    with openai_client.responses.stream(model="gpt-4o-mini", input="hello") as stream:
        stream.get_final_response()
    rs = records(guard)
    assert [r.api for r in rs] == ["responses"] * 3
    for r in rs:
        assert (r.input_tokens, r.output_tokens, r.cache_read_tokens, r.reasoning_tokens) == (300, 40, 100, 10)
        assert r.status == "ok"


def test_embeddings(openai_client, guard, fake_llm):
    fake_llm.set_usage(FakeUsage(input_tokens=12, output_tokens=0))
    out = openai_client.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(out.data) == 2
    [r] = records(guard)
    assert (r.operation, r.api, r.input_tokens, r.output_tokens) == ("embeddings", "embeddings", 12, 0)
    assert r.cost_usd == Decimal("0.02") * 12 / 1_000_000


def test_with_raw_response(openai_client, guard):
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    assert raw.headers.get("content-type", "").startswith("application/json")
    assert raw.parse().usage.completion_tokens == 20
    raw_stream = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    chunks = list(raw_stream.parse())
    assert all(c.choices for c in chunks)
    rs = records(guard)
    assert [(r.stream, r.status, r.output_tokens, r.usage_estimated) for r in rs] == [
        (False, "ok", 20, False),
        (True, "ok", 20, False),
    ]


def test_with_streaming_response(openai_client, guard):
    with openai_client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG) as r:
        assert r.parse().usage.completion_tokens == 20
    with openai_client.chat.completions.with_streaming_response.create(model="gpt-4o-mini", messages=MSG) as r:
        r.read()
    with openai_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MSG, stream=True
    ) as r:
        lines = list(r.iter_lines())
    assert any("[DONE]" in line for line in lines)
    rs = records(guard)
    assert [(r.status, r.usage_estimated) for r in rs] == [("ok", False), ("ok", False), ("ok", True)]
    assert rs[1].output_tokens == 20


def test_unknown_model_price(openai_client, guard, caplog):
    for _ in range(2):
        openai_client.chat.completions.create(model="my-self-hosted-llm", messages=MSG)
    rs = records(guard)
    assert all(r.cost_usd is None and "price:unknown" in r.decisions for r in rs)
    assert rs[0].estimated_cost_usd is None
    warnings = [m for m in caplog.messages if "no price" in m]
    assert len(warnings) == 1 and "tg.Price" in warnings[0]


def test_price_override_wins(fake_llm):
    guard = tg.Guard(telemetry=False, prices={"gpt-4o-mini": tg.Price(input_mtok="1", output_mtok="2")})
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=1_000_000))
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [r] = records(guard)
    assert r.cost_usd == Decimal(3)


async def test_async_calls_and_streams(async_openai_client, guard):
    reply = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert reply.choices[0].message.content
    stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    chunks = [c async for c in stream]
    assert all(c.choices for c in chunks)
    stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    async for _ in stream:
        break
    await stream.close()
    async with async_openai_client.chat.completions.stream(model="gpt-4o-mini", messages=MSG) as s:
        await s.get_final_completion()
    raw = await async_openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG)
    assert raw.parse().usage is not None
    async with async_openai_client.chat.completions.with_streaming_response.create(
        model="gpt-4o-mini", messages=MSG
    ) as resp:
        await resp.parse()
    rs = records(guard)
    assert [(r.stream, r.status) for r in rs] == [
        (False, "ok"),
        (True, "ok"),
        (True, "cancelled"),
        (True, "ok"),
        (False, "ok"),
        (False, "ok"),
    ]


async def test_async_abandoned_stream_settles_on_gc(async_openai_client, guard):
    stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    async for _ in stream:
        break
    del stream
    gc.collect()
    # asyncio closes a collected async generator in a task of its own: let it run.
    for _ in range(5):
        await asyncio.sleep(0)
    [r] = records(guard)
    assert r.status == "cancelled"


def test_one_span_per_call_with_conventions(openai_client, otel: Otel, fake_llm: FakeLLMServer):
    with tg.tags(team="support", app="helpdesk"), tg.task("summarize") as task:
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, max_tokens=50, temperature=0.2)
        list(openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True))
    spans = otel.finished()
    assert len(spans) == 2
    span = spans[0]
    a = span.attributes
    assert span.name == "chat gpt-4o-mini"
    assert span.kind.name == "CLIENT"
    assert a["gen_ai.operation.name"] == "chat"
    assert a["gen_ai.provider.name"] == "openai"
    assert "gen_ai.system" not in a
    assert a["gen_ai.request.model"] == "gpt-4o-mini" and a["gen_ai.response.model"] == "gpt-4o-mini"
    assert a["gen_ai.request.max_tokens"] == 50 and a["gen_ai.request.temperature"] == 0.2
    assert a["gen_ai.usage.input_tokens"] > 0 and a["gen_ai.usage.output_tokens"] == 20
    assert a["gen_ai.response.finish_reasons"] == ("stop",)
    assert a["gen_ai.request.stream"] is False
    assert a["server.address"] == "127.0.0.1" and a["server.port"] == fake_llm.port
    assert a["tokenguard.cost_usd"] > 0 and a["tokenguard.estimated_cost_usd"] > 0
    assert a["tokenguard.tag.team"] == "support" and a["tokenguard.task.id"] == task.id
    assert "gen_ai.input.messages" not in a and "gen_ai.output.messages" not in a
    stream_attrs = spans[1].attributes
    assert stream_attrs["gen_ai.request.stream"] is True
    assert stream_attrs["gen_ai.response.time_to_first_chunk"] > 0


def test_span_not_current_while_stream_open(openai_client):
    from opentelemetry import trace

    stream = openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    assert not trace.get_current_span().get_span_context().is_valid
    list(stream)


def test_error_span_has_type_but_no_message(openai_client, otel, fake_llm):
    fake_llm.fail_next(500, body={"error": {"message": f"bad key {API_KEY_FRAGMENT}", "type": "server_error"}})
    with pytest.raises(openai.InternalServerError):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [span] = otel.finished()
    assert span.attributes["error.type"] == "InternalServerError"
    assert span.status.status_code.name == "ERROR"
    assert API_KEY_FRAGMENT not in repr(span.to_json())


API_KEY_FRAGMENT = "SECRET-0123456789"


def test_metrics(openai_client, otel):
    with tg.tags(team="support", user="u-1"):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    usage = otel.metric_points("gen_ai.client.token.usage")
    kinds = {p.attributes["gen_ai.token.type"]: p for p in usage}
    assert kinds["output"].sum == 20
    assert kinds["input"].attributes["tokenguard.tag.team"] == "support"
    assert "tokenguard.tag.user" not in kinds["input"].attributes  # not a metric tag by default
    [duration] = otel.metric_points("gen_ai.client.operation.duration")
    assert duration.count == 1
    [cost] = otel.metric_points("tokenguard.cost")
    assert cost.value > 0


def test_capture_content_is_opt_in(fake_llm, otel):
    guard = tg.Guard(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, capture_content=True)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [span] = otel.finished()

    messages = json.loads(span.attributes["gen_ai.input.messages"])
    assert messages == [{"role": "user", "parts": [{"type": "text", "content": MSG[0]["content"]}]}]
    output = json.loads(span.attributes["gen_ai.output.messages"])
    assert output[0]["role"] == "assistant" and output[0]["parts"][0]["content"]
    text = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    )
    streamed = json.loads(otel.finished()[1].attributes["gen_ai.output.messages"])
    assert streamed[0]["parts"][0]["content"] == text
    assert streamed[0]["finish_reason"] == "stop"


def test_api_key_never_in_records_or_spans(openai_client, guard, otel):
    openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    [r] = records(guard)
    assert API_KEY_FRAGMENT not in r.model_dump_json()
    assert all(API_KEY_FRAGMENT not in s.to_json() for s in otel.finished())


def test_unknown_price_can_be_refused_before_sending(fake_llm, otel):
    guard = tg.Guard(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider, on_unknown_price="block")
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=0))
    with pytest.raises(tg.PolicyViolation, match=r"no price is known for openai model 'my-llm'.*tg\.Price"):
        client.chat.completions.create(model="my-llm", messages=MSG)
    assert fake_llm.requests == []  # never sent
    [r] = records(guard)
    assert (r.status, r.cost_usd, r.decisions, r.error_type) == ("blocked", Decimal(0), ("price:unknown",), None)
    assert not isinstance(tg.PolicyViolation("x"), openai.OpenAIError)
    [span] = otel.finished()
    assert span.attributes["tokenguard.status"] == "blocked"
    client.chat.completions.create(model="gpt-4o-mini", messages=MSG)  # priced models go through


async def test_async_stream_exception_and_with_block(async_openai_client, guard, fake_llm):
    fake_llm.fail_stream_after(3)
    with pytest.raises(openai.APIError):
        stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
        async for _ in stream:
            pass
    stream = await async_openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True)
    async with stream:
        async for _ in stream:
            break
    assert [r.status for r in guard.records()] == ["error", "cancelled"]


def test_records_filters(openai_client, guard):
    from datetime import datetime, timedelta, timezone

    before = datetime.now(timezone.utc)
    with tg.tags(team="a"):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    openai_client.embeddings.create(model="text-embedding-3-small", input="x")
    after = datetime.now(timezone.utc) + timedelta(seconds=1)
    assert len(list(guard.records(since=before, until=after))) == 2
    assert list(guard.records(until=before)) == []
    assert [r.api for r in guard.records(model="text-embedding-3-small")] == ["embeddings"]
    assert [r.api for r in guard.records(tags={"team": "a"}, status="ok")] == ["chat.completions"]
    with pytest.raises(ValueError, match="timezone-aware"):
        list(guard.records(since=datetime.now()))  # noqa: DTZ005


def test_raw_stream_dropped_unparsed_is_still_recorded(openai_client, guard, fake_llm):
    raw = openai_client.chat.completions.with_raw_response.create(model="gpt-4o-mini", messages=MSG, stream=True)
    assert len(fake_llm.requests) == 1
    del raw
    [r] = records(guard)
    assert r.usage_estimated
    assert r.input_tokens > 0


def test_stream_cut_after_chunks_counts_what_arrived(openai_client, guard, fake_llm):
    fake_llm.fail_stream_after(6)
    received = 0
    with pytest.raises(openai.APIError):
        for _ in openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG, stream=True):
            received += 1
    [r] = records(guard)
    assert r.status == "error"
    assert r.usage_estimated
    assert r.output_tokens > 0
    assert r.cost_usd > 0


def test_metrics_queue_is_bounded_and_drained_on_collect(openai_client, guard, otel, monkeypatch):
    import tokenguard.telemetry

    monkeypatch.setattr(tokenguard.telemetry, "MAX_PENDING_METRICS", 3)
    for _ in range(4):
        openai_client.chat.completions.create(model="gpt-4o-mini", messages=MSG)
    assert len(guard.telemetry._pending) == 1  # three were handed to the SDK without a collection
    [duration] = otel.metric_points("gen_ai.client.operation.duration")
    assert duration.count == 4  # the collection drained the rest first
    assert len(guard.telemetry._pending) == 0
