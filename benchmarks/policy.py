"""The added latency of policy (step 3) on a governed call: routing, use cases, the sensitive-data scan.

    python benchmarks/policy.py [--quick] [--json out.json]

Each row alternates two calls against the loopback fake server (the pairing method of run.py) and
reports what the second adds to the first. The first row is the governed pipeline with no policy
against the raw OpenAI client. Every other row pairs that governed client (no policy) with a
client of a Guard that has the policy (telemetry off, memory store, no budgets), so it isolates
the cost of the policy itself from the rest of the pipeline and from the machine's drift. Use-case
rows run inside one long task, which binds a use case only in the Guard that has the catalog.
"""

from __future__ import annotations

import argparse
import json
from contextlib import nullcontext
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

# (row, the policy's Guard arguments, task to run in, model asked for, messages)
ROWS: list[tuple[str, dict[str, Any], str | None, str, list[Any]]] = [
    ("route: model='auto' -> default", {"routes": [tg.Route(default=OPENAI_MODEL)]}, None, "auto", OPENAI_MESSAGES),
    (
        "route: allow-list + downgrade map",
        {"routes": [tg.Route(allow=["gpt-4o*"], downgrade={"gpt-4o": OPENAI_MODEL})]},
        None,
        OPENAI_MODEL,
        OPENAI_MESSAGES,
    ),
    (
        "route: a fallback (the chain, no failure)",
        {"routes": [tg.Route(fallbacks=["gpt-4.1-mini"])]},
        None,
        OPENAI_MODEL,
        OPENAI_MESSAGES,
    ),
    ("use case low: scan + flag (clean prompt)", {"use_cases": CATALOG}, "summarize", OPENAI_MODEL, OPENAI_MESSAGES),
    ("use case medium: scan + redact (1 e-mail)", {"use_cases": CATALOG}, "reply", OPENAI_MODEL, EMAIL_MESSAGES),
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
        baseline = tg.Guard(telemetry=False)
        governed = baseline.wrap(openai_sync_client(base))

        def row(name: str, first: Any, second: Any) -> None:
            times = time_pairs_sync(first, second, plan)
            s = summarize(name, "policy", times)
            lo, hi = s.added_p50_ci_us
            print(
                f"{name:<56} {s.raw_p50_us:>9.1f} "
                f"{s.added_p50_us:>+9.1f} [{lo:>+7.1f}, {hi:>+7.1f}] {s.added_p99_us:>+10.1f}"
            )
            results.append(s.as_dict())

        def caller(client: Any, model: str, messages: list[Any]) -> Any:
            def call() -> int:
                client.chat.completions.create(model=model, messages=messages)
                return 1

            return call

        print(f"{'':<56} {'first p50':>9} {'added p50 [95% CI]':>26} {'added p99':>10}")
        row(
            "governed, no policy (vs raw client)",
            caller(raw, OPENAI_MODEL, OPENAI_MESSAGES),
            caller(governed, OPENAI_MODEL, OPENAI_MESSAGES),
        )
        for name, policy, task, model, messages in ROWS:
            guard = tg.Guard(telemetry=False, **policy)
            with_policy = guard.wrap(openai_sync_client(base))
            asked = OPENAI_MODEL if model == "auto" else model
            with tg.task(task, guard=guard) if task else nullcontext():
                row(name + " (vs no policy)", caller(governed, asked, messages), caller(with_policy, model, messages))
            guard.close()
    finally:
        server.close()
    print(f"\n{plan.rounds} pairs per row; microseconds of client wall time; telemetry off; memory store.")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
