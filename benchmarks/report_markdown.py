"""Turn a ``run.py --json`` file into the Markdown tables of docs/performance.md.

python benchmarks/run.py --json bench.json
python benchmarks/report_markdown.py bench.json > tables.md
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

GROUP_TITLES = {
    "control": "Controls",
    "context": "Context",
    "tokenguard": "tokenguard: wrapped vs raw client",
    "peer": "Peers: instrumented vs raw client",
}


def _target(row: dict[str, Any], targets: dict[str, Any]) -> str:
    scenario = row["scenario"]
    if row["group"] != "tokenguard" or " non-stream " not in scenario:
        return ""
    for mode, label in (("sdk", "OTel SDK traces+metrics"), ("off", "telemetry off")):
        if scenario.endswith(label):
            limit = targets["call_added_p50_us"][mode]
            return f"≤ {limit:g}: {'met' if row['added_p50_us'] <= limit else '**missed**'}"
    return ""


def overhead(doc: dict[str, Any]) -> str:
    targets = doc["targets"]
    out: list[str] = []
    group = None
    for row in doc["overhead"]:
        if row["group"] != group:
            group = row["group"]
            out += [
                "",
                f"**{GROUP_TITLES.get(group, group)}**",
                "",
                f"| call | instrumentation | raw p50 | {'wrapped' if group == 'tokenguard' else 'instrumented'} p50 "
                "| added p50 [95% CI] | added p99 | ratio | CPU added p50 | target |",
                "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
            ]
        call, _, instrumentation = row["scenario"].partition(" | ")
        if "reason" in row:
            out.append(f"| {call} | {instrumentation} | not measured: {row['reason']} | | | | | | |")
            continue
        lo, hi = row["added_p50_ci_us"]
        out.append(
            f"| {call} | {instrumentation} | {row['raw_p50_us']:.0f} | {row['wrapped_p50_us']:.0f} "
            f"| {row['added_p50_us']:+.1f} [{lo:+.1f}, {hi:+.1f}] | {row['added_p99_us']:+.0f} "
            f"| {row['ratio_p50']:.3f} | {row['added_cpu_p50_us']:+.1f} | {_target(row, targets)} |"
        )
    return "\n".join(out).strip() + "\n"


def per_chunk(doc: dict[str, Any]) -> str:
    limit = doc["targets"]["chunk_added_p50_us"]
    out = [
        "| client | telemetry | call added | stream50 added | per chunk | CPU per chunk | stream1 added | slope "
        "| target (per chunk) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for c in doc["per_chunk"]:
        client, _, telemetry = c["label"].partition(" | ")
        verdict = "met" if c["per_chunk_us"] <= limit else "**missed**"
        out.append(
            f"| {client} | {telemetry} | {c['call_added_us']:+.1f} | {c['stream_added_us']:+.1f} "
            f"| {c['per_chunk_us']:+.2f} | {c['per_chunk_cpu_us']:+.2f} | {c['stream1_added_us']:+.1f} "
            f"| {c['slope_us']:+.2f} "
            f"| ≤ {limit:g}: {verdict} |"
        )
    return "\n".join(out) + "\n"


def imports(doc: dict[str, Any]) -> str:
    limit = doc["targets"]["import_ms"]
    out = [
        "| import | median ms | min | max | heavy packages it loads | target |",
        "| --- | ---: | ---: | ---: | --- | --- |",
    ]
    for t in doc["imports"]:
        if t["error"]:
            out.append(f"| `{t['label']}` | failed: {t['error']} | | | | |")
            continue
        target = ""
        if t["label"] == "import tokenguard":
            target = f"≤ {limit:g}: {'met' if t['median_ms'] <= limit else '**missed**'}"
        heavy = ", ".join(t["heavy_modules"]) or "none"
        out.append(
            f"| `{t['label']}` | {t['median_ms']:.1f} | {t['min_ms']:.1f} | {t['max_ms']:.1f} | {heavy} | {target} |"
        )
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("json_file", type=Path)
    args = parser.parse_args(argv)
    doc = json.loads(args.json_file.read_text())
    env = doc["environment"]
    print(f"<!-- {env['date']}, commit {env['commit']}, server {env['server']} -->\n")
    print(overhead(doc))
    print(per_chunk(doc))
    print(imports(doc))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
