"""The ledger's rows: one :class:`CallRecord` per governed model call, one :class:`TaskRecord` per task."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .context import Outcome
from .pricing import Usage

__all__ = ["CallRecord", "CallStatus", "TaskRecord"]

CallStatus = Literal["ok", "error", "blocked", "cancelled"]


class CallRecord(BaseModel):
    """One governed model call, as written to the ledger (frozen).

    Token counts follow the OpenTelemetry GenAI conventions: ``input_tokens`` includes cached reads
    and cache writes, ``output_tokens`` includes reasoning. ``cost_usd`` is ``None`` only when the
    model's price is unknown (never a silent 0); prompt and completion text are never stored.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    time: datetime = Field(description="UTC time the call started")
    latency_s: float
    provider: str = Field(description='"openai" or "anthropic" (gen_ai.provider.name)')
    operation: str = Field(description='gen_ai.operation.name: "chat" or "embeddings"')
    api: str = Field(description='"chat.completions", "responses", "embeddings" or "messages"')
    request_model: str
    response_model: str | None = None
    stream: bool = False
    response_id: str | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    reasoning_tokens: int = 0
    usage_estimated: bool = False
    cost_usd: Decimal | None = None
    estimated_cost_usd: Decimal | None = None
    tags: Mapping[str, str] = Field(default_factory=dict)
    task_id: str | None = None
    task_name: str | None = None
    status: CallStatus = "ok"
    error_type: str | None = None
    decisions: tuple[str, ...] = ()
    routed_from: str | None = Field(
        default=None, description="the model the caller asked for, when routing sent another (request_model)"
    )
    route_reason: str | None = Field(
        default=None, description='why routing chose request_model: "default", "downgrade:review", "fallback:429", ...'
    )
    chain_id: str | None = Field(
        default=None, description="shared by the attempts of one routed call (retries, fallbacks)"
    )
    attempt: int = Field(default=1, description="1 for a first attempt; 2, 3, ... for retries and fallbacks of a chain")
    findings: Mapping[str, int] = Field(
        default_factory=dict, description="sensitive-data detections in the input, by kind (never the matched text)"
    )
    nudges: tuple[str, ...] = Field(default=(), description='nudges given with this call: "smaller_model", ...')

    def usage(self) -> Usage:
        """The call's token counts, to price them again (e.g. on another model)."""
        return Usage(
            input_tokens=self.input_tokens,
            output_tokens=self.output_tokens,
            cache_read_tokens=self.cache_read_tokens,
            cache_write_tokens=self.cache_write_tokens,
            reasoning_tokens=self.reasoning_tokens,
        )

    @classmethod
    def _trusted(cls, values: dict[str, Any]) -> CallRecord:
        """Build a record from values tokenguard produced itself, with every field set and of the
        right type, skipping validation (on the per-call hot path). ``model_construct`` does the
        same work but resolves defaults per field, which costs more than validating."""
        record = cls.__new__(cls)
        object.__setattr__(record, "__dict__", values)
        object.__setattr__(record, "__pydantic_fields_set__", _CALL_FIELDS)
        object.__setattr__(record, "__pydantic_extra__", None)
        object.__setattr__(record, "__pydantic_private__", None)
        return record


_CALL_FIELDS = frozenset(CallRecord.model_fields)


class TaskRecord(BaseModel):
    """One finished task: its outcome, a later human review, and the calls and cost inside it."""

    model_config = ConfigDict(frozen=True)

    id: str
    name: str
    tags: Mapping[str, str] = Field(default_factory=dict)
    outcome: Outcome = "unknown"
    failure_reason: str | None = None
    started_at: datetime
    duration_s: float = 0.0
    accepted: bool | None = None
    edit_distance: float | None = None
    reviewer: str | None = None
    calls: int = 0
    cost_usd: Decimal = Decimal(0)
