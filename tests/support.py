"""Plain helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import gc
import os
from dataclasses import dataclass
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokenguard as tg

__all__ = ["API_KEY", "Otel", "records", "require_service"]

API_KEY = "sk-test-SECRET-0123456789abcdef"


@dataclass
class Otel:
    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    spans: InMemorySpanExporter
    metrics: InMemoryMetricReader

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def metric_points(self, name: str) -> list[Any]:
        data = self.metrics.get_metrics_data()
        points: list[Any] = []
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        points.extend(metric.data.data_points)
        return points


def records(guard: tg.Guard) -> list[tg.CallRecord]:
    gc.collect()
    return list(guard.records())


def require_service(name: str) -> None:
    """Skip when a service is missing on a laptop; fail in CI (TOKENGUARD_REQUIRE_SERVICES=1)."""
    if os.environ.get("TOKENGUARD_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{name} is required in CI but is not available")
    pytest.skip(f"{name} is not available")
