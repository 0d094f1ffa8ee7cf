"""The added latency of budget admission and settlement on a governed call, per store.

    python benchmarks/budgets.py [--quick] [--uri memory:// --uri sqlite:////tmp/tg.db --uri redis://...]

For each store URI, a raw OpenAI client and a wrapped one (telemetry off) alternate call by call
against the loopback fake server (the method of run.py), with 0, 1 and 5 matching budgets. The
"0 budgets" row is the pipeline without admission; the difference to the others is the cost of
reserving in the store before the call and committing after it. Without ``--uri`` it measures
``memory://`` and a SQLite file in a temporary directory.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _calls import openai_sync_call, openai_sync_client
from _fakeserver import openai_base_url, start_server
from _harness import Budget, summarize, time_pairs_sync

import tokenguard as tg


def budgets(n: int) -> list[tg.Budget]:
    # Large limits: the calls are admitted; every budget matches every call.
    return [tg.Budget(f"b{i}", limit_usd=1_000_000, period=("month", "day", "total")[i % 3]) for i in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--uri", action="append", help="a store URI (repeatable)")
    parser.add_argument("--quick", action="store_true", help="10x fewer rounds")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tg-bench-"))
    uris = args.uri or ["memory://", f"sqlite:///{tmp / 'bench.db'}"]
    plan = Budget(rounds=150 if args.quick else 1500, warmup=20 if args.quick else 200)
    server = start_server("process")
    try:
        base = openai_base_url(server)
        raw = openai_sync_client(base)
        print(f"{'store':<40} {'budgets':>7} {'raw p50':>9} {'added p50 [95% CI]':>26} {'added p99':>10}")
        for uri in uris:
            for n in (0, 1, 5):
                guard = tg.Guard(store=uri, telemetry=False, budgets=budgets(n))
                wrapped = guard.wrap(openai_sync_client(base))
                times = time_pairs_sync(
                    openai_sync_call(raw.chat.completions.create, stream=False),
                    openai_sync_call(wrapped.chat.completions.create, stream=False),
                    plan,
                )
                s = summarize(f"{uri} / {n} budgets", "budgets", times)
                lo, hi = s.added_p50_ci_us
                shown = uri if len(uri) <= 40 else "..." + uri[-37:]
                print(
                    f"{shown:<40} {n:>7} {s.raw_p50_us:>9.1f} "
                    f"{s.added_p50_us:>+9.1f} [{lo:>+7.1f}, {hi:>+7.1f}] {s.added_p99_us:>+10.1f}"
                )
                guard.close()
    finally:
        server.close()
    print(f"\n{plan.rounds} pairs per row; microseconds of client wall time; telemetry off.")


if __name__ == "__main__":
    main()
