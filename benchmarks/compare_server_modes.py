"""Which placement of the fake server gives the more stable numbers? (The experiment behind run.py's default.)

Runs the same few scenarios with the server in a thread of the benchmark process, in a separate
process, and in a separate process pinned to its own CPU (this process pinned to the other), the
modes taking turns so that a change of background load hits them all alike. For each mode it
prints, per scenario, the median over repeats of the added p50 and how much it moved between
repeats (max - min), plus the width of the 95% confidence interval of a single repeat.

    python benchmarks/compare_server_modes.py [--repeats 5] [--quick] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections.abc import Callable
from pathlib import Path

from _fakeserver import ServerHandle, ServerMode, start_server
from _harness import Budget, PairStats
from _scenarios import Spec, run_control, run_tokenguard

MODES: list[tuple[str, ServerMode, bool]] = [
    ("thread", "thread", False),
    ("process", "process", False),
    ("process, pinned", "process", True),
]


def scenarios(quick: bool) -> list[tuple[str, Callable[[ServerHandle], PairStats]]]:
    scale = 4 if quick else 1
    ns = Budget(rounds=1000 // scale, warmup=100 // scale)
    st = Budget(rounds=200 // scale, warmup=20 // scale)
    return [
        ("A/A non-stream", lambda s: run_control(s, ns, stream=False)),
        ("tokenguard non-stream, telemetry off", lambda s: run_tokenguard(Spec("openai", False, False, "off"), s, ns)),
        ("tokenguard stream50, telemetry off", lambda s: run_tokenguard(Spec("openai", False, True, "off"), s, st)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", type=Path, help="also write the raw results here")
    args = parser.parse_args(argv)

    runs = scenarios(args.quick)
    results: dict[str, dict[str, list[PairStats]]] = {label: {name: [] for name, _ in runs} for label, _, _ in MODES}
    for repeat in range(args.repeats):
        for label, mode, pin in MODES:
            server = start_server(mode, pin=pin)
            try:
                for name, run in runs:
                    stats = run(server)
                    results[label][name].append(stats)
                    print(
                        f"[{repeat + 1}/{args.repeats}] {label:16} {name:38} raw p50 {stats.raw_p50_us:8.1f} "
                        f"added p50 {stats.added_p50_us:+8.1f} (cpu {stats.added_cpu_p50_us:+7.1f})",
                        flush=True,
                    )
            finally:
                server.close()

    print()
    header = (
        f"{'mode':16} {'scenario':38} {'raw p50':>9} {'raw moved':>9} {'added p50':>9} {'moved':>8} "
        f"{'CI width':>9} {'cpu added':>9} {'moved':>7}"
    )
    print(header)
    print("-" * len(header))
    summary: list[dict[str, object]] = []
    for label, _, _ in MODES:
        for name, _ in runs:
            rows = results[label][name]
            raw = [r.raw_p50_us for r in rows]
            added = [r.added_p50_us for r in rows]
            cpu = [r.added_cpu_p50_us for r in rows]
            width = statistics.median(r.added_p50_ci_us[1] - r.added_p50_ci_us[0] for r in rows)
            row = {
                "mode": label,
                "scenario": name,
                "raw_p50_us": statistics.median(raw),
                "raw_p50_moved_us": max(raw) - min(raw),
                "added_p50_us": statistics.median(added),
                "added_p50_moved_us": max(added) - min(added),
                "added_p50_ci_width_us": width,
                "added_cpu_p50_us": statistics.median(cpu),
                "added_cpu_p50_moved_us": max(cpu) - min(cpu),
            }
            summary.append(row)
            print(
                f"{label:16} {name:38} {row['raw_p50_us']:9.1f} {row['raw_p50_moved_us']:9.1f} "
                f"{row['added_p50_us']:+9.1f} {row['added_p50_moved_us']:8.1f} {width:9.1f} "
                f"{row['added_cpu_p50_us']:+9.1f} {row['added_cpu_p50_moved_us']:7.1f}"
            )
    if args.json:
        raw_rows = {
            label: {name: [r.as_dict() for r in rows] for name, rows in by.items()} for label, by in results.items()
        }
        args.json.write_text(json.dumps({"summary": summary, "runs": raw_rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
