"""Tests of tokenguard.testing.FakeLLMServer against the REAL openai and anthropic SDKs."""

from __future__ import annotations

import base64
import http.client
import json
import math
import os
import struct
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx2
import openai
import pytest

import tokenguard.testing
from tokenguard.testing import FakeLLMServer, FakeUsage, RecordedRequest, derive_input_tokens

MESSAGES: list[Any] = [{"role": "user", "content": "Hello there, how are you?"}]
CHAT = {"model": "gpt-4o-mini", "messages": MESSAGES}
ANTHROPIC = {"model": "claude-fake-1", "max_tokens": 100, "messages": MESSAGES}
LOREM = "lorem ipsum dolor sit amet consectetur adipiscing elit sed do".split()


def chat_input_tokens(messages: list[Any] = MESSAGES) -> int:
    return math.ceil(len(json.dumps(messages, separators=(",", ":"))) / 4) + 3 * len(messages)


def raw_post(server: FakeLLMServer, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        conn.request("POST", path, body, {"content-type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def drain(iterable: Iterable[Any], sink: list[Any]) -> None:
    for item in iterable:
        sink.append(item)


async def adrain(iterable: AsyncIterable[Any], sink: list[Any]) -> None:
    async for item in iterable:
        sink.append(item)


@pytest.fixture
def openai_retrying(fake_llm: FakeLLMServer) -> Iterator[openai.OpenAI]:
    client = openai.OpenAI(base_url=fake_llm.openai_base_url, api_key="test-key", max_retries=1)
    yield client
    client.close()


# --------------------------------------------------------------------------- derivation


def test_derived_input_tokens_formula() -> None:
    assert chat_input_tokens() == 17  # 56 chars of compact JSON -> 14, + 3 for one message
    assert derive_input_tokens({"messages": MESSAGES}) == 17
    # every text field counts; a string input is one message
    body = {"system": "Be brief.", "input": "abcd", "tools": [{"name": "x"}], "instructions": None}
    expected = math.ceil((len('"Be brief."') + len('"abcd"') + len('[{"name":"x"}]')) / 4) + 3
    assert derive_input_tokens(body) == expected
    assert derive_input_tokens({}) == 0


def test_fake_usage_validation() -> None:
    FakeUsage(input_tokens=10, output_tokens=5, cache_read_tokens=6, cache_write_tokens=4, reasoning_tokens=5)
    with pytest.raises(ValueError):
        FakeUsage(input_tokens=10, output_tokens=5, cache_read_tokens=8, cache_write_tokens=4)
    with pytest.raises(ValueError):
        FakeUsage(input_tokens=10, output_tokens=5, reasoning_tokens=6)
    with pytest.raises(ValueError):
        FakeUsage(input_tokens=-1, output_tokens=0)


# --------------------------------------------------------------------------- openai chat


def test_chat_json(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    resp = fake_openai_client.chat.completions.create(**CHAT)
    assert resp.object == "chat.completion"
    assert resp.id.startswith("chatcmpl-")
    assert resp.model == "gpt-4o-mini"
    choice = resp.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content is not None
    assert choice.message.content.startswith("lorem ipsum dolor sit amet")
    assert len(choice.message.content.split()) == 20
    assert choice.finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == chat_input_tokens()
    assert resp.usage.completion_tokens == 20
    assert resp.usage.total_tokens == chat_input_tokens() + 20
    assert resp.usage.prompt_tokens_details is not None
    assert resp.usage.prompt_tokens_details.cached_tokens == 0
    assert resp.usage.completion_tokens_details is not None
    assert resp.usage.completion_tokens_details.reasoning_tokens == 0

    [req] = fake_llm.requests
    assert fake_llm.request_count == 1
    assert isinstance(req, RecordedRequest)
    assert (req.method, req.path) == ("POST", "/v1/chat/completions")
    assert req.headers["authorization"] == "Bearer test-key"
    assert all(k == k.lower() for k in req.headers)
    assert req.body == {"model": "gpt-4o-mini", "messages": MESSAGES}
    assert abs(req.time - time.time()) < 5


def test_chat_json_max_tokens_truncates(fake_openai_client: openai.OpenAI) -> None:
    resp = fake_openai_client.chat.completions.create(**CHAT, max_completion_tokens=5)
    assert resp.choices[0].message.content == "lorem ipsum dolor sit amet"
    assert resp.choices[0].finish_reason == "length"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 5
    resp = fake_openai_client.chat.completions.create(**CHAT, max_tokens=20)  # not cut: 20 words
    assert resp.choices[0].finish_reason == "stop"
    resp = fake_openai_client.chat.completions.create(**CHAT, max_tokens=500)
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 20


async def test_chat_json_async(fake_llm: FakeLLMServer, fake_async_openai_client: openai.AsyncOpenAI) -> None:
    resp = await fake_async_openai_client.chat.completions.create(**CHAT, max_tokens=3)
    assert resp.choices[0].message.content == "lorem ipsum dolor"
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    assert len(fake_llm.requests) == 1


def test_chat_stream_without_usage(fake_openai_client: openai.OpenAI) -> None:
    chunks = list(fake_openai_client.chat.completions.create(**CHAT, max_tokens=4, stream=True))
    assert [c.object for c in chunks] == ["chat.completion.chunk"] * len(chunks)
    assert len({c.id for c in chunks}) == 1
    assert chunks[0].choices[0].delta.role == "assistant"
    deltas = [c.choices[0].delta.content for c in chunks[1:-1]]
    assert deltas == ["lorem", " ipsum", " dolor", " sit"]
    assert chunks[-1].choices[0].finish_reason == "length"
    # like the real API: no usage anywhere, and the key is absent from the chunks
    assert all(c.usage is None and "usage" not in c.model_fields_set for c in chunks)
    assert all(c.choices for c in chunks)


def test_chat_stream_with_usage(fake_openai_client: openai.OpenAI) -> None:
    stream = fake_openai_client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    *body, last = chunks
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.prompt_tokens == chat_input_tokens()
    assert last.usage.completion_tokens == 20
    assert all(c.usage is None and "usage" in c.model_fields_set for c in body)
    assert body[-1].choices[0].finish_reason == "stop"
    text = "".join(c.choices[0].delta.content or "" for c in body)
    assert len(text.split()) == 20


async def test_chat_stream_async(fake_async_openai_client: openai.AsyncOpenAI) -> None:
    stream = await fake_async_openai_client.chat.completions.create(
        **CHAT, max_tokens=2, stream=True, stream_options={"include_usage": True}
    )
    chunks = [c async for c in stream]
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "lorem ipsum"
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 2


def test_chat_stream_helper(fake_openai_client: openai.OpenAI) -> None:
    with fake_openai_client.chat.completions.stream(
        **CHAT, stream_options={"include_usage": True}, extra_headers={"x-fake-output-tokens": "3"}
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "content.delta"]
        final = stream.get_final_completion()
    # like the real API, the first (role) chunk carries content "" -> an empty content.delta event
    assert deltas == ["", "lorem", " ipsum", " dolor"]
    assert final.choices[0].message.content == "lorem ipsum dolor"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.completion_tokens == 3


def test_chat_stream_helper_rejects_length_finish(fake_openai_client: openai.OpenAI) -> None:
    # SDK behaviour worth knowing: the helper raises when the reply was cut by max_tokens
    with (
        pytest.raises(openai.LengthFinishReasonError),
        fake_openai_client.chat.completions.stream(**CHAT, max_tokens=3) as stream,
    ):
        stream.get_final_completion()


async def test_chat_stream_helper_async(fake_async_openai_client: openai.AsyncOpenAI) -> None:
    async with fake_async_openai_client.chat.completions.stream(**CHAT) as stream:
        async for _ in stream:
            pass
        final = await stream.get_final_completion()
    assert final.usage is None  # not requested
    assert len((final.choices[0].message.content or "").split()) == 20


# --------------------------------------------------------------------------- openai responses


def test_responses_json(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    resp = fake_openai_client.responses.create(
        model="gpt-4.1", input="Say hi", instructions="Be terse.", max_output_tokens=16
    )
    assert resp.id.startswith("resp_")
    assert resp.object == "response"
    assert resp.status == "completed"
    assert resp.model == "gpt-4.1"
    assert resp.output_text.startswith(" ".join(LOREM))
    assert len(resp.output_text.split()) == 16
    msg = resp.output[0]
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.status == "completed"
    assert resp.usage is not None
    assert resp.usage.input_tokens == derive_input_tokens({"input": "Say hi", "instructions": "Be terse."})
    assert resp.usage.output_tokens == 16
    assert resp.usage.total_tokens == resp.usage.input_tokens + 16
    assert resp.usage.input_tokens_details.cached_tokens == 0
    assert resp.usage.output_tokens_details.reasoning_tokens == 0
    assert fake_llm.requests[0].path == "/v1/responses"


async def test_responses_json_async(fake_async_openai_client: openai.AsyncOpenAI) -> None:
    resp = await fake_async_openai_client.responses.create(model="gpt-4.1", input=MESSAGES)
    assert resp.usage is not None
    assert resp.usage.input_tokens == chat_input_tokens()
    assert resp.usage.output_tokens == 20


RESPONSES_EVENTS = [
    "response.created",
    "response.in_progress",
    "response.output_item.added",
    "response.content_part.added",
    *["response.output_text.delta"] * 3,
    "response.output_text.done",
    "response.content_part.done",
    "response.output_item.done",
    "response.completed",
]


def test_responses_stream_raw(fake_openai_client: openai.OpenAI) -> None:
    events = list(fake_openai_client.responses.create(model="gpt-4.1", input="hi", max_output_tokens=3, stream=True))
    assert [e.type for e in events] == RESPONSES_EVENTS
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [type(e).__name__ for e in events][:2] == ["ResponseCreatedEvent", "ResponseInProgressEvent"]
    completed = events[-1]
    assert completed.type == "response.completed"
    assert completed.response.usage is not None
    assert completed.response.usage.output_tokens == 3
    assert completed.response.output_text == "lorem ipsum dolor"
    assert events[0].type == "response.created"
    assert events[0].response.usage is None


def test_responses_stream_helper(fake_openai_client: openai.OpenAI) -> None:
    with fake_openai_client.responses.stream(model="gpt-4.1", input="hi", max_output_tokens=3) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert deltas == ["lorem", " ipsum", " dolor"]
    assert final.output_text == "lorem ipsum dolor"
    assert final.usage is not None
    assert final.usage.output_tokens == 3


async def test_responses_stream_async(fake_async_openai_client: openai.AsyncOpenAI) -> None:
    stream = await fake_async_openai_client.responses.create(
        model="gpt-4.1", input="hi", max_output_tokens=3, stream=True
    )
    types = [e.type async for e in stream]
    assert types == RESPONSES_EVENTS
    async with fake_async_openai_client.responses.stream(model="gpt-4.1", input="hi") as helper:
        final = await helper.get_final_response()
    assert final.usage is not None
    assert final.usage.output_tokens == 20


# --------------------------------------------------------------------------- openai embeddings


def test_embeddings(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    # the SDK asks for base64 by default and decodes it
    resp = fake_openai_client.embeddings.create(model="text-embedding-3-small", input=["abcdefgh", "xyz"])
    assert fake_llm.requests[-1].body["encoding_format"] == "base64"
    assert [d.index for d in resp.data] == [0, 1]
    assert all(len(d.embedding) == 8 and all(isinstance(x, float) for x in d.embedding) for d in resp.data)
    assert resp.usage.prompt_tokens == 2 + 1
    assert resp.usage.total_tokens == 3
    assert resp.model == "text-embedding-3-small"

    floats = fake_openai_client.embeddings.create(
        model="text-embedding-3-small", input="abcdefgh", encoding_format="float", dimensions=4
    )
    assert floats.data[0].embedding == resp.data[0].embedding[:4]  # deterministic per text

    raw = fake_openai_client.embeddings.create(model="m", input="abcdefgh", encoding_format="base64")
    encoded: Any = raw.data[0].embedding
    assert isinstance(encoded, str)
    assert list(struct.unpack("<8f", base64.b64decode(encoded))) == resp.data[0].embedding


async def test_embeddings_async(fake_async_openai_client: openai.AsyncOpenAI) -> None:
    resp = await fake_async_openai_client.embeddings.create(model="m", input=[[1, 2, 3], [4, 5]])
    assert len(resp.data) == 2
    assert resp.usage.prompt_tokens == 5


# --------------------------------------------------------------------------- anthropic


def test_anthropic_json(fake_llm: FakeLLMServer, fake_anthropic_client: anthropic.Anthropic) -> None:
    msg = fake_anthropic_client.messages.create(**ANTHROPIC, system="Be brief.")
    assert msg.id.startswith("msg_")
    assert msg.type == "message"
    assert msg.role == "assistant"
    assert msg.model == "claude-fake-1"
    assert msg.content[0].type == "text"
    assert len(msg.content[0].text.split()) == 20
    assert msg.stop_reason == "end_turn"
    assert msg.stop_sequence is None
    assert msg.usage.input_tokens == derive_input_tokens({"messages": MESSAGES, "system": "Be brief."})
    assert msg.usage.output_tokens == 20
    assert msg.usage.cache_read_input_tokens == 0
    assert msg.usage.cache_creation_input_tokens == 0
    [req] = fake_llm.requests
    assert req.path == "/v1/messages"
    assert req.headers["authorization"] == "Bearer test-key"  # anthropic 2.x: not x-api-key
    assert "anthropic-version" in req.headers


async def test_anthropic_json_async(fake_async_anthropic_client: anthropic.AsyncAnthropic) -> None:
    msg = await fake_async_anthropic_client.messages.create(**{**ANTHROPIC, "max_tokens": 2})
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "lorem ipsum"
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 2


def test_anthropic_stream_raw(fake_anthropic_client: anthropic.Anthropic) -> None:
    events = list(fake_anthropic_client.messages.create(**{**ANTHROPIC, "max_tokens": 3}, stream=True))
    # (the SDK drops `ping` events)
    assert [e.type for e in events] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert start.message.usage.input_tokens == chat_input_tokens()
    assert start.message.usage.output_tokens == 1
    assert delta.type == "message_delta"
    assert delta.delta.stop_reason == "max_tokens"
    assert delta.usage.output_tokens == 3
    assert delta.usage.input_tokens == chat_input_tokens()


def test_anthropic_stream_helper(fake_anthropic_client: anthropic.Anthropic) -> None:
    with fake_anthropic_client.messages.stream(**ANTHROPIC) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert len(text.split()) == 20
    assert final.content[0].type == "text"
    assert final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.input_tokens == chat_input_tokens()
    assert final.usage.output_tokens == 20


async def test_anthropic_stream_async(fake_async_anthropic_client: anthropic.AsyncAnthropic) -> None:
    stream = await fake_async_anthropic_client.messages.create(**ANTHROPIC, stream=True)
    types = [e.type async for e in stream]
    assert types[0] == "message_start"
    assert types[-1] == "message_stop"
    async with fake_async_anthropic_client.messages.stream(**{**ANTHROPIC, "max_tokens": 4}) as helper:
        final = await helper.get_final_message()
    assert final.usage.output_tokens == 4


def test_anthropic_count_tokens(fake_llm: FakeLLMServer, fake_anthropic_client: anthropic.Anthropic) -> None:
    count = fake_anthropic_client.messages.count_tokens(model="claude-fake-1", messages=MESSAGES)
    assert count.input_tokens == chat_input_tokens()
    fake_llm.fail_next(429)  # count_tokens is not governed: not affected
    assert fake_anthropic_client.messages.count_tokens(model="m", messages=MESSAGES).input_tokens == 17
    fake_llm.set_usage(FakeUsage(input_tokens=1000, output_tokens=1, cache_read_tokens=900))
    assert fake_anthropic_client.messages.count_tokens(model="m", messages=MESSAGES).input_tokens == 1000
    with pytest.raises(anthropic.RateLimitError):  # the failure is still queued
        fake_anthropic_client.messages.create(**ANTHROPIC)


# --------------------------------------------------------------------------- fixed usage

USAGE = FakeUsage(
    input_tokens=1000, output_tokens=300, cache_read_tokens=600, cache_write_tokens=100, reasoning_tokens=200
)


def test_fixed_usage_openai(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.set_usage(USAGE)
    usage = fake_openai_client.chat.completions.create(**CHAT).usage
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (1000, 300, 1300)
    assert usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 600
    assert usage.completion_tokens_details is not None
    assert usage.completion_tokens_details.reasoning_tokens == 200

    chunks = list(
        fake_openai_client.chat.completions.create(**CHAT, stream=True, stream_options={"include_usage": True})
    )
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.prompt_tokens == 1000

    r_usage = fake_openai_client.responses.create(model="gpt-4.1", input="hi").usage
    assert r_usage is not None
    assert (r_usage.input_tokens, r_usage.output_tokens, r_usage.total_tokens) == (1000, 300, 1300)
    assert r_usage.input_tokens_details.cached_tokens == 600
    assert r_usage.input_tokens_details.cache_write_tokens == 100
    assert r_usage.output_tokens_details.reasoning_tokens == 200

    emb = fake_openai_client.embeddings.create(model="m", input="hi")
    assert (emb.usage.prompt_tokens, emb.usage.total_tokens) == (1000, 1000)

    fake_llm.set_usage(None)  # back to derived
    usage = fake_openai_client.chat.completions.create(**CHAT).usage
    assert usage is not None
    assert usage.prompt_tokens == chat_input_tokens()


def test_fixed_usage_anthropic_splits_input(
    fake_llm: FakeLLMServer, fake_anthropic_client: anthropic.Anthropic
) -> None:
    fake_llm.set_usage(USAGE)
    usage = fake_anthropic_client.messages.create(**ANTHROPIC).usage
    assert usage.input_tokens == 1000 - 600 - 100  # Anthropic reports cache parts separately
    assert usage.cache_read_input_tokens == 600
    assert usage.cache_creation_input_tokens == 100
    assert usage.output_tokens == 300

    events = list(fake_anthropic_client.messages.create(**ANTHROPIC, stream=True))
    start, delta = events[0], events[-2]
    assert start.type == "message_start"
    assert delta.type == "message_delta"
    assert start.message.usage.input_tokens == 300
    assert start.message.usage.cache_read_input_tokens == 600
    assert start.message.usage.cache_creation_input_tokens == 100
    assert delta.usage.output_tokens == 300
    assert (delta.usage.input_tokens, delta.usage.cache_read_input_tokens) == (300, 600)

    with fake_anthropic_client.messages.stream(**ANTHROPIC) as stream:
        final = stream.get_final_message()
    assert (final.usage.input_tokens, final.usage.output_tokens) == (300, 300)
    assert (final.usage.cache_read_input_tokens, final.usage.cache_creation_input_tokens) == (600, 100)


# --------------------------------------------------------------------------- failures


def test_fail_next_openai(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.fail_next(429, retry_after=2)
    with pytest.raises(openai.RateLimitError) as info:
        fake_openai_client.chat.completions.create(**CHAT)
    err = info.value
    assert err.status_code == 429
    assert err.code == "rate_limit_exceeded"
    assert err.response.headers["retry-after"] == "2"
    assert "x-should-retry" not in err.response.headers
    assert isinstance(err.body, dict)
    assert err.body["type"] == "requests"

    fake_llm.fail_next(500, times=2)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            fake_openai_client.responses.create(model="m", input="hi", stream=True)
    fake_llm.fail_next(503, body={"error": {"message": "custom", "type": "x", "code": "y"}})
    with pytest.raises(openai.InternalServerError) as info2:
        fake_openai_client.embeddings.create(model="m", input="hi")
    assert info2.value.body == {"message": "custom", "type": "x", "code": "y"}
    assert fake_openai_client.chat.completions.create(**CHAT).choices  # queue drained
    assert len(fake_llm.requests) == 5  # failed requests are recorded too


def test_fail_next_anthropic(fake_llm: FakeLLMServer, fake_anthropic_client: anthropic.Anthropic) -> None:
    fake_llm.fail_next(429, retry_after=1.5)
    with pytest.raises(anthropic.RateLimitError) as info:
        fake_anthropic_client.messages.create(**ANTHROPIC)
    assert info.value.status_code == 429
    assert info.value.body == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": info.value.body["error"]["message"]},  # type: ignore[index]
        "request_id": info.value.request_id,
    }
    assert info.value.response.headers["retry-after"] == "1.5"
    fake_llm.fail_next(529)
    with pytest.raises(anthropic.OverloadedError), fake_anthropic_client.messages.stream(**ANTHROPIC) as s:
        s.get_final_message()
    fake_llm.fail_next(500)
    with pytest.raises(anthropic.InternalServerError):
        fake_anthropic_client.messages.create(**ANTHROPIC)


def test_sdk_retry_honours_retry_after_openai(fake_llm: FakeLLMServer, openai_retrying: openai.OpenAI) -> None:
    fake_llm.fail_next(429, retry_after=0.01)
    started = time.perf_counter()
    resp = openai_retrying.chat.completions.create(**CHAT)
    elapsed = time.perf_counter() - started
    assert resp.choices[0].message.content
    assert elapsed < 0.3  # the SDK's own backoff would be >= 0.375 s
    first, second = fake_llm.requests
    assert first.body == second.body
    assert (first.headers["x-stainless-retry-count"], second.headers["x-stainless-retry-count"]) == ("0", "1")


def test_sdk_retry_honours_retry_after_anthropic(fake_llm: FakeLLMServer) -> None:
    client = anthropic.Anthropic(base_url=fake_llm.anthropic_base_url, api_key="k", max_retries=1)
    try:
        fake_llm.fail_next(429, retry_after=0.01)
        started = time.perf_counter()
        assert client.messages.create(**ANTHROPIC).content
        assert time.perf_counter() - started < 0.3
        assert len(fake_llm.requests) == 2
        fake_llm.fail_next(429, times=2, retry_after=0.01)  # more failures than retries
        with pytest.raises(anthropic.RateLimitError):
            client.messages.create(**ANTHROPIC)
        assert len(fake_llm.requests) == 4
    finally:
        client.close()


async def test_sdk_retry_async(fake_llm: FakeLLMServer) -> None:
    async with openai.AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key="k", max_retries=1) as client:
        fake_llm.fail_next(500, retry_after=0.01)
        stream = await client.chat.completions.create(**CHAT, stream=True)
        assert [c async for c in stream]
    assert len(fake_llm.requests) == 2


def test_fail_stream_after_openai(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.fail_stream_after(3)
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        drain(fake_openai_client.chat.completions.create(**CHAT, stream=True), received)
    assert len(received) == 3
    # one-shot: the next stream is complete
    assert len(list(fake_openai_client.chat.completions.create(**CHAT, stream=True))) == 22
    fake_llm.fail_stream_after(5)
    with pytest.raises(openai.APIConnectionError), fake_openai_client.responses.stream(model="m", input="hi") as stream:
        stream.get_final_response()


async def test_fail_stream_after_async(fake_llm: FakeLLMServer, fake_async_openai_client: openai.AsyncOpenAI) -> None:
    fake_llm.fail_stream_after(2)
    stream = await fake_async_openai_client.chat.completions.create(**CHAT, stream=True)
    received: list[Any] = []
    with pytest.raises(openai.APIConnectionError):
        await adrain(stream, received)
    assert len(received) == 2


def test_fail_stream_after_anthropic(fake_llm: FakeLLMServer, fake_anthropic_client: anthropic.Anthropic) -> None:
    fake_llm.fail_stream_after(4)  # message_start, content_block_start, ping, one delta
    received: list[Any] = []
    # NB: the anthropic SDK lets the raw httpx2 transport error escape mid-stream (not APIConnectionError)
    with pytest.raises(httpx2.RemoteProtocolError):
        drain(fake_anthropic_client.messages.create(**ANTHROPIC, stream=True), received)
    assert [e.type for e in received] == ["message_start", "content_block_start", "content_block_delta"]


def test_fail_stream_after_ignores_json_requests(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.fail_stream_after(1)
    assert fake_openai_client.chat.completions.create(**CHAT).choices  # not a stream: unaffected
    with pytest.raises(openai.APIConnectionError):
        list(fake_openai_client.chat.completions.create(**CHAT, stream=True))


# --------------------------------------------------------------------------- knobs


def test_output_tokens_header(fake_openai_client: openai.OpenAI, fake_anthropic_client: anthropic.Anthropic) -> None:
    stream = fake_openai_client.chat.completions.create(
        **CHAT, max_tokens=16, stream=True, extra_headers={"x-fake-output-tokens": "50"}
    )
    deltas = [c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content]
    assert len(deltas) == 50
    msg = fake_anthropic_client.messages.create(**ANTHROPIC, extra_headers={"x-fake-output-tokens": "7"})
    assert msg.usage.output_tokens == 7
    with pytest.raises(anthropic.BadRequestError):
        fake_anthropic_client.messages.create(**ANTHROPIC, extra_headers={"x-fake-output-tokens": "many"})


def test_set_reply(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.set_reply("Hello,  world!\nBye.")
    resp = fake_openai_client.chat.completions.create(**CHAT)
    assert resp.choices[0].message.content == "Hello,  world!\nBye."
    assert resp.usage is not None
    assert resp.usage.completion_tokens == 3
    chunks = list(fake_openai_client.chat.completions.create(**CHAT, stream=True))
    assert [c.choices[0].delta.content for c in chunks[1:-1]] == ["Hello,", "  world!", "\nBye."]
    resp = fake_openai_client.chat.completions.create(**CHAT, max_tokens=2)
    assert resp.choices[0].message.content == "Hello,  world!"
    assert resp.choices[0].finish_reason == "length"


def test_latency_and_chunk_delay(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.set_latency(0.05)
    started = time.perf_counter()
    fake_openai_client.chat.completions.create(**CHAT)
    assert time.perf_counter() - started >= 0.05
    fake_llm.set_latency(0)
    fake_llm.set_chunk_delay(0.01)
    stream = fake_openai_client.chat.completions.create(**CHAT, max_tokens=3, stream=True)
    stamps = [time.perf_counter() for _ in stream]
    assert stamps[-1] - stamps[0] >= 0.04  # 6 events, 5 gaps


def test_request_recorded_before_answer(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.set_latency(0.3)
    worker = threading.Thread(target=lambda: fake_openai_client.chat.completions.create(**CHAT))
    worker.start()
    deadline = time.monotonic() + 0.25
    while not fake_llm.requests and time.monotonic() < deadline:
        time.sleep(0.005)
    assert len(fake_llm.requests) == 1
    assert worker.is_alive()  # still waiting for the answer
    worker.join()


def test_reset(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    fake_llm.set_usage(USAGE)
    fake_llm.set_reply("x")
    fake_llm.set_latency(1)
    fake_llm.fail_next(500)
    fake_llm.fail_stream_after(0)
    fake_llm.reset()
    resp = fake_openai_client.chat.completions.create(**CHAT)
    assert resp.usage is not None
    assert resp.usage.prompt_tokens == chat_input_tokens()
    assert fake_llm.requests[0].path == "/v1/chat/completions"
    assert len(list(fake_openai_client.chat.completions.create(**CHAT, stream=True))) == 22


def test_fixture_starts_clean(fake_llm: FakeLLMServer) -> None:
    assert fake_llm.requests == []
    fake_llm.set_usage(USAGE)  # must not leak: the next test gets a reset server


def test_fixture_starts_clean_again(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    assert fake_llm.requests == []
    usage = fake_openai_client.chat.completions.create(**CHAT).usage
    assert usage is not None
    assert usage.prompt_tokens == chat_input_tokens()


# --------------------------------------------------------------------------- errors & routing


def test_unknown_endpoint_and_bad_json(fake_llm: FakeLLMServer, fake_openai_client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        fake_openai_client.models.list()
    status, body = raw_post(fake_llm, "/v1/chat/completions", b"{not json")
    assert status == 400
    assert body["error"]["type"] == "invalid_request_error"
    status, body = raw_post(fake_llm, "/v1/messages", b"[1, 2]")
    assert status == 400
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    status, body = raw_post(fake_llm, "/v1/nope", b"{}", {"anthropic-version": "2023-06-01"})
    assert status == 404
    assert body["error"]["type"] == "not_found_error"
    assert [r.body for r in fake_llm.requests] == [None, None, [1, 2], {}]


def test_anthropic_not_found(fake_anthropic_client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as info:
        fake_anthropic_client.models.list()
    assert info.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


# --------------------------------------------------------------------------- lifecycle


def test_lifecycle() -> None:
    server = FakeLLMServer()
    assert not server.running
    with pytest.raises(RuntimeError):
        _ = server.base_url
    server.start()
    try:
        with pytest.raises(RuntimeError):
            server.start()
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.openai_base_url == server.base_url + "/v1"
        assert server.anthropic_base_url == server.base_url
        status, body = raw_post(server, "/v1/chat/completions", json.dumps(CHAT).encode())
        assert status == 200
        assert body["object"] == "chat.completion"
    finally:
        server.stop()
    server.stop()  # idempotent
    assert not server.running

    with FakeLLMServer(port=0) as again:
        fixed_port = again.port
    with FakeLLMServer(port=fixed_port) as fixed:
        assert fixed.port == fixed_port
        assert raw_post(fixed, "/v1/embeddings", b'{"model":"m","input":"x"}')[0] == 200


def test_stop_closes_keepalive_connections() -> None:
    with FakeLLMServer() as server:
        client = openai.OpenAI(base_url=server.openai_base_url, api_key="k", max_retries=0)
        client.chat.completions.create(**CHAT)  # leaves a pooled keep-alive connection
    started = time.perf_counter()
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(**CHAT)
    assert time.perf_counter() - started < 2
    client.close()


def test_import_is_light() -> None:
    code = "import sys, tokenguard.testing; print('openai' in sys.modules or 'anthropic' in sys.modules)"
    src = str(Path(tokenguard.testing.__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env)
    assert out.stdout.strip() == "False"


def test_request_count_without_recording() -> None:
    with FakeLLMServer(record_requests=False) as server:
        for _ in range(3):
            assert raw_post(server, "/v1/embeddings", b'{"model":"m","input":"x"}')[0] == 200
        assert server.requests == []
        assert server.request_count == 3
        server.reset()
        assert server.request_count == 0
