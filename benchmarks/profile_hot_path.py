"""Where does tokenguard's per-call time go? cProfile over a few thousand wrapped calls.

    python benchmarks/profile_hot_path.py [--vendor openai|anthropic] [--telemetry off|noop|sdk]
                                          [--stream] [--calls N] [--top K] [--dump PATH]

Prints, per call (microseconds):

* tokenguard's own functions by self time and by cumulative time;
* the functions of other packages (OpenTelemetry, pydantic, uuid...) that tokenguard code calls
  directly, with the cumulative time of those calls: the cost tokenguard owns but does not run
  itself. The governed operation (the SDK's ``request()``, reading the next stream item, closing
  the response) is left out.

cProfile adds a roughly constant cost per Python function call, so small functions look dearer
than they are: use the figures to rank, and the paired benchmark (run.py) for absolute overhead.
``--dump`` writes the raw profile for snakeviz / pstats.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from _calls import (
    anthropic_sync_call,
    anthropic_sync_client,
    openai_sync_call,
    openai_sync_client,
)
from _fakeserver import anthropic_base_url, openai_base_url, start_server
from _harness import SyncCall
from _scenarios import TelemetryMode, make_guard

import tokenguard

TOKENGUARD_DIR = str(Path(tokenguard.__file__).resolve().parent)
TESTING_DIR = str(Path(TOKENGUARD_DIR) / "testing")

Func = tuple[str, int, str]


def is_tokenguard(func: Func) -> bool:
    filename = func[0]
    return filename.startswith(TOKENGUARD_DIR) and not filename.startswith(TESTING_DIR)


def is_vendor_work(func: Func) -> bool:
    """The governed operation itself, which tokenguard code calls but does not own: the SDK's
    ``request()`` that the governed ``request()`` wraps, the next item of the SDK's stream
    (``next()`` / ``__anext__``), and closing the HTTP response."""
    filename, _, name = func
    if filename.endswith("_base_client.py") and name in ("request", "_request"):
        return True
    if filename == "~" and name == "<built-in method builtins.next>":
        return True
    return name in ("__anext__", "close", "aclose") and ("httpx" in filename or "_streaming.py" in filename)


def label(func: Func) -> str:
    filename, line, name = func
    if filename == "~":
        return name
    for marker in ("site-packages/", "/src/", "/lib/python"):
        if marker in filename:
            filename = filename.split(marker, 1)[1]
            break
    return f"{filename}:{line} {name}"


def profile(call: SyncCall, calls: int) -> tuple[pstats.Stats, float]:
    t0 = time.perf_counter()
    for _ in range(calls):
        call()
    unprofiled_us = (time.perf_counter() - t0) / calls * 1e6
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(calls):
        call()
    profiler.disable()
    return pstats.Stats(profiler), unprofiled_us


def report(stats: pstats.Stats, calls: int, top: int) -> None:
    table: dict[Func, Any] = stats.stats  # type: ignore[attr-defined]
    own: list[tuple[float, float, float, Func]] = []
    external: dict[Func, list[float]] = defaultdict(lambda: [0.0, 0.0])
    for func, (_cc, nc, tt, ct, callers) in table.items():
        if is_tokenguard(func):
            own.append((tt / calls * 1e6, ct / calls * 1e6, nc / calls, func))
            continue
        if is_vendor_work(func):
            continue
        for caller, (_ccc, cnc, _ctt, cct) in callers.items():
            if is_tokenguard(caller):
                external[func][0] += cct / calls * 1e6
                external[func][1] += cnc / calls

    own_total = sum(row[0] for row in own)
    ext_total = sum(v[0] for v in external.values())
    print(f"tokenguard self time {own_total:.1f} us/call + directly called code {ext_total:.1f} us/call (profiled)\n")

    print(f"{'self us':>8} {'cum us':>8} {'calls':>6}  tokenguard function (by self time)")
    for tt, ct, nc, func in sorted(own, reverse=True)[:top]:
        print(f"{tt:8.2f} {ct:8.2f} {nc:6.1f}  {label(func)}")

    print(f"\n{'cum us':>8} {'calls':>6}  tokenguard function (by cumulative time)")
    for _tt, ct, nc, func in sorted(own, key=lambda row: -row[1])[:top]:
        print(f"{ct:8.2f} {nc:6.1f}  {label(func)}")

    print(f"\n{'cum us':>8} {'calls':>6}  code of other packages called directly by tokenguard")
    for func, (ct, nc) in sorted(external.items(), key=lambda item: -item[1][0])[:top]:
        print(f"{ct:8.2f} {nc:6.1f}  {label(func)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vendor", choices=("openai", "anthropic"), default="openai")
    parser.add_argument("--telemetry", choices=("off", "noop", "sdk"), default="sdk")
    parser.add_argument("--stream", action="store_true", help="a 50-chunk stream instead of a non-streaming call")
    parser.add_argument("--calls", type=int, help="profiled calls (default 3000, or 500 streams)")
    parser.add_argument("--top", type=int, default=20)
    parser.add_argument("--dump", type=Path, help="write the pstats file here")
    args = parser.parse_args(argv)
    calls: int = args.calls or (500 if args.stream else 3000)
    mode: TelemetryMode = args.telemetry

    server = start_server("process")
    guard, otel = make_guard(mode)
    try:
        if args.vendor == "openai":
            client = guard.wrap(openai_sync_client(openai_base_url(server)))
            call = openai_sync_call(client.chat.completions.create, stream=args.stream)
        else:
            aclient = guard.wrap(anthropic_sync_client(anthropic_base_url(server)))
            call = anthropic_sync_call(aclient, stream=args.stream)
        for _ in range(max(calls // 10, 50)):
            call()
        stats, unprofiled_us = profile(call, calls)
        shape = "50-chunk stream" if args.stream else "non-streaming call"
        print(f"{args.vendor} {shape}, telemetry={mode}, {calls} calls; {unprofiled_us:.0f} us/call unprofiled\n")
        report(stats, calls, args.top)
        if args.dump:
            stats.dump_stats(str(args.dump))
    finally:
        if otel is not None:
            otel.shutdown()
        guard.close()
        server.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
