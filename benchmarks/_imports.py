"""Import time, each measured in a fresh interpreter: ``perf_counter`` around the import statement.

Bytecode caching is allowed in the children (``PYTHONDONTWRITEBYTECODE`` is dropped) and one untimed
run precedes the timed ones, so an editable install's ``.pyc`` files exist and the files are in the
OS cache, as they are for an installed package. The child also reports which heavy packages the
import pulled in: ``import tokenguard`` must load none of openai, anthropic, pydantic,
opentelemetry or genai_prices (they load on first use).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from dataclasses import asdict, dataclass
from typing import Any

HEAVY = ("openai", "anthropic", "pydantic", "opentelemetry", "genai_prices", "httpx", "httpx2")

_CHILD = """
import json, sys, time
t0 = time.perf_counter()
{statement}
elapsed = time.perf_counter() - t0
heavy = sorted({{m.split(".")[0] for m in sys.modules}} & set({heavy!r}))
print(json.dumps({{"seconds": elapsed, "heavy": heavy}}))
"""

STATEMENTS: list[tuple[str, str]] = [
    ("import tokenguard", "import tokenguard"),
    ("tokenguard.Guard (loads the pipeline)", "import tokenguard\ntokenguard.Guard"),
    ("import openai", "import openai"),
    ("import anthropic", "import anthropic"),
    ("import genai_prices", "import genai_prices"),
    ("import opentelemetry.sdk.trace", "import opentelemetry.sdk.trace"),
]


@dataclass(frozen=True)
class ImportTiming:
    label: str
    runs: int
    median_ms: float
    min_ms: float
    max_ms: float
    heavy_modules: list[str]
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def time_import(label: str, statement: str, runs: int, python: str = sys.executable) -> ImportTiming:
    code = _CHILD.format(statement=statement, heavy=HEAVY)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    seconds: list[float] = []
    heavy: list[str] = []
    for i in range(runs + 1):
        proc = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=120, check=False, env=env)
        if proc.returncode != 0:
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return ImportTiming(label, 0, float("nan"), float("nan"), float("nan"), [], error=last)
        data = json.loads(proc.stdout.strip().splitlines()[-1])
        heavy = data["heavy"]
        if i:  # the first run writes bytecode and warms the file cache
            seconds.append(data["seconds"])
    ms = [s * 1000 for s in seconds]
    return ImportTiming(label, runs, statistics.median(ms), min(ms), max(ms), heavy)


def time_imports(runs: int) -> list[ImportTiming]:
    return [time_import(label, statement, runs) for label, statement in STATEMENTS]
