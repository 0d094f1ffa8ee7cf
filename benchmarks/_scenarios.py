"""The scenarios: tokenguard's wrapped client against the raw client, an A/A control, and the
Anthropic SDK's own OpenTelemetry tracing as a peer. Each scenario gets fresh clients, a fresh
Guard (so a fresh in-memory ledger) and fresh OpenTelemetry providers, and checks afterwards that
every timed call really was governed (one ledger record, and one span with the SDK providers).
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from _calls import (
    STREAM_CHUNKS,
    anthropic_async_call,
    anthropic_async_client,
    anthropic_sync_call,
    anthropic_sync_client,
    openai_async_call,
    openai_async_client,
    openai_sync_call,
    openai_sync_client,
)
from _fakeserver import ServerHandle, anthropic_base_url, openai_base_url
from _harness import Budget, PairStats, PairTimes, run_async, summarize, time_pairs_async, time_pairs_sync
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

if TYPE_CHECKING:
    from tokenguard import Guard

Vendor = Literal["openai", "anthropic"]
TelemetryMode = Literal["off", "noop", "sdk"]

TELEMETRY_LABELS: dict[TelemetryMode, str] = {
    "off": "telemetry off",
    "noop": "OTel global no-op",
    "sdk": "OTel SDK traces+metrics",
}


@dataclass(frozen=True)
class Spec:
    """One overhead scenario."""

    vendor: Vendor
    is_async: bool
    stream: bool
    telemetry: TelemetryMode
    include_usage: bool = True
    """OpenAI streams: the caller asks for the usage chunk itself (else tokenguard adds it)."""
    chunks: int = STREAM_CHUNKS
    """Text deltas per stream."""

    @property
    def api(self) -> str:
        return "openai chat" if self.vendor == "openai" else "anthropic messages"

    @property
    def shape(self) -> str:
        if not self.stream:
            return "non-stream"
        return f"stream{self.chunks}" + ("" if self.include_usage or self.vendor != "openai" else " (no usage opt)")

    @property
    def name(self) -> str:
        mode = "async" if self.is_async else "sync"
        return f"{self.api} {mode} {self.shape} | {TELEMETRY_LABELS[self.telemetry]}"


@dataclass
class Otel:
    """An OpenTelemetry SDK pipeline that keeps everything in memory."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    @classmethod
    def create(cls) -> Otel:
        spans = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
        metrics = InMemoryMetricReader()
        meter_provider = MeterProvider(metric_readers=[metrics])
        return cls(tracer_provider, meter_provider, spans, metrics)

    def span_count(self) -> int:
        return len(self.spans.get_finished_spans())

    def shutdown(self) -> None:
        self.spans.clear()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


def make_guard(mode: TelemetryMode) -> tuple[Guard, Otel | None]:
    from tokenguard import Guard

    if mode == "off":
        guard, otel = Guard(telemetry=False), None
    elif mode == "noop":
        guard, otel = Guard(), None
    else:
        otel = Otel.create()
        guard = Guard(tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
    guard.prices.load()  # normally loaded in the background; the warm-up would hide it anyway
    return guard, otel


class CheckFailed(RuntimeError):
    pass


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise CheckFailed(message)


def _time_openai(spec: Spec, server: ServerHandle, budget: Budget, guard: Guard) -> PairTimes:
    url = openai_base_url(server)
    shape: dict[str, Any] = {"stream": spec.stream, "include_usage": spec.include_usage, "chunks": spec.chunks}
    if spec.is_async:

        async def pairs() -> PairTimes:
            raw = openai_async_client(url)
            wrapped = guard.wrap(openai_async_client(url))
            try:
                return await time_pairs_async(
                    openai_async_call(raw.chat.completions.create, **shape),
                    openai_async_call(wrapped.chat.completions.create, **shape),
                    budget,
                )
            finally:
                await raw.close()
                await wrapped.close()

        return run_async(pairs)
    raw_s = openai_sync_client(url)
    wrapped_s = guard.wrap(openai_sync_client(url))
    try:
        return time_pairs_sync(
            openai_sync_call(raw_s.chat.completions.create, **shape),
            openai_sync_call(wrapped_s.chat.completions.create, **shape),
            budget,
        )
    finally:
        raw_s.close()
        wrapped_s.close()


def _time_anthropic(
    server: ServerHandle,
    budget: Budget,
    *,
    is_async: bool,
    stream: bool,
    chunks: int = STREAM_CHUNKS,
    wrap: Callable[[Any], Any],
    raw_options: dict[str, Any],
    wrapped_options: dict[str, Any],
) -> PairTimes:
    url = anthropic_base_url(server)
    if is_async:

        async def pairs() -> PairTimes:
            raw = anthropic_async_client(url, **raw_options)
            wrapped = wrap(anthropic_async_client(url, **wrapped_options))
            try:
                return await time_pairs_async(
                    anthropic_async_call(raw, stream=stream, chunks=chunks),
                    anthropic_async_call(wrapped, stream=stream, chunks=chunks),
                    budget,
                )
            finally:
                await raw.close()
                await wrapped.close()

        return run_async(pairs)
    raw_s = anthropic_sync_client(url, **raw_options)
    wrapped_s = wrap(anthropic_sync_client(url, **wrapped_options))
    try:
        return time_pairs_sync(
            anthropic_sync_call(raw_s, stream=stream, chunks=chunks),
            anthropic_sync_call(wrapped_s, stream=stream, chunks=chunks),
            budget,
        )
    finally:
        raw_s.close()
        wrapped_s.close()


def run_tokenguard(spec: Spec, server: ServerHandle, budget: Budget) -> PairStats:
    """Raw client vs the same client wrapped by a fresh Guard."""
    guard, otel = make_guard(spec.telemetry)
    try:
        if spec.vendor == "openai":
            times = _time_openai(spec, server, budget, guard)
        else:
            # Both clients keep the SDK's default `open_telemetry` option, as an application would.
            times = _time_anthropic(
                server,
                budget,
                is_async=spec.is_async,
                stream=spec.stream,
                chunks=spec.chunks,
                wrap=guard.wrap,
                raw_options={},
                wrapped_options={},
            )
        calls = budget.warmup + budget.rounds
        records = list(guard.records())
        _check(len(records) == calls, f"{spec.name}: {len(records)} ledger records for {calls} calls")
        _check(all(r.status == "ok" and r.cost_usd for r in records), f"{spec.name}: a call was not settled ok/priced")
        if otel is not None:
            spans = otel.span_count()
            _check(spans == calls, f"{spec.name}: {spans} spans for {calls} calls")
        _check(
            times.raw_items == times.wrapped_items,
            f"{spec.name}: raw call yielded {times.raw_items} items, wrapped {times.wrapped_items}",
        )
        del records
        return summarize(spec.name, "tokenguard", times)
    finally:
        if otel is not None:
            otel.shutdown()
        guard.close()
        server.reset()
        gc.collect()


def control_name(stream: bool) -> str:
    shape = f"stream{STREAM_CHUNKS}" if stream else "non-stream"
    return f"openai chat sync {shape} | A/A: raw vs raw"


def native_name(is_async: bool, stream: bool) -> str:
    shape = f"stream{STREAM_CHUNKS}" if stream else "non-stream"
    return f"anthropic messages {'async' if is_async else 'sync'} {shape} | anthropic SDK native spans"


def run_control(server: ServerHandle, budget: Budget, *, stream: bool) -> PairStats:
    """A/A: two identical raw OpenAI clients, timed exactly like a scenario. Shows the noise floor."""
    url = openai_base_url(server)
    a, b = openai_sync_client(url), openai_sync_client(url)
    try:
        times = time_pairs_sync(
            openai_sync_call(a.chat.completions.create, stream=stream),
            openai_sync_call(b.chat.completions.create, stream=stream),
            budget,
        )
    finally:
        a.close()
        b.close()
        server.reset()
    return summarize(control_name(stream), "control", times)


def run_anthropic_native(server: ServerHandle, budget: Budget, *, is_async: bool, stream: bool) -> PairStats:
    """Peer: the anthropic SDK's own call spans (``open_telemetry={"tracer_provider": ...}``)
    against the same SDK with them off (``open_telemetry=False``). Tracing only, no metrics."""
    otel = Otel.create()
    name = native_name(is_async, stream)
    try:
        times = _time_anthropic(
            server,
            budget,
            is_async=is_async,
            stream=stream,
            wrap=lambda client: client,
            raw_options={"open_telemetry": False},
            wrapped_options={"open_telemetry": {"tracer_provider": otel.tracer_provider}},
        )
        calls = budget.warmup + budget.rounds
        spans = otel.span_count()
        _check(spans == calls, f"{name}: {spans} spans for {calls} calls")
        return summarize(name, "peer", times)
    finally:
        otel.shutdown()
        server.reset()
        gc.collect()


def default_anthropic_name() -> str:
    return "anthropic messages sync non-stream | SDK native span, global no-op OTel"


def run_anthropic_default(server: ServerHandle, budget: Budget) -> PairStats:
    """Context for the Anthropic rows: what the SDK's own call-span machinery costs a client left at
    its default options when no OpenTelemetry SDK is configured (the governed client skips it)."""
    try:
        times = _time_anthropic(
            server,
            budget,
            is_async=False,
            stream=False,
            wrap=lambda client: client,
            raw_options={"open_telemetry": False},
            wrapped_options={},
        )
        return summarize(default_anthropic_name(), "context", times)
    finally:
        server.reset()
        gc.collect()
