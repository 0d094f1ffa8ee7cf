"""Export tokenguard's spans and metrics over OTLP/HTTP, and look at what arrives.

The OpenTelemetry setup is the standard one; nothing is specific to tokenguard. To stay offline,
the script runs a tiny OTLP/HTTP receiver on 127.0.0.1 itself (http.server), in place of an
OpenTelemetry Collector, and decodes what it receives with the protobuf classes of
``opentelemetry-proto``. Point the exporters at your collector (usually http://localhost:4318)
and drop the receiver to use it for real.

Needs ``opentelemetry-exporter-otlp-proto-http``. Offline: the real ``openai`` and ``anthropic``
SDKs talk to tokenguard's fake server.

    python examples/otlp_export.py
"""

from __future__ import annotations

import gzip
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from anthropic import Anthropic
from openai import OpenAI
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

import tokenguard as tg
from tokenguard.testing import FakeLLMServer


class OTLPReceiver(ThreadingHTTPServer):
    """Accepts OTLP/HTTP protobuf exports on /v1/traces and /v1/metrics and keeps the bodies."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.bodies: dict[str, list[bytes]] = defaultdict(list)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    server: OTLPReceiver

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.headers.get("content-encoding") == "gzip":
            body = gzip.decompress(body)
        self.server.bodies[self.path].append(body)
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # quiet


def value_of(v: AnyValue) -> object:
    kind = v.WhichOneof("value")
    if kind == "array_value":
        return [value_of(item) for item in v.array_value.values]
    return getattr(v, kind) if kind else None


def main() -> None:
    receiver = OTLPReceiver()
    threading.Thread(target=receiver.serve_forever, daemon=True).start()

    # Standard OpenTelemetry SDK setup: OTLP/HTTP exporters, a batch span processor, a metric reader.
    resource = Resource.create({"service.name": "helpdesk"})
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{receiver.endpoint}/v1/traces")))
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[
            PeriodicExportingMetricReader(
                OTLPMetricExporter(endpoint=f"{receiver.endpoint}/v1/metrics"), export_interval_millis=60_000
            )
        ],
    )

    with FakeLLMServer() as server:
        guard = tg.Guard(tracer_provider=tracer_provider, meter_provider=meter_provider)
        oai = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="sk-never-exported", max_retries=0))
        claude = guard.wrap(Anthropic(base_url=server.anthropic_base_url, api_key="sk-never-exported", max_retries=0))
        messages = [{"role": "user", "content": "Summarize: the printer is on fire"}]
        with tg.tags(team="support", app="helpdesk", user="u-42"), tg.task("summarize_ticket", guard=guard) as task:
            oai.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=30)
            with claude.messages.stream(model="claude-haiku-4-5", max_tokens=30, messages=messages) as stream:
                stream.until_done()
            task.succeed()

    # Shutting the providers down exports what is pending: the batched spans and one collection of
    # the metrics (cumulative temporality: totals since start).
    tracer_provider.shutdown()
    meter_provider.shutdown()
    receiver.shutdown()
    receiver.server_close()

    print("Spans received on /v1/traces:")
    shown = (
        "gen_ai.provider.name",
        "gen_ai.request.model",
        "gen_ai.request.stream",
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "gen_ai.response.finish_reasons",
        "tokenguard.cost_usd",
        "tokenguard.task.name",
        "tokenguard.tag.team",
        "tokenguard.tag.user",
    )
    spans = 0
    for body in receiver.bodies["/v1/traces"]:
        request = ExportTraceServiceRequest.FromString(body)
        for resource_spans in request.resource_spans:
            service = {kv.key: value_of(kv.value) for kv in resource_spans.resource.attributes}["service.name"]
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    spans += 1
                    attrs = {kv.key: value_of(kv.value) for kv in span.attributes}
                    duration_ms = (span.end_time_unix_nano - span.start_time_unix_nano) / 1e6
                    print(
                        f"\n  {span.name!r} (service {service}, scope {scope_spans.scope.name}, {duration_ms:.1f} ms)"
                    )
                    for key in shown:
                        if key in attrs:
                            print(f"    {key} = {attrs[key]!r}")
                    assert "sk-never-exported" not in str(attrs)

    print("\nMetrics received on /v1/metrics:")
    for body in receiver.bodies["/v1/metrics"]:
        request = ExportMetricsServiceRequest.FromString(body)
        for resource_metrics in request.resource_metrics:
            for scope_metrics in resource_metrics.scope_metrics:
                for metric in scope_metrics.metrics:
                    kind = metric.WhichOneof("data")
                    points = getattr(metric, kind).data_points
                    print(f"\n  {metric.name} [{metric.unit}] ({kind}, {len(points)} data points)")
                    for point in points:
                        attrs = {kv.key: value_of(kv.value) for kv in point.attributes}
                        label = ", ".join(
                            f"{short}={attrs[key]}"
                            for key, short in (
                                ("gen_ai.provider.name", "provider"),
                                ("gen_ai.request.model", "model"),
                                ("gen_ai.token.type", "type"),
                                ("tokenguard.tag.team", "team"),
                                ("tokenguard.tag.app", "app"),
                            )
                            if key in attrs
                        )
                        value = (
                            f"count={point.count} sum={point.sum:g}"
                            if kind == "histogram"
                            else f"value={point.as_double:g}"
                        )
                        print(f"    {label}: {value}")
    print("\n(tokenguard.tag.user is on the spans but not in the metrics: metric_tags defaults to team and app)")
    assert spans == 2, spans


if __name__ == "__main__":
    main()
