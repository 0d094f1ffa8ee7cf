"""The added latency of policy (step 3) on a governed call: routing, use cases, the sensitive-data scan.

    python benchmarks/policy.py [--quick] [--json out.json]

A raw OpenAI client and a wrapped one (telemetry off, memory store, no budgets) alternate call by call
against the loopback fake server (the method of run.py). Each row runs its calls inside the policy
it names, set once around the loop (a route, or one long task bound to a use case). The first row
is the pipeline with no policy in force; the others add to it.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import Any

from _calls import OPENAI_MESSAGES, OPENAI_MODEL, openai_sync_client
from _fakeserver import openai_base_url, start_server
from _harness import Budget, summarize, time_pairs_sync

import tokenguard as tg

EMAIL_MESSAGES = [
    {"role": "system", "content": "You are a concise assistant."},
    {"role": "user", "content": "Draft a reply to jane.doe@example.com about the refund of order 1234."},
]
CATALOG = [tg.UseCase("summarize", risk="low"), tg.UseCase("reply", risk="medium")]


@contextmanager
def in_task(guard: tg.Guard, name: str) -> Iterator[None]:
    with tg.task(name, guard=guard):
        yield


def scenarios(guard: tg.Guard) -> list[tuple[str, Callable[[], AbstractContextManager[Any]], str, list[Any]]]:
    """(name, context to run the calls in, model asked for, messages)."""
    return [
        ("no policy", nullcontext, OPENAI_MODEL, OPENAI_MESSAGES),
        ("route: model='auto' -> default", lambda: tg.route(default=OPENAI_MODEL), "auto", OPENAI_MESSAGES),
        (
            "route: allow-list + downgrade map",
            lambda: tg.route(allow=["gpt-4o*"], downgrade={"gpt-4o": OPENAI_MODEL}),
            OPENAI_MODEL,
            OPENAI_MESSAGES,
        ),
        (
            "route: a fallback (the chain, no failure)",
            lambda: tg.route(fallbacks=["gpt-4.1-mini"]),
            OPENAI_MODEL,
            OPENAI_MESSAGES,
        ),
        (
            "use case low: scan + flag (clean prompt)",
            lambda: in_task(guard, "summarize"),
            OPENAI_MODEL,
            OPENAI_MESSAGES,
        ),
        ("use case medium: scan + redact (1 e-mail)", lambda: in_task(guard, "reply"), OPENAI_MODEL, EMAIL_MESSAGES),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="10x fewer rounds")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args()
    plan = Budget(rounds=150 if args.quick else 1500, warmup=20 if args.quick else 200)
    server = start_server("process")
    results = []
    try:
        base = openai_base_url(server)
        raw = openai_sync_client(base)
        print(f"{'policy':<44} {'raw p50':>9} {'added p50 [95% CI]':>26} {'added p99':>10}")
        guard = tg.Guard(telemetry=False, use_cases=CATALOG)
        wrapped = guard.wrap(openai_sync_client(base))
        for name, context, model, messages in scenarios(guard):
            raw_model = OPENAI_MODEL if model == "auto" else model

            def raw_call(m: list[Any] = messages, rm: str = raw_model) -> int:
                raw.chat.completions.create(model=rm, messages=m)
                return 1

            def wrapped_call(m: list[Any] = messages, wm: str = model) -> int:
                wrapped.chat.completions.create(model=wm, messages=m)
                return 1

            with context():
                times = time_pairs_sync(raw_call, wrapped_call, plan)
            s = summarize(name, "policy", times)
            lo, hi = s.added_p50_ci_us
            print(
                f"{name:<44} {s.raw_p50_us:>9.1f} "
                f"{s.added_p50_us:>+9.1f} [{lo:>+7.1f}, {hi:>+7.1f}] {s.added_p99_us:>+10.1f}"
            )
            results.append(s.as_dict())
        guard.close()
    finally:
        server.close()
    print(f"\n{plan.rounds} pairs per row; microseconds of client wall time; telemetry off; memory store.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
