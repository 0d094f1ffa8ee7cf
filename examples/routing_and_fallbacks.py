"""Routing, retries and fallbacks: every attempt is its own ledger record, admitted against the
budgets with the model that bills, and traced as a child of one "chain" span.

1. model="auto" and an allow-list choose the model, with the reason recorded;
2. a 429 is retried after exactly the wait its retry-after header asks for, then the call falls
   back to a cheaper model (a fallback of another provider is skipped);
3. a retry-after longer than the route's max_wait_s is not waited for: straight to the fallback;
4. when every attempt fails, the vendor's own error is raised, unchanged;
5. the SDK's own retries (max_retries) stay inside one attempt: one record;
6. a fallback that a budget on the fallback model refuses is refused before sending;
7. an Anthropic client falls back from an overloaded (529) model;
8. the trace of one chain: a parent span, one child span per attempt.

The clients are built with max_retries=0 (except in 5), so that each retry is tokenguard's own
and has its own record.

Offline: the real ``openai`` and ``anthropic`` SDKs talk to tokenguard's fake server, which is
told which calls to fail with FakeLLMServer.fail_next(...).

    python examples/routing_and_fallbacks.py
"""

from __future__ import annotations

import logging
import sys
import time
from decimal import Decimal

import openai
from anthropic import Anthropic
from openai import OpenAI
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import tokenguard as tg
from tokenguard.testing import FakeLLMServer, FakeUsage

MESSAGES = [{"role": "user", "content": "Summarize ticket #4711 for the customer."}]


def usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:.6f}"


def print_ledger(records: list[tg.CallRecord]) -> None:
    header = (
        f"   {'model':<18} {'asked for':<18} {'reason':<17} {'try':>3} {'chain':<9}{'status':<8} "
        f"{'error':<22} {'cost':>10}"
    )
    print(header)
    print("   " + "-" * (len(header) - 3))
    for r in records:
        print(
            f"   {r.request_model:<18} {r.routed_from or '':<18} {r.route_reason or '':<17} {r.attempt:>3} "
            f"{(r.chain_id or '')[:8]:<9}{r.status:<8} {r.error_type or '':<22} {usd(r.cost_usd):>10}"
        )


def main() -> None:
    # Each move to a fallback is logged as a warning on the "tokenguard" logger.
    logging.basicConfig(stream=sys.stdout, format="   [log] %(message)s")
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))

    with FakeLLMServer() as server:
        guard = tg.Guard(tracer_provider=tracer_provider)
        client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        seen = 0

        def new_records() -> list[tg.CallRecord]:
            nonlocal seen
            records = list(guard.records())
            fresh, seen = records[seen:], len(records)
            return fresh

        def ask(model: str) -> str:
            return client.chat.completions.create(model=model, messages=MESSAGES, max_tokens=50).model

        print("1. model='auto' and an allow-list")
        with tg.route(default="gpt-4o-mini", allow=["gpt-4o-mini", "gpt-4.1-mini"]):
            print(f"   model='auto'   -> {ask('auto')}")
            print(f"   model='gpt-4o' -> {ask('gpt-4o')}  (not allowed: sent to the default)")
        try:
            ask("auto")
        except tg.PolicyViolation as exc:
            print(f"   model='auto' with no route in force: refused before sending: {exc}")
        print_ledger(new_records())

        print("\n2. gpt-4o answers 429 three times (retry-after: 0.2 s): 2 retries, then a fallback")
        server.fail_next(429, times=3, retry_after=0.2, model="gpt-4o")
        started = time.perf_counter()
        with tg.route(retries=2, fallbacks=["claude-haiku-4-5", "gpt-4o-mini"]):
            model = ask("gpt-4o")
        waited = time.perf_counter() - started
        print(f"   answered by {model} after {waited:.1f} s: two waits of 0.2 s, as the vendor asked")
        print("   (claude-haiku-4-5 is skipped: an OpenAI client cannot send it)")
        print_ledger(new_records())

        print("\n3. a retry-after of 120 s is beyond the route's max_wait_s (30 s): no retry, no wait")
        server.fail_next(429, retry_after=120, model="gpt-4o")
        started = time.perf_counter()
        with tg.route(retries=2, fallbacks=["gpt-4o-mini"]):
            model = ask("gpt-4o")
        print(f"   answered by {model} after {time.perf_counter() - started:.2f} s")
        print_ledger(new_records())

        print("\n4. every attempt fails with a 500: the vendor's error is raised, unchanged")
        server.fail_next(500, times=4)
        try:
            with tg.route(retries=1, backoff_s=0.05, fallbacks=["gpt-4o-mini"]):
                ask("gpt-4o")
        except openai.InternalServerError as exc:
            print(f"   raised {type(exc).__name__} (status {exc.status_code}) after 4 attempts, each recorded:")
        print_ledger(new_records())

        print("\n5. the SDK retries inside one attempt (max_retries=2): two 500s, one record")
        sdk_retrying = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=2))
        server.fail_next(500, times=2, retry_after=0.01)
        before = server.request_count
        with tg.route(fallbacks=["gpt-4o-mini"]):
            sdk_retrying.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
        print(f"   {server.request_count - before} requests reached the server; the ledger has:")
        print_ledger(new_records())

        print("\n6. the budget of the model that bills: a fallback is admitted as itself")
        server.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))  # $0.15 on gpt-4o-mini
        budgeted = tg.Guard(
            telemetry=False, budgets=[tg.Budget("mini", limit_usd="0.10", scope={"model": "gpt-4o-mini"})]
        )
        budgeted_client = budgeted.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
        budgeted_client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=50)
        print(f"   gpt-4o-mini's budget is spent: {budgeted.budget_status()[0].state}")
        server.set_usage(None)
        server.fail_next(429, model="gpt-4o")
        try:
            with tg.route(fallbacks=["gpt-4o-mini"]):
                budgeted_client.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=50)
        except tg.BudgetExceeded as exc:
            print(f"   gpt-4o is rate-limited; its fallback is refused by budget {exc.budget!r} before sending")
        print_ledger(list(budgeted.records()))

        print("\n7. Anthropic: claude-sonnet-4-6 is overloaded (529), claude-haiku-4-5 answers")
        anthropic_client = guard.wrap(Anthropic(base_url=server.anthropic_base_url, api_key="offline", max_retries=0))
        server.fail_next(529, model="claude-sonnet-4-6")
        with tg.route(fallbacks=["gpt-4o-mini", "claude-haiku-4-5"]):  # one list for both providers
            reply = anthropic_client.messages.create(model="claude-sonnet-4-6", messages=MESSAGES, max_tokens=50)
        print(f"   answered by {reply.model}")
        print_ledger(new_records())

        print("\n8. the trace of the chain of step 2: one parent span, a child per attempt")
        finished = spans.get_finished_spans()
        chain_span = next(s for s in finished if s.name == "chain gpt-4o")
        print(
            f"   {chain_span.name} ({chain_span.kind.name}): "
            f"attempts={chain_span.attributes['tokenguard.chain.attempts']} "
            f"model={chain_span.attributes['tokenguard.chain.model']}"
        )
        for span in finished:
            if span.parent is not None and span.parent.span_id == chain_span.context.span_id:
                a = span.attributes
                print(
                    f"     └ {span.name:<17} attempt {a['tokenguard.chain.attempt']}  "
                    f"{a['tokenguard.status']:<5} {a.get('error.type', ''):<15} {a.get('tokenguard.route.reason', '')}"
                )


if __name__ == "__main__":
    main()
