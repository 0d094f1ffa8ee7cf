"""Spans and metrics for governed calls (steps 6 and 8): one GenAI client span per call, and the
GenAI client metrics plus a cost counter. All names come from :mod:`tokenguard.semconv`.

Privacy: prompt and completion text go on spans only with ``capture_content=True``; API keys,
headers and exception messages (which can quote a key) never do.
"""

from __future__ import annotations

import json
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import Span, SpanKind, Status, StatusCode

from . import semconv as sc
from .providers.base import CallRequest, CallResult

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import TracerProvider

    from .records import CallRecord
    from .routing import Plan

__all__ = ["Telemetry"]

Attributes = dict[str, Any]
_ZERO = Decimal(0)
MAX_PENDING_METRICS = 10_000


class Telemetry:
    """Creates the span of each call and records its metrics.

    Spans are ended when the call settles. Metric measurements are queued when the call settles
    and handed to the OpenTelemetry SDK when a metric reader collects (the ``tokenguard.cost``
    counter is observable, and its callback drains the queue first), or once
    ``MAX_PENDING_METRICS`` calls are waiting. A reader therefore sees every call settled before
    it collected, and the SDK's per-measurement work (tens of microseconds for a call's three
    histogram records) runs at collection time, usually on the exporter's thread, not in the call.

    ``None`` providers mean the global ones, looked up when the first call is made (so an app may
    configure OpenTelemetry after building its Guard). ``metric_tags`` lists the tag keys that become
    metric attributes: keep them low-cardinality (``team``, ``app``; not ``user``).
    """

    def __init__(
        self,
        *,
        tracer_provider: TracerProvider | None,
        meter_provider: MeterProvider | None,
        capture_content: bool,
        metric_tags: Sequence[str],
        enabled: bool = True,
    ) -> None:
        from . import __version__

        self.enabled = enabled
        self.capture_content = capture_content
        self.metric_tags = tuple(metric_tags)
        self._version = __version__
        self._tracer_provider = tracer_provider
        self._meter_provider = meter_provider
        self._tracer: trace.Tracer | None = None
        self._instruments: tuple[Any, Any] | None = None
        self._pending: deque[tuple[CallRecord, tuple[str, int | None] | None]] = deque()
        self._cost_totals: dict[tuple[tuple[str, Any], ...], Decimal] = {}
        self._cost_lock = threading.Lock()

    @property
    def tracer(self) -> trace.Tracer:
        if self._tracer is None:
            self._tracer = trace.get_tracer(
                "tokenguard", self._version, tracer_provider=self._tracer_provider, schema_url=sc.SCHEMA_URL
            )
        return self._tracer

    def _meters(self) -> tuple[Any, Any]:
        if self._instruments is None:
            meter = metrics.get_meter(
                "tokenguard", self._version, meter_provider=self._meter_provider, schema_url=sc.SCHEMA_URL
            )
            self._instruments = (
                meter.create_histogram(
                    sc.METRIC_TOKEN_USAGE,
                    unit="{token}",
                    description="Number of input and output tokens used.",
                    explicit_bucket_boundaries_advisory=list(sc.TOKEN_USAGE_BUCKETS),
                ),
                meter.create_histogram(
                    sc.METRIC_OPERATION_DURATION,
                    unit="s",
                    description="GenAI operation duration.",
                    explicit_bucket_boundaries_advisory=list(sc.DURATION_BUCKETS),
                ),
            )
            meter.create_observable_counter(
                sc.METRIC_COST,
                callbacks=[self._observe_cost],
                unit="USD",
                description="Cost of governed model calls.",
            )
        return self._instruments

    def _observe_cost(self, _options: CallbackOptions) -> list[Observation]:
        # A reader is collecting: first hand it every queued measurement, so that it sees every
        # call settled before the collection.
        self._drain()
        with self._cost_lock:
            totals = list(self._cost_totals.items())
        return [Observation(float(total), dict(key)) for key, total in totals]

    def start_span(self, req: CallRequest, server: tuple[str, int | None] | None) -> Span | None:
        """Start the call's CLIENT span (not made current here; the caller decides for how long)."""
        if not self.enabled:
            return None
        attributes: Attributes = {
            sc.OPERATION_NAME: req.operation,
            sc.PROVIDER_NAME: req.provider,
            sc.REQUEST_MODEL: req.model,
            sc.REQUEST_STREAM: req.stream,
        }
        if req.max_output_tokens:
            attributes[sc.REQUEST_MAX_TOKENS] = req.max_output_tokens
        body = req.body
        temperature = body.get("temperature")
        if isinstance(temperature, (int, float)) and not isinstance(temperature, bool):
            attributes[sc.REQUEST_TEMPERATURE] = temperature
        top_p = body.get("top_p")
        if isinstance(top_p, (int, float)) and not isinstance(top_p, bool):
            attributes[sc.REQUEST_TOP_P] = top_p
        if server is not None:
            attributes[sc.SERVER_ADDRESS] = server[0]
            if server[1] is not None:
                attributes[sc.SERVER_PORT] = server[1]
        return self.tracer.start_span(f"{req.operation} {req.model}", kind=SpanKind.CLIENT, attributes=attributes)

    def start_chain(self, plan: Plan, chain_id: str, server: tuple[str, int | None] | None) -> Span | None:
        """The parent span of a routed call's attempts (retries, fallbacks); made current by the
        caller while the attempts are sent, so that each attempt's CLIENT span is its child."""
        if not self.enabled:
            return None
        req = plan.req
        attributes: Attributes = {
            sc.OPERATION_NAME: req.operation,
            sc.PROVIDER_NAME: req.provider,
            sc.REQUEST_MODEL: req.model,
            sc.ROUTE_REQUESTED_MODEL: plan.requested,
            sc.CHAIN_ID: chain_id,
        }
        if plan.reason:
            attributes[sc.ROUTE_REASON] = plan.reason
        if server is not None:
            attributes[sc.SERVER_ADDRESS] = server[0]
        return self.tracer.start_span(f"chain {plan.requested}", kind=SpanKind.INTERNAL, attributes=attributes)

    @staticmethod
    def end_chain(span: Span, attempts: int, model: str, error: BaseException | None) -> None:
        if span.is_recording():
            span.set_attributes({sc.CHAIN_ATTEMPTS: attempts, sc.CHAIN_MODEL: model})
            if error is not None:
                span.set_attribute(sc.ERROR_TYPE, type(error).__name__)
                span.set_status(Status(StatusCode.ERROR, type(error).__name__))
        span.end()

    def end_span(
        self,
        span: Span,
        record: CallRecord,
        result: CallResult | None,
        *,
        time_to_first_chunk: float | None,
        input_messages: list[dict[str, Any]] | None,
        end_time_ns: int | None = None,
    ) -> None:
        """Put the call's outcome on its span and end it."""
        if span.is_recording():
            a: Attributes = {
                sc.USAGE_INPUT_TOKENS: record.input_tokens,
                sc.USAGE_OUTPUT_TOKENS: record.output_tokens,
                sc.STATUS: record.status,
                sc.RECORD_ID: record.id,
            }
            if record.usage_estimated:
                a[sc.USAGE_ESTIMATED] = True
            if record.cache_read_tokens:
                a[sc.USAGE_CACHE_READ_INPUT_TOKENS] = record.cache_read_tokens
            if record.cache_write_tokens:
                a[sc.USAGE_CACHE_CREATION_INPUT_TOKENS] = record.cache_write_tokens
            if record.reasoning_tokens:
                a[sc.USAGE_REASONING_OUTPUT_TOKENS] = record.reasoning_tokens
            if record.response_model:
                a[sc.RESPONSE_MODEL] = record.response_model
            if record.response_id:
                a[sc.RESPONSE_ID] = record.response_id
            if record.cost_usd is not None:
                a[sc.COST_USD] = float(record.cost_usd)
            if record.estimated_cost_usd is not None:
                a[sc.ESTIMATED_COST_USD] = float(record.estimated_cost_usd)
            if record.decisions:
                a[sc.DECISIONS] = list(record.decisions)
            if record.route_reason:
                a[sc.ROUTE_REASON] = record.route_reason
            if record.routed_from:
                a[sc.ROUTE_REQUESTED_MODEL] = record.routed_from
            if record.chain_id:
                a[sc.CHAIN_ID] = record.chain_id
                a[sc.CHAIN_ATTEMPT] = record.attempt
            for kind, n in record.findings.items():
                a[sc.SENSITIVE_PREFIX + kind] = n
            if record.nudges:
                a[sc.NUDGES] = list(record.nudges)
            if record.task_id:
                a[sc.TASK_ID] = record.task_id
                a[sc.TASK_NAME] = record.task_name or ""
            for key, value in record.tags.items():
                a[sc.TAG_PREFIX + key] = value
            if time_to_first_chunk is not None:
                a[sc.RESPONSE_TIME_TO_FIRST_CHUNK] = time_to_first_chunk
            if result is not None:
                if result.finish_reasons:
                    a[sc.RESPONSE_FINISH_REASONS] = list(result.finish_reasons)
                if result.service_tier and record.provider == "openai":
                    a[sc.OPENAI_RESPONSE_SERVICE_TIER] = result.service_tier
                if self.capture_content:
                    a[sc.OUTPUT_MESSAGES] = json.dumps(
                        [
                            {
                                "role": "assistant",
                                "parts": [{"type": "text", "content": "".join(result.output_text)}],
                                "finish_reason": result.finish_reasons[0] if result.finish_reasons else "",
                            }
                        ]
                    )
            if self.capture_content and input_messages is not None:
                a[sc.INPUT_MESSAGES] = json.dumps(input_messages)
            if record.error_type:
                a[sc.ERROR_TYPE] = record.error_type
                # The status description is the error's type only: vendor messages can quote a key.
                span.set_status(Status(StatusCode.ERROR, record.error_type))
            span.set_attributes(a)
        span.end(end_time=end_time_ns)

    def record_metrics(self, record: CallRecord, server: tuple[str, int | None] | None) -> None:
        """Queue one settled call's metrics (see the class docstring: they reach the SDK on collection)."""
        if not self.enabled:
            return
        if self._instruments is None:
            self._meters()
        pending = self._pending
        pending.append((record, server))
        if len(pending) >= MAX_PENDING_METRICS:
            self._drain()  # no reader has collected for a long while: do not hold more in memory

    def _drain(self) -> None:
        """Hand every queued call to the SDK's instruments (thread-safe; runs inside collections)."""
        token_usage, duration = self._meters()
        pending = self._pending
        while True:
            try:
                record, server = pending.popleft()
            except IndexError:
                return
            attrs: Attributes = {
                sc.OPERATION_NAME: record.operation,
                sc.PROVIDER_NAME: record.provider,
                sc.REQUEST_MODEL: record.request_model,
            }
            if record.response_model:
                attrs[sc.RESPONSE_MODEL] = record.response_model
            if server is not None:
                attrs[sc.SERVER_ADDRESS] = server[0]
                if server[1] is not None:
                    attrs[sc.SERVER_PORT] = server[1]
            tags: Mapping[str, str] = record.tags
            for key in self.metric_tags:
                value = tags.get(key)
                if value is not None:
                    attrs[sc.TAG_PREFIX + key] = value
            if record.error_type:
                duration.record(record.latency_s, {**attrs, sc.ERROR_TYPE: record.error_type})
            else:
                duration.record(record.latency_s, attrs)
            if record.status != "blocked" and (record.input_tokens or record.output_tokens or not record.error_type):
                token_usage.record(record.input_tokens, {**attrs, sc.TOKEN_TYPE: "input"})
                if record.operation != "embeddings":
                    token_usage.record(record.output_tokens, {**attrs, sc.TOKEN_TYPE: "output"})
            if record.cost_usd:
                attrs_key = tuple(attrs.items())
                with self._cost_lock:
                    self._cost_totals[attrs_key] = self._cost_totals.get(attrs_key, _ZERO) + record.cost_usd
