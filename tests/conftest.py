"""Shared fixtures: a Guard wired to a real OpenTelemetry SDK with in-memory exporters, and real
vendor clients pointed at the loopback fake server (the `fake_llm` fixture of tokenguard.testing)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokenguard as tg
from support import API_KEY, Otel
from tokenguard.testing import FakeLLMServer


@pytest.fixture
def otel() -> Iterator[Otel]:
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    yield Otel(tracer_provider, meter_provider, spans, reader)
    tracer_provider.shutdown()
    meter_provider.shutdown()


@pytest.fixture
def guard(otel: Otel) -> tg.Guard:
    return tg.Guard(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)


@pytest.fixture
def openai_client(guard: tg.Guard, fake_llm: FakeLLMServer) -> Iterator[Any]:
    from openai import OpenAI

    client = guard.wrap(OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    yield client
    client.close()


@pytest.fixture
async def async_openai_client(guard: tg.Guard, fake_llm: FakeLLMServer) -> Any:
    from openai import AsyncOpenAI

    client = guard.wrap(AsyncOpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    yield client
    await client.close()


@pytest.fixture
def anthropic_client(guard: tg.Guard, fake_llm: FakeLLMServer, otel: Otel) -> Iterator[Any]:
    from anthropic import Anthropic

    # The SDK's native tracing is on (given the same provider): tokenguard must still yield one span.
    client = guard.wrap(
        Anthropic(
            base_url=fake_llm.anthropic_base_url,
            api_key=API_KEY,
            max_retries=0,
            open_telemetry={"tracer_provider": otel.tracer_provider},
        )
    )
    yield client
    client.close()


@pytest.fixture
async def async_anthropic_client(guard: tg.Guard, fake_llm: FakeLLMServer, otel: Otel) -> Any:
    from anthropic import AsyncAnthropic

    client = guard.wrap(
        AsyncAnthropic(
            base_url=fake_llm.anthropic_base_url,
            api_key=API_KEY,
            max_retries=0,
            open_telemetry={"tracer_provider": otel.tracer_provider},
        )
    )
    yield client
    await client.close()
