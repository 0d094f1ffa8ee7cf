"""Peer: ``opentelemetry-instrumentation-openai-v2`` (tracing only) against the raw OpenAI client.

``OpenAIInstrumentor().instrument()`` patches ``Completions.create`` for every client in the
process, so ``run.py`` runs this in a subprocess. Raw and instrumented calls still interleave in
pairs: the raw call goes through the original, unpatched ``create`` (which the wrapt wrapper keeps
as ``__wrapped__``) on a second client, the instrumented call through the patched method.

Prints one JSON document on stdout. If the instrumentation cannot be imported or fails, the
results say so (``reason``) instead of carrying numbers.

    python benchmarks/peer_openai_v2.py --base-url http://127.0.0.1:PORT/v1 [--rounds N] [--stream-rounds N]
"""

from __future__ import annotations

import argparse
import functools
import importlib.metadata
import json
import sys
import traceback
from collections.abc import Callable
from typing import Any

from _calls import STREAM_CHUNKS, openai_async_call, openai_async_client, openai_sync_call, openai_sync_client
from _harness import Budget, Failure, PairTimes, Result, run_async, summarize, time_pairs_async, time_pairs_sync

GROUP = "peer"
PACKAGES = ("openai", "opentelemetry-instrumentation-openai-v2", "opentelemetry-util-genai", "httpx", "httpx2")


def scenario_name(is_async: bool, stream: bool) -> str:
    shape = f"stream{STREAM_CHUNKS}" if stream else "non-stream"
    return f"openai chat {'async' if is_async else 'sync'} {shape} | openai-v2 instrumentation (spans)"


def versions() -> dict[str, str | None]:
    found: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            found[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            found[name] = None
    return found


def _unwrapped(method: Any) -> Callable[..., Any]:
    original = getattr(method, "__wrapped__", None)
    if original is None:
        raise RuntimeError("Completions.create is not wrapped after OpenAIInstrumentor().instrument()")
    return original  # type: ignore[no-any-return]


def measure(base_url: str, budgets: dict[bool, Budget]) -> list[Result]:
    try:
        from openai.resources.chat.completions import AsyncCompletions, Completions
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    except Exception as exc:
        reason = f"cannot import the instrumentation: {type(exc).__name__}: {exc}"
        return [Failure(scenario_name(a, s), GROUP, reason) for a in (False, True) for s in (False, True)]

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    instrumentor = OpenAIInstrumentor()  # type: ignore[no-untyped-call]
    try:
        instrumentor.instrument(tracer_provider=tracer_provider)
        sync_original = _unwrapped(Completions.__dict__["create"])
        async_original = _unwrapped(AsyncCompletions.__dict__["create"])
    except Exception as exc:
        reason = f"instrument() failed: {type(exc).__name__}: {exc}"
        return [Failure(scenario_name(a, s), GROUP, reason) for a in (False, True) for s in (False, True)]

    results: list[Result] = []
    try:
        for is_async in (False, True):
            for stream in (False, True):
                name = scenario_name(is_async, stream)
                budget = budgets[stream]
                spans.clear()
                try:
                    if is_async:

                        async def pairs(stream: bool = stream, budget: Budget = budget) -> PairTimes:
                            raw = openai_async_client(base_url)
                            inst = openai_async_client(base_url)
                            try:
                                return await time_pairs_async(
                                    openai_async_call(
                                        functools.partial(async_original, raw.chat.completions), stream=stream
                                    ),
                                    openai_async_call(inst.chat.completions.create, stream=stream),
                                    budget,
                                )
                            finally:
                                await raw.close()
                                await inst.close()

                        times = run_async(pairs)
                    else:
                        raw_s, inst_s = openai_sync_client(base_url), openai_sync_client(base_url)
                        try:
                            times = time_pairs_sync(
                                openai_sync_call(
                                    functools.partial(sync_original, raw_s.chat.completions), stream=stream
                                ),
                                openai_sync_call(inst_s.chat.completions.create, stream=stream),
                                budget,
                            )
                        finally:
                            raw_s.close()
                            inst_s.close()
                    calls = budget.warmup + budget.rounds
                    finished = len(spans.get_finished_spans())
                    if finished != calls:
                        results.append(Failure(name, GROUP, f"{finished} spans for {calls} instrumented calls"))
                    else:
                        results.append(summarize(name, GROUP, times))
                except Exception as exc:
                    detail = traceback.format_exception_only(type(exc), exc)[-1].strip()
                    results.append(Failure(name, GROUP, f"the instrumented call failed: {detail}"))
    finally:
        instrumentor.uninstrument()
        tracer_provider.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", required=True, help="the fake server's OpenAI base URL (ending in /v1)")
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=200)
    parser.add_argument("--stream-rounds", type=int, default=500)
    parser.add_argument("--stream-warmup", type=int, default=50)
    args = parser.parse_args(argv)
    budgets = {False: Budget(args.rounds, args.warmup), True: Budget(args.stream_rounds, args.stream_warmup)}
    results = measure(args.base_url, budgets)
    json.dump({"versions": versions(), "results": [r.as_dict() for r in results]}, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
