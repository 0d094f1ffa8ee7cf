"""tokenguard's benchmark suite: per-call overhead against the raw SDK clients, peers, import time.

    python benchmarks/run.py            # full run (about 10 minutes on 2 CPUs)
    python benchmarks/run.py --quick    # ~10x fewer rounds (about 1 minute)
    python benchmarks/run.py --json results.json

Every overhead figure comes from one run in which the raw client and the instrumented client
alternate call by call against the loopback fake server (``tokenguard.testing.FakeLLMServer``);
the added cost is the per-pair difference. See docs/performance.md for the method and figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from _calls import STREAM_CHUNKS
from _fakeserver import ServerHandle, ServerMode, openai_base_url, start_server
from _harness import Budget, Failure, PairStats, Result
from _imports import ImportTiming, time_imports
from _scenarios import (
    TELEMETRY_LABELS,
    Spec,
    TelemetryMode,
    control_name,
    default_anthropic_name,
    native_name,
    run_anthropic_default,
    run_anthropic_native,
    run_control,
    run_tokenguard,
)

HERE = Path(__file__).resolve().parent

# Targets (docs/performance.md): added p50 per non-streaming call, per stream chunk, import time.
TARGET_CALL_US: dict[TelemetryMode, float] = {"sdk": 100.0, "off": 40.0}
TARGET_CHUNK_US = 2.0
TARGET_IMPORT_MS = 50.0

TELEMETRY_MODES: tuple[TelemetryMode, ...] = ("off", "noop", "sdk")


@dataclass(frozen=True)
class Plan:
    call: Budget
    stream: Budget
    import_runs: int


def plan(quick: bool, rounds: int | None, stream_rounds: int | None) -> Plan:
    call = Budget(rounds=200, warmup=30) if quick else Budget(rounds=2000, warmup=200)
    # A 50-chunk stream pair is noisier than a call pair (50+ socket reads, each a chance to be
    # preempted on a shared 2-CPU machine), hence 1000 pairs rather than 500 in a full run.
    stream = Budget(rounds=100, warmup=10) if quick else Budget(rounds=1000, warmup=100)
    if rounds:
        call = Budget(rounds=rounds, warmup=max(rounds // 10, 10))
    if stream_rounds:
        stream = Budget(rounds=stream_rounds, warmup=max(stream_rounds // 10, 5))
    return Plan(call, stream, import_runs=5 if quick else 10)


def tokenguard_specs() -> list[Spec]:
    specs: list[Spec] = []
    for vendor in ("openai", "anthropic"):
        for is_async in (False, True):
            for telemetry in TELEMETRY_MODES:
                specs.append(Spec(vendor, is_async, False, telemetry))
                specs.append(Spec(vendor, is_async, True, telemetry, chunks=1))
                specs.append(Spec(vendor, is_async, True, telemetry))
    # As most callers write it: no stream_options, so tokenguard asks for the usage chunk itself.
    specs.append(Spec("openai", False, True, "sdk", include_usage=False))
    return specs


# -- environment ---------------------------------------------------------------------------------


def _version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str | None:
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=HERE, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "src"], capture_output=True, text=True, cwd=HERE, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None
    return f"{sha}{' (src/ modified)' if dirty else ''}"


def _loadavg() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def environment(server_mode: str, pinned: bool) -> dict[str, Any]:
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 0
    return {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "cpus": usable,
        "cpu_model": _cpu_model(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "server": f"{server_mode}{', pinned' if pinned else ''}",
        "commit": _git_commit(),
        "loadavg_start": _loadavg(),
        "versions": {
            name: _version(name)
            for name in ("tokenguard", "openai", "anthropic", "httpx2", "pydantic", "opentelemetry-sdk", "genai-prices")
        },
    }


# -- running ---------------------------------------------------------------------------------------


def _progress(result: Result, seconds: float | None = None) -> None:
    if isinstance(result, PairStats):
        took = f"  ({seconds:4.1f} s)" if seconds is not None else ""
        print(f"  {result.scenario:76} added p50 {result.added_p50_us:+9.1f} us{took}", file=sys.stderr, flush=True)
    else:
        print(f"  {result.scenario:76} FAILED: {result.reason}", file=sys.stderr, flush=True)


def _attempt(name: str, group: str, run: Callable[[], PairStats]) -> Result:
    t0 = time.perf_counter()
    try:
        result: Result = run()
    except Exception as exc:
        result = Failure(name, group, f"{type(exc).__name__}: {exc}")
    _progress(result, time.perf_counter() - t0)
    return result


def run_openai_v2(server: ServerHandle, p: Plan, python: str) -> tuple[list[Result], dict[str, Any]]:
    """The openai-v2 instrumentation patches the openai module globally: measure it in a subprocess."""
    cmd = [
        python,
        str(HERE / "peer_openai_v2.py"),
        "--base-url",
        openai_base_url(server),
        "--rounds",
        str(p.call.rounds),
        "--warmup",
        str(p.call.warmup),
        "--stream-rounds",
        str(p.stream.rounds),
        "--stream-warmup",
        str(p.stream.warmup),
    ]
    name = "openai chat | openai-v2 instrumentation (spans)"
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=3600, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return [Failure(name, "peer", f"could not run {python}: {exc}")], {}
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        return [Failure(name, "peer", f"subprocess exited {proc.returncode}: {tail}")], {}
    data = json.loads(lines[-1])
    results: list[Result] = []
    for row in data["results"]:
        if "reason" in row:
            results.append(Failure(**row))
        else:
            row["added_p50_ci_us"] = tuple(row["added_p50_ci_us"])
            row["added_cpu_p50_ci_us"] = tuple(row["added_cpu_p50_ci_us"])
            results.append(PairStats(**row))
    for result in results:
        _progress(result)
    return results, data.get("versions", {})


# -- derived figures -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ChunkCost:
    label: str
    stream_added_us: float
    call_added_us: float
    per_chunk_us: float
    """The target's definition: (added p50 of the 50-chunk stream - added p50 of the call) / 50."""
    per_chunk_cpu_us: float
    stream1_added_us: float
    slope_us: float
    """(added p50 of the 50-chunk stream - added p50 of a 1-chunk stream) / 49: the marginal cost of
    a chunk, without the costs that every stream has once (its watcher, its end-of-stream settlement)."""

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def per_chunk(results: Iterable[Result]) -> list[ChunkCost]:
    """Per client and mode: (added p50 of the 50-chunk stream - added p50 of the non-streaming call) / 50,
    and the slope between the 1-chunk and the 50-chunk stream."""
    by_name = {r.scenario: r for r in results if isinstance(r, PairStats)}
    costs: list[ChunkCost] = []
    for spec in tokenguard_specs():
        if not spec.stream or not spec.include_usage or spec.chunks != STREAM_CHUNKS:
            continue
        call_spec = Spec(spec.vendor, spec.is_async, False, spec.telemetry)
        short_spec = Spec(spec.vendor, spec.is_async, True, spec.telemetry, chunks=1)
        stream, call, short = by_name.get(spec.name), by_name.get(call_spec.name), by_name.get(short_spec.name)
        if stream is None or call is None:
            continue
        short_added = short.added_p50_us if short is not None else math.nan
        costs.append(
            ChunkCost(
                label=call_spec.name.replace(" non-stream", ""),
                stream_added_us=stream.added_p50_us,
                call_added_us=call.added_p50_us,
                per_chunk_us=(stream.added_p50_us - call.added_p50_us) / STREAM_CHUNKS,
                per_chunk_cpu_us=(stream.added_cpu_p50_us - call.added_cpu_p50_us) / STREAM_CHUNKS,
                stream1_added_us=short_added,
                slope_us=(stream.added_p50_us - short_added) / (STREAM_CHUNKS - 1),
            )
        )
    return costs


def _call_target(result: PairStats) -> float | None:
    if result.group != "tokenguard" or " non-stream " not in result.scenario:
        return None
    for mode, target in TARGET_CALL_US.items():
        if result.scenario.endswith(TELEMETRY_LABELS[mode]):
            return target
    return None


def _verdict(value: float, target: float) -> str:
    return f"<={target:g} {'ok' if value <= target else 'MISS'}"


# -- printing --------------------------------------------------------------------------------------


def overhead_table(results: list[Result]) -> str:
    header = (
        f"{'scenario':76} {'raw p50':>9} {'wrapped p50':>11} {'added p50 [95% CI]':>26} "
        f"{'added p99':>10} {'ratio':>6} {'CPU added p50':>13}  target"
    )
    lines = [header, "-" * len(header)]
    group = None
    for r in results:
        if r.group != group:
            group = r.group
            if len(lines) > 2:
                lines.append("")
        if isinstance(r, Failure):
            lines.append(f"{r.scenario:76} NOT MEASURED: {r.reason}")
            continue
        lo, hi = r.added_p50_ci_us
        target = _call_target(r)
        verdict = _verdict(r.added_p50_us, target) if target is not None else ""
        lines.append(
            f"{r.scenario:76} {r.raw_p50_us:9.1f} {r.wrapped_p50_us:11.1f} "
            f"{r.added_p50_us:+9.1f} [{lo:+7.1f}, {hi:+7.1f}] {r.added_p99_us:+10.1f} {r.ratio_p50:6.3f} "
            f"{r.added_cpu_p50_us:+13.1f}  {verdict}"
        )
    return "\n".join(lines)


def chunk_table(costs: list[ChunkCost]) -> str:
    header = (
        f"{'client | telemetry':56} {'call added':>10} {'stream50 added':>14} {'per chunk':>9} {'CPU/chunk':>9} "
        f"{'stream1 added':>13} {'slope':>6}  target (per chunk)"
    )
    lines = [header, "-" * len(header)]
    for c in costs:
        lines.append(
            f"{c.label:56} {c.call_added_us:+10.1f} {c.stream_added_us:+14.1f} {c.per_chunk_us:+9.2f} "
            f"{c.per_chunk_cpu_us:+9.2f} {c.stream1_added_us:+13.1f} {c.slope_us:+6.2f}  "
            f"{_verdict(c.per_chunk_us, TARGET_CHUNK_US)}"
        )
    return "\n".join(lines)


def import_table(timings: list[ImportTiming]) -> str:
    header = f"{'import':40} {'median ms':>9} {'min':>7} {'max':>7}  {'heavy packages loaded':32} target"
    lines = [header, "-" * len(header)]
    for t in timings:
        if t.error:
            lines.append(f"{t.label:40} FAILED: {t.error}")
            continue
        target = _verdict(t.median_ms, TARGET_IMPORT_MS) if t.label == "import tokenguard" else ""
        heavy = ", ".join(t.heavy_modules) or "none"
        lines.append(f"{t.label:40} {t.median_ms:9.1f} {t.min_ms:7.1f} {t.max_ms:7.1f}  {heavy:32} {target}")
    return "\n".join(lines)


def report(
    env: dict[str, Any], p: Plan, results: list[Result], costs: list[ChunkCost], imports: list[ImportTiming]
) -> str:
    out = [
        "tokenguard benchmarks",
        f"  {env['date']}  python {env['python']} ({env['implementation']})  {env['cpus']} CPUs: {env['cpu_model']}",
        f"  commit {env['commit']}  fake server: {env['server']}  load average at start {env['loadavg_start']}",
        f"  rounds: {p.call.rounds} pairs per non-streaming scenario, {p.stream.rounds} per stream "
        f"(+{p.call.warmup}/{p.stream.warmup} warm-up); times in microseconds, client wall clock",
        "  added = per-pair difference (instrumented - raw); CPU = same on the calling thread's CPU time",
        "",
    ]
    if results:
        out += ["Per-call overhead", overhead_table(results), ""]
        v2 = env.get("openai_v2_versions") or {}
        if v2:
            found = ", ".join(f"{name} {version or '(not installed)'}" for name, version in v2.items())
            out += [f"openai-v2 peer ran on {env.get('openai_v2_python')}: {found}", ""]
    if costs:
        out += [
            f"Per-chunk overhead: per chunk = (stream{STREAM_CHUNKS} added - call added) / {STREAM_CHUNKS}; "
            f"slope = (stream{STREAM_CHUNKS} added - stream1 added) / {STREAM_CHUNKS - 1}",
            chunk_table(costs),
            "",
        ]
    if imports:
        out += ["Import time (fresh interpreter each run)", import_table(imports), ""]
    out.append(
        f"Targets: added p50 <= {TARGET_CALL_US['sdk']:g} us per non-streaming call with tracing+metrics, "
        f"<= {TARGET_CALL_US['off']:g} us with telemetry off; <= {TARGET_CHUNK_US:g} us per stream chunk; "
        f"import tokenguard <= {TARGET_IMPORT_MS:g} ms."
    )
    return "\n".join(out)


# -- main ------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="about 10x fewer rounds")
    parser.add_argument("--json", type=Path, metavar="PATH", help="also write all results as JSON")
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="run the fake server in a child process (default; steadier, see docs) or in a thread",
    )
    parser.add_argument("--pin", action="store_true", help="pin the server and the benchmark to different CPUs")
    parser.add_argument(
        "--only",
        action="append",
        choices=("overhead", "peers", "imports"),
        help="run only these parts (repeatable; default: all)",
    )
    parser.add_argument("--rounds", type=int, help="pairs per non-streaming scenario")
    parser.add_argument("--stream-rounds", type=int, help="pairs per stream scenario")
    parser.add_argument(
        "--openai-v2-python",
        default=sys.executable,
        metavar="PYTHON",
        help="interpreter for the openai-v2 peer (default: this one)",
    )
    args = parser.parse_args(argv)
    parts = set(args.only or ("overhead", "peers", "imports"))
    p = plan(args.quick, args.rounds, args.stream_rounds)
    mode: ServerMode = args.server

    imports: list[ImportTiming] = []
    if "imports" in parts:
        print("import times...", file=sys.stderr, flush=True)
        imports = time_imports(p.import_runs)

    results: list[Result] = []
    peer_versions: dict[str, Any] = {}
    server = start_server(mode, pin=args.pin)
    pinned = bool(getattr(server, "pinned", False))
    env = environment(mode, pinned)
    try:
        if "overhead" in parts:
            print("control (A/A)...", file=sys.stderr, flush=True)
            for stream in (False, True):
                budget = p.stream if stream else p.call
                control = partial(run_control, server, budget, stream=stream)
                results.append(_attempt(control_name(stream), "control", control))
            run = partial(run_anthropic_default, server, p.call)
            results.append(_attempt(default_anthropic_name(), "context", run))
            print("tokenguard...", file=sys.stderr, flush=True)
            for spec in tokenguard_specs():
                budget = p.stream if spec.stream and spec.chunks > 1 else p.call
                results.append(_attempt(spec.name, "tokenguard", partial(run_tokenguard, spec, server, budget)))
        if "peers" in parts:
            print("peers...", file=sys.stderr, flush=True)
            for is_async in (False, True):
                for stream in (False, True):
                    budget = p.stream if stream else p.call
                    run = partial(run_anthropic_native, server, budget, is_async=is_async, stream=stream)
                    results.append(_attempt(native_name(is_async, stream), "peer", run))
            v2_results, peer_versions = run_openai_v2(server, p, args.openai_v2_python)
            results.extend(v2_results)
    finally:
        server.close()
    env["loadavg_end"] = _loadavg()
    env["openai_v2_python"] = args.openai_v2_python
    env["openai_v2_versions"] = peer_versions

    costs = per_chunk(results)
    print(report(env, p, results, costs, imports))
    if args.json:
        document = {
            "environment": env,
            "plan": {"call": p.call.__dict__, "stream": p.stream.__dict__, "import_runs": p.import_runs},
            "targets": {
                "call_added_p50_us": TARGET_CALL_US,
                "chunk_added_p50_us": TARGET_CHUNK_US,
                "import_ms": TARGET_IMPORT_MS,
            },
            "overhead": [r.as_dict() for r in results],
            "per_chunk": [c.as_dict() for c in costs],
            "imports": [t.as_dict() for t in imports],
        }
        args.json.write_text(json.dumps(document, indent=2) + "\n")
        print(f"\nwrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
