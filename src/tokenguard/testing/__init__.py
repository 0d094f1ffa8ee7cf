"""Test your LLM-spend governance without calling paid APIs.

:class:`FakeLLMServer` is a small, fast HTTP server on ``127.0.0.1`` that speaks
the OpenAI and Anthropic wire formats well enough for the *real* ``openai`` and
``anthropic`` Python SDKs (sync and async, JSON and streaming, including their
``.stream()`` helpers) to talk to it unmodified. It uses only the standard
library, never listens on anything but the loopback interface, and never
contacts the network.

Quick start::

    from openai import OpenAI
    from anthropic import Anthropic
    from tokenguard.testing import FakeLLMServer, FakeUsage

    with FakeLLMServer() as server:
        openai = OpenAI(base_url=server.openai_base_url, api_key="test")
        anthropic = Anthropic(base_url=server.anthropic_base_url, api_key="test")

        server.set_usage(FakeUsage(input_tokens=1200, output_tokens=80, cache_read_tokens=1000))
        openai.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])

        server.fail_next(429, retry_after=0.01)   # the next call gets a rate-limit error
        assert server.requests[-1].path == "/v1/chat/completions"

With pytest, the ``tokenguard`` plugin (registered automatically when tokenguard
is installed) provides the fixtures ``fake_llm`` (the server, reset before each
test), ``fake_llm_server`` (the session-wide server, not reset),
``fake_openai_client``, ``fake_async_openai_client``, ``fake_anthropic_client``
and ``fake_async_anthropic_client`` (real SDK clients pointed at the server with
``api_key="test-key"`` and ``max_retries=0``)::

    def test_budget(fake_llm, fake_openai_client):
        fake_llm.set_usage(FakeUsage(input_tokens=10, output_tokens=5))
        fake_openai_client.chat.completions.create(model="gpt-4o", messages=[...])
        assert len(fake_llm.requests) == 1

Endpoints
---------

* ``POST /v1/chat/completions`` (OpenAI; JSON or ``"stream": true``; the usage
  chunk is sent only with ``stream_options={"include_usage": True}``, exactly
  like the real API),
* ``POST /v1/responses`` (OpenAI Responses; JSON or streaming events),
* ``POST /v1/embeddings`` (OpenAI; 8-dimensional deterministic vectors unless
  ``dimensions`` is given; ``encoding_format="base64"`` honoured),
* ``POST /v1/messages`` (Anthropic; JSON or streaming events),
* ``POST /v1/messages/count_tokens`` (Anthropic).

Anything else answers 404, an unparsable body 400, in the vendor's error shape.

Replies
-------

The reply is ``N`` words of a fixed lorem-ipsum sequence, where ``N`` is the
request's ``max_tokens`` / ``max_completion_tokens`` / ``max_output_tokens``
capped at 20 (20 when absent). :meth:`FakeLLMServer.set_reply` replaces the text
(still cut to the max-tokens limit, counted in words). A request header
``x-fake-output-tokens: N`` forces ``N`` default words regardless of limits
(e.g. ``extra_headers={"x-fake-output-tokens": "50"}`` for a 50-delta stream).
Streams send one text delta per word. When the max-tokens limit actually cut the
reply (e.g. ``max_tokens=5``: 5 of the 20 default words) the finish reason is
``"length"`` (OpenAI; Responses still report ``status="completed"``) /
``"max_tokens"`` (Anthropic), otherwise ``"stop"`` / ``"end_turn"``; a forced
``x-fake-output-tokens`` reply always ends with ``"stop"`` / ``"end_turn"``. The
response ``model`` echoes the request.

Usage
-----

Unless fixed with :meth:`FakeLLMServer.set_usage`, usage is derived
deterministically from the request (see :func:`derive_input_tokens`):

* ``input_tokens = ceil(chars / 4) + 3 * messages`` where ``chars`` is the total
  length of the compact JSON encoding
  (``json.dumps(value, separators=(",", ":"), ensure_ascii=False)``) of each
  request field among ``system``, ``instructions``, ``messages``, ``input`` and
  ``tools`` that is present, and ``messages`` is the number of items in
  ``messages`` plus the number of items in ``input`` (1 for a string ``input``);
* ``output_tokens`` = the number of words in the reply; no cache or reasoning
  tokens;
* embeddings: ``ceil(len(text) / 4)`` per input string, ``len(tokens)`` per
  token array;
* ``count_tokens`` returns the same input count as ``/v1/messages`` would report
  in total (the fixed usage's ``input_tokens`` if one is set).

:class:`FakeUsage` counts follow the OpenTelemetry convention (input includes
cache reads and writes, output includes reasoning) and are translated into each
vendor's wire convention; notably Anthropic's ``usage.input_tokens`` excludes
the cache parts.

Failure injection
-----------------

:meth:`FakeLLMServer.fail_next` makes the next governed requests (all endpoints
above except ``count_tokens``) fail with an HTTP status in the vendor's error
shape, optionally with a ``retry-after`` header, so the SDKs raise their normal
exceptions (``RateLimitError``, ``InternalServerError``...) and apply their own
retry policy. :meth:`FakeLLMServer.fail_stream_after` cuts the next stream after
``n`` server-sent events. :meth:`FakeLLMServer.set_latency` and
:meth:`FakeLLMServer.set_chunk_delay` add delays.

Every request is recorded in :attr:`FakeLLMServer.requests` *before* it is
answered (failed ones included), so a test can prove whether a call reached the
"provider" at all. For long benchmark runs use
``FakeLLMServer(record_requests=False)`` (or call :meth:`FakeLLMServer.reset`
between rounds) and read :attr:`FakeLLMServer.request_count`.

Performance
-----------

The server is meant for per-call micro-benchmarks: HTTP/1.1 keep-alive,
``TCP_NODELAY``, no per-request logging, one ``send`` per JSON response and one
flushed chunk per server-sent event (so streams really arrive chunk by chunk).
"""

from __future__ import annotations

from tokenguard.testing._server import FakeLLMServer
from tokenguard.testing._types import FakeUsage, RecordedRequest
from tokenguard.testing._wire import derive_input_tokens

__all__ = ["FakeLLMServer", "FakeUsage", "RecordedRequest", "derive_input_tokens"]
