"""Throughput of the sensitive-data scanner (``tokenguard.sensitive``), on this machine, offline.

    python benchmarks/scan.py                  # the table in docs/concepts/sensitive-data.md
    python benchmarks/scan.py --quick          # a smaller corpus and fewer repeats
    python benchmarks/scan.py --json out.json  # the figures as JSON too

The corpus is generated here, deterministically (a fixed seed, no downloads): documents of English
prose, source code, log lines and JSON request bodies (chat messages, tool calls), 1-30 KB each,
with some secrets and personal data planted in them (about one per 2 KB). It prints:

* MB/s of the built-in scanner over the whole corpus, one ``scan()`` per document (MB = 10^6 bytes
  of UTF-8), and of each built-in detector alone (``Scanner([detector])``);
* for typical prompt sizes (1 KB, 10 KB, 100 KB of the same mix) the median microseconds per
  ``scan()`` over repeated runs, and for a 100-byte prompt with nothing sensitive in it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from tokenguard.sensitive import Scanner, builtin_detectors

SEED = 20240607
CLEAN_PROMPT = "Please summarise the quarterly revenue forecast for the team and list the open support tickets, now."

# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------

_WORDS = (
    "the of and to in is that for it as was with be by on not he this are or his from at which but have an "
    "they you were her she there been one all we their has would when if so no will more can said who "
    "about out up them what some could time into only other then its like also two than first new "
    "customer account order payment refund support ticket issue request model budget team cost report "
    "invoice shipping address delivery password reset login session error timeout server database "
    "release build version update deploy cluster region latency token prompt response message user "
    "assistant policy review approval quarter revenue forecast meeting schedule contract vendor"
)
WORDS = _WORDS.split()
NAMES = ("alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "oscar")
DOMAINS = ("example.com", "example.org", "mail.example.net", "corp.example.co.uk", "test.example.io")


def _sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(6, 22))]
    r = rng.random()
    if r < 0.15:
        words.insert(rng.randrange(len(words)), str(rng.randint(1, 2030)))
    elif r < 0.22:
        words.insert(rng.randrange(len(words)), f"{rng.randint(1, 99)}.{rng.randint(0, 9)}%")
    elif r < 0.27:
        words.insert(rng.randrange(len(words)), f"section {rng.randint(1, 9)}.{rng.randint(1, 9)}.{rng.randint(1, 9)}")
    elif r < 0.30:
        words.insert(rng.randrange(len(words)), f"${rng.randint(1, 99999)}.{rng.randint(0, 99):02d}")
    return " ".join(words).capitalize() + rng.choice((".", ".", ".", "?", "!", ":"))


def prose(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        para = " ".join(_sentence(rng) for _ in range(rng.randint(2, 7)))
        out.append(para)
        n += len(para) + 2
    return "\n\n".join(out)


def code(rng: random.Random, size: int) -> str:
    templates = (
        "def {a}_{b}(self, {c}: int = {n}) -> dict[str, Any]:\n    return {{'{a}': self.{b}[{c}], 'count': {n}}}\n",
        '    {a}_{b} = await client.{c}.create(model="gpt-4o-mini", max_tokens={n}, temperature=0.{d})\n',
        "import {a}\nfrom {b}.{c} import {a}_{b}\n",
        '    if {a} is None or len({b}) > {n}:\n        raise ValueError(f"bad {a}: {{{b}!r}}")\n',
        "@property\ndef {a}(self) -> str:\n    return self._{a}  # see https://docs.example.com/{b}/{c}\n",
        "const {a}{B} = require('{b}-{c}@{d}.{n}.0');\nconsole.log(`${{{a}}}: ${{{n}}}`);\n",
        "    for i in range({n}):\n        {a}[i] = {b}[i] * {d}.{n} + {c}.get('{a}', 0)\n",
        '    token_count = {n}  # max_tokens for the {a} model\n    version = "{d}.{n}.{d}"\n',
        "std::vector<int> {a}_{b}({n}); // {c} at 0x{h}\n",
        "SELECT {a}, {b} FROM {c} WHERE id = {n} AND created_at > '2024-0{d}-1{d}';\n",
    )
    out: list[str] = []
    n = 0
    while n < size:
        words = [rng.choice(WORDS) for _ in range(3)]
        line = rng.choice(templates).format(
            a=words[0],
            b=words[1],
            c=words[2],
            B=words[1].capitalize(),
            n=rng.randint(0, 5000),
            d=rng.randint(1, 9),
            h="".join(rng.choice("0123456789abcdef") for _ in range(8)),
        )
        out.append(line)
        n += len(line)
    return "".join(out)


def logs(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        ts = (
            f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:"
            f"{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d}.{rng.randint(0, 999):03d}Z"
        )
        kind = rng.random()
        if kind < 0.4:
            line = (
                f"{ts} INFO  [worker-{rng.randint(1, 16)}] {rng.choice(('GET', 'POST', 'PUT'))} "
                f"/api/v{rng.randint(1, 3)}/{rng.choice(WORDS)}/{rng.randint(1, 99999)} "
                f"{rng.choice((200, 201, 404, 500))} "
                f"{rng.randint(1, 900)}.{rng.randint(0, 9)}ms client=10.{rng.randint(0, 255)}.{rng.randint(0, 255)}."
                f'{rng.randint(1, 254)} ua="Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 '
                f'Safari/537.36"'
            )
        elif kind < 0.7:
            line = (
                f"{ts} DEBUG {rng.choice(WORDS)}.{rng.choice(WORDS)} took {rng.randint(1, 5000)} ms "
                f"(retries={rng.randint(0, 3)}, batch={rng.randint(1, 512)}, build 4.{rng.randint(0, 20)}.0.1)"
            )
        elif kind < 0.9:
            line = (
                f"{ts} WARN  {rng.choice(WORDS)} {rng.choice(WORDS)} over budget: "
                f"${rng.randint(0, 999)}.{rng.randint(0, 99):02d} of ${rng.randint(1000, 5000)} "
                f"request_id=req_{''.join(rng.choices(string.ascii_letters + string.digits, k=24))}"
            )
        else:
            line = (
                f'{ts} ERROR Traceback (most recent call last): File "/srv/app/{rng.choice(WORDS)}.py", '
                f"line {rng.randint(1, 900)}, in {rng.choice(WORDS)}: TimeoutError: {rng.randint(10, 60)}s"
            )
        out.append(line)
        n += len(line) + 1
    return "\n".join(out)


def json_bodies(rng: random.Random, size: int) -> str:
    out: list[str] = []
    n = 0
    while n < size:
        messages = [{"role": "system", "content": prose(rng, rng.randint(100, 400))}]
        for _ in range(rng.randint(1, 4)):
            messages.append({"role": "user", "content": prose(rng, rng.randint(50, 600))})
            messages.append(
                {
                    "role": "assistant",
                    "content": None,
                    "tool_calls": [
                        {
                            "id": "call_" + "".join(rng.choices(string.ascii_letters + string.digits, k=24)),
                            "type": "function",
                            "function": {
                                "name": rng.choice(WORDS),
                                "arguments": json.dumps({"order_id": rng.randint(1, 10**6), "limit": 20}),
                            },
                        }
                    ],
                }
            )
        body = json.dumps(
            {"model": "gpt-4o-mini", "messages": messages, "max_tokens": rng.randint(16, 4096), "temperature": 0.2},
            indent=rng.choice((None, 2)),
        )
        out.append(body)
        n += len(body) + 1
    return "\n".join(out)


def _rand(rng: random.Random, alphabet: str, k: int) -> str:
    return "".join(rng.choices(alphabet, k=k))


B62 = string.ascii_letters + string.digits


def planted(rng: random.Random) -> str:
    """One piece of sensitive data in a realistic phrasing (all values are fake)."""
    name = rng.choice(NAMES)
    choices: tuple[Callable[[], str], ...] = (
        lambda: f"please email {name}.{rng.randint(1, 99)}@{rng.choice(DOMAINS)} about it",
        lambda: f"call me at +1 415-555-{rng.randint(100, 199):04d} after 5pm",
        lambda: f"my card is 4111 1111 1111 1111 exp {rng.randint(1, 12):02d}/{rng.randint(25, 30)}",
        lambda: "wire it to GB82 WEST 1234 5698 7654 32 please",
        lambda: f"SSN 078-05-{rng.randint(1120, 1199)} on file",
        lambda: f'OPENAI_API_KEY="sk-proj-{_rand(rng, B62, 48)}"',
        lambda: f"aws_access_key_id = AKIA{_rand(rng, string.ascii_uppercase + string.digits, 16)}",
        lambda: f"Authorization: Bearer {_rand(rng, B62, 40)}",
        lambda: (
            "token: eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
            f"eyJzdWIiOiI{_rand(rng, B62, 20)}In0.{_rand(rng, B62 + '-_', 43)}"
        ),
        lambda: (
            f"-----BEGIN PRIVATE KEY-----\n{_rand(rng, B62 + '+/', 64)}\n{_rand(rng, B62 + '+/', 40)}==\n"
            "-----END PRIVATE KEY-----"
        ),
        lambda: f"ghp_{_rand(rng, B62, 36)}",
    )
    return rng.choice(choices)()


def corpus(total: int, seed: int = SEED) -> list[str]:
    """Documents adding up to about ``total`` characters: prose 35%, code 25%, logs 20%, JSON 20%."""
    return [doc for _, doc in labelled_corpus(total, seed)]


def labelled_corpus(total: int, seed: int = SEED) -> list[tuple[str, str]]:
    """``corpus()`` with the category of each document: prose, code, logs or json."""
    rng = random.Random(seed)
    makers = ((prose, 0.35), (code, 0.25), (logs, 0.20), (json_bodies, 0.20))
    names = {prose: "prose", code: "code", logs: "logs", json_bodies: "json"}
    docs: list[tuple[str, str]] = []
    n = 0
    while n < total:
        maker = rng.choices([m for m, _ in makers], weights=[w for _, w in makers])[0]
        doc = maker(rng, rng.randint(1_000, 30_000))
        # Plant about one finding per 2 KB, at line or sentence boundaries.
        pieces = doc.split("\n")
        for _ in range(max(1, len(doc) // 2000)):
            i = rng.randrange(len(pieces))
            if maker is json_bodies:
                pieces[i] = pieces[i].replace('"content": "', f'"content": "{json.dumps(planted(rng))[1:-1]} ', 1)
            else:
                pieces[i] = f"{pieces[i]} {planted(rng)}"
        doc = "\n".join(pieces)
        docs.append((names[maker], doc))
        n += len(doc)
    return docs


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


def throughput(scanner: Scanner, docs: list[str], total_bytes: int, repeats: int) -> tuple[float, int]:
    """Best MB/s over ``repeats`` passes, and the number of findings of one pass."""
    best = float("inf")
    found = 0
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = sum(len(scanner.scan(d)) for d in docs)
        best = min(best, time.perf_counter() - t0)
    return total_bytes / best / 1e6, found


def per_scan_us(scanner: Scanner, text: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        scanner.scan(text)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="1 MB corpus and fewer repeats")
    parser.add_argument("--json", metavar="PATH", help="also write the figures to this JSON file")
    parser.add_argument("--size-mb", type=float, default=None, help="corpus size (default 4, 1 with --quick)")
    args = parser.parse_args(argv)

    size = int((args.size_mb or (1.0 if args.quick else 4.0)) * 1_000_000)
    repeats = 2 if args.quick else 5
    labelled = labelled_corpus(size)
    docs = [doc for _, doc in labelled]
    total_bytes = sum(len(d.encode()) for d in docs)
    print(f"corpus: {len(docs)} documents, {total_bytes / 1e6:.2f} MB (prose, code, logs, JSON; seed {SEED})")
    print()

    results: dict[str, object] = {"corpus_bytes": total_bytes, "documents": len(docs)}
    full = Scanner()
    mbps, found = throughput(full, docs, total_bytes, repeats)
    rows = [("all built-in detectors", mbps, found)]
    for det in builtin_detectors():
        d_mbps, d_found = throughput(Scanner([det]), docs, total_bytes, repeats)
        rows.append((f"  {det.name} ({', '.join(det.kinds)})", d_mbps, d_found))
    width = max(len(r[0]) for r in rows)
    print(f"{'detector':<{width}}  {'MB/s':>8}  {'findings':>8}")
    for label, value, n in rows:
        print(f"{label:<{width}}  {value:>8.1f}  {n:>8}")
    results["throughput_mb_s"] = {label.strip(): round(value, 1) for label, value, _ in rows}
    results["findings"] = {label.strip(): n for label, _, n in rows}

    print()
    print(f"{'documents':<10}  {'MB':>6}  {'MB/s':>8}  {'findings':>8}   (all built-in detectors)")
    by_category: dict[str, float] = {}
    for category in ("prose", "code", "logs", "json"):
        part = [doc for c, doc in labelled if c == category]
        part_bytes = sum(len(d.encode()) for d in part)
        c_mbps, c_found = throughput(full, part, part_bytes, repeats)
        by_category[category] = round(c_mbps, 1)
        print(f"{category:<10}  {part_bytes / 1e6:>6.2f}  {c_mbps:>8.1f}  {c_found:>8}")
    results["throughput_by_category_mb_s"] = by_category

    print()
    joined = "\n".join(docs)
    sizes = (1_000, 10_000, 100_000)
    print(f"{'prompt size':<12}  {'µs per scan (median)':>20}  {'MB/s':>8}")
    per: dict[str, float] = {}
    for n in sizes:
        # Several slices of the mix, each scanned repeatedly: the median of all runs.
        rng = random.Random(n)
        times = []
        for _ in range(5):
            start = rng.randrange(0, max(1, len(joined) - n))
            text = joined[start : start + n]
            times.append(per_scan_us(full, text, (200 if n <= 10_000 else 20) // (4 if args.quick else 1)))
        us = statistics.median(times)
        per[f"{n // 1000} KB"] = round(us, 1)
        print(f"{n // 1000:>3} KB{'':<6}  {us:>20.1f}  {n / us:>8.1f}")
    # A short prompt with nothing sensitive in it (the Guard scans every prompt of a governed call):
    # what a scan costs when the prefilter finds none of the detectors' triggers. Timed in batches,
    # each scan being too short for a timer of its own.
    batch = 2000 // (4 if args.quick else 1)
    runs = []
    for _ in range(7):
        t0 = time.perf_counter()
        for _ in range(batch):
            full.scan(CLEAN_PROMPT)
        runs.append((time.perf_counter() - t0) / batch * 1e6)
    us = statistics.median(runs)
    per["100 B clean"] = round(us, 2)
    print(f"{'100 B clean':<12}  {us:>20.2f}  {len(CLEAN_PROMPT) / us:>8.1f}")
    results["us_per_scan"] = per

    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
