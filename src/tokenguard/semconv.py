"""Every OpenTelemetry name tokenguard emits, in one place.

Names follow the OpenTelemetry GenAI semantic conventions v1.41.0. The spec's ``main`` branch is
still renaming some of them (for instance ``cache_creation`` -> ``cache_write``); moving to a later
version is a change to this file only.
"""

from __future__ import annotations

SEMCONV_VERSION = "1.41.0"
SCHEMA_URL = f"https://opentelemetry.io/schemas/{SEMCONV_VERSION}"

# Span and metric attributes (GenAI conventions)
OPERATION_NAME = "gen_ai.operation.name"
PROVIDER_NAME = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
REQUEST_MAX_TOKENS = "gen_ai.request.max_tokens"
REQUEST_STREAM = "gen_ai.request.stream"
REQUEST_TEMPERATURE = "gen_ai.request.temperature"
REQUEST_TOP_P = "gen_ai.request.top_p"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
RESPONSE_FINISH_REASONS = "gen_ai.response.finish_reasons"
RESPONSE_TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
USAGE_INPUT_TOKENS = "gen_ai.usage.input_tokens"
USAGE_OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
USAGE_CACHE_READ_INPUT_TOKENS = "gen_ai.usage.cache_read.input_tokens"
USAGE_CACHE_CREATION_INPUT_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
USAGE_REASONING_OUTPUT_TOKENS = "gen_ai.usage.reasoning.output_tokens"
TOKEN_TYPE = "gen_ai.token.type"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
OPENAI_RESPONSE_SERVICE_TIER = "openai.response.service_tier"
SERVER_ADDRESS = "server.address"
SERVER_PORT = "server.port"
ERROR_TYPE = "error.type"

# Metrics (GenAI conventions), with their units and advisory bucket boundaries
METRIC_TOKEN_USAGE = "gen_ai.client.token.usage"
METRIC_OPERATION_DURATION = "gen_ai.client.operation.duration"
TOKEN_USAGE_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)

# tokenguard's own attributes and metric
COST_USD = "tokenguard.cost_usd"
ESTIMATED_COST_USD = "tokenguard.estimated_cost_usd"
USAGE_ESTIMATED = "tokenguard.usage_estimated"
STATUS = "tokenguard.status"
DECISIONS = "tokenguard.decisions"
RECORD_ID = "tokenguard.record_id"
TASK_ID = "tokenguard.task.id"
TASK_NAME = "tokenguard.task.name"
TAG_PREFIX = "tokenguard.tag."
METRIC_COST = "tokenguard.cost"
ROUTE_REQUESTED_MODEL = "tokenguard.route.requested_model"
ROUTE_REASON = "tokenguard.route.reason"
CHAIN_ID = "tokenguard.chain.id"
CHAIN_ATTEMPT = "tokenguard.chain.attempt"
CHAIN_ATTEMPTS = "tokenguard.chain.attempts"
CHAIN_MODEL = "tokenguard.chain.model"
SENSITIVE_PREFIX = "tokenguard.sensitive."
NUDGES = "tokenguard.nudges"
EVENT_NUDGE = "tokenguard.nudge"
NUDGE_KIND = "tokenguard.nudge.kind"
NUDGE_MESSAGE = "tokenguard.nudge.message"
