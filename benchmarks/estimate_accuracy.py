# ruff: noqa: RUF001  (the corpus holds look-alike characters on purpose)
"""How close tokenguard's pre-call input estimate is to the real input token count.

    python benchmarks/estimate_accuracy.py              # the tables in docs/concepts/estimates.md
    python benchmarks/estimate_accuracy.py --json out.json
    python benchmarks/estimate_accuracy.py --timing     # also the per-call cost of an estimate

The corpus is generated here, deterministically (fixed seeds, no downloads): English prose, code,
JSON, Chinese, Japanese, Korean and other scripts, emoji, numbers, markup, adversarial strings;
short and long. Each text is sent as the one user message of a request, and three estimates are
compared with the real count:

* OpenAI (``gpt-4o``: o200k_base; ``gpt-4``: cl100k_base): the real count of a chat request is the
  exact tiktoken count of its texts plus OpenAI's documented framing (3 tokens per message, 1 for the
  role, 3 priming the reply). tiktoken *is* OpenAI's tokenizer, so this is the vendor's count.
* Anthropic: Claude's tokenizer is not public and this machine cannot call ``count_tokens``. The
  reference is ``ctok`` (an unofficial offline reconstruction of Claude's counts, validated by its
  author against recorded ``count_tokens`` responses, with zero under-counts reported on millions of
  texts), for the Claude 3 - Opus 4.6 tokenizer, the Opus 4.7 one and the 4.8+ one. ``pip install
  ctok`` to include it (it declares Python >= 3.12; it is pure Python, so on 3.10/3.11 ``pip install
  --ignore-requires-python ctok`` works; the table in the docs was made with it). Without it the
  Anthropic rows are skipped.

Ratios are estimate / real: a bound must never be below 1.0, a point estimate should be near 1.0.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import string
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

# --------------------------------------------------------------------------------------------
# The corpus
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Item:
    category: str
    name: str
    text: str


_ENGLISH = [
    "The quarterly report shows that support costs rose by a modest amount while ticket volume fell.",
    "Please summarize the customer's complaint in two sentences and suggest a polite reply.",
    "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
    "When the budget reaches eighty percent of its limit, the team lead receives an alert by email.",
    "Our onboarding guide explains how to request access, where to find the runbooks, and whom to ask.",
    "The committee could not agree on a date, so the meeting was postponed until further notice.",
    "A well-written prompt states the task, the audience, the format of the answer and its length.",
    "She opened the window; the smell of rain and cut grass filled the small, quiet kitchen.",
    "Don't forget: the invoice is due on the first business day of the month, not the last.",
    "Researchers found that the new method reduced latency by a third without hurting accuracy.",
    "If you can't reproduce the bug locally, attach the logs and the exact version you're running.",
    "The museum's collection includes maps, letters, photographs and several hand-drawn diagrams.",
    "Translate the following paragraph into French, keeping the technical terms in English.",
    "Write a short, friendly message declining the invitation and proposing another week instead.",
    "Interest rates, inflation expectations and wage growth all shape the central bank's decision.",
    "He argued—convincingly, I thought—that the simplest explanation was also the most likely one.",
]

_WORDS = str.split(
    "account action adapter admission alert answer approval archive audit balance batch billing budget cache "
    "call capacity charge client cluster commit context contract cost customer dashboard deadline decision "
    "deployment discount engineer estimate event exception expense finance forecast gateway governance "
    "incident invoice ledger limit manager metric model monitor outage owner payment period policy price "
    "process product project quota record region report request reservation review risk route schedule "
    "service spend stream summary support task team threshold ticket token traffic usage vendor window "
    "workflow quickly carefully nearly always never often rarely clearly simply really the a an of to in "
    "for with on by from and or but because although while if when then so"
)

_CODE = [
    '''def settle(call, usage):
    """Price the real usage and release the rest of the reservation."""
    cost = call.rates.cost(usage)
    for budget in call.budgets:
        budget.commit(cost)
        budget.release(call.reserved - cost)
    return cost
''',
    """class LRUCache:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: dict[str, int] = {}

    def get(self, key: str) -> int | None:
        if key not in self.items:
            return None
        value = self.items.pop(key)
        self.items[key] = value
        return value
""",
    """export async function fetchUser(id) {
  const res = await fetch(`/api/users/${id}`, { headers: { Accept: "application/json" } });
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  return res.json();
}
""",
    """SELECT team, date_trunc('month', created_at) AS month, SUM(cost_usd) AS spend
FROM calls
WHERE status = 'ok' AND created_at >= now() - interval '90 days'
GROUP BY team, month
ORDER BY month DESC, spend DESC;
""",
    """#!/usr/bin/env bash
set -euo pipefail
for f in logs/*.jsonl; do
  jq -r '.usage.input_tokens' "$f" | awk '{s+=$1} END {print FILENAME, s}'
done
""",
    """fn main() {
    let v: Vec<u64> = (1..=10).map(|x| x * x).collect();
    let total: u64 = v.iter().sum();
    println!("sum of squares = {}", total);
}
""",
    """#include <stdio.h>
int main(void) {
\tfor (int i = 0; i < 10; ++i) {
\t\tif (i % 2 == 0) printf("%d is even\\n", i);
\t}
\treturn 0;
}
""",
]

_CHINESE = [
    "本季度的支持成本略有上升，而工单数量有所下降。",
    "请用两句话总结客户的投诉，并给出一个礼貌的回复建议。",
    "当预算达到上限的百分之八十时，团队负责人会收到电子邮件提醒。",
    "我们的入职指南说明了如何申请权限、在哪里找到操作手册以及应该向谁咨询。",
    "研究人员发现，新方法在不影响准确率的情况下将延迟降低了三分之一。",
    "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
    "如果无法在本地复现这个问题，请附上日志和你正在运行的确切版本。",
]

_JAPANESE = [
    "今四半期のサポートコストはわずかに増加しましたが、チケット数は減少しました。",
    "お客様の苦情を二文で要約し、丁寧な返信を提案してください。",
    "予算が上限の八十パーセントに達すると、チームリーダーにメールで通知が届きます。",
    "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。",
    "ローカルでバグを再現できない場合は、ログと実行中の正確なバージョンを添付してください。",
    "東京都千代田区丸の内一丁目、カタカナとひらがなと漢字が混ざった文章です。",
]

_KOREAN = [
    "이번 분기 지원 비용은 약간 증가했지만 티켓 수는 감소했습니다.",
    "고객의 불만을 두 문장으로 요약하고 정중한 답변을 제안해 주세요.",
    "예산이 한도의 80퍼센트에 도달하면 팀장에게 이메일 알림이 전송됩니다.",
]

_OTHER_SCRIPTS = {
    "russian": "Квартальный отчёт показывает, что расходы на поддержку немного выросли, а число обращений снизилось.",
    "arabic": "يُظهر التقرير الفصلي أن تكاليف الدعم ارتفعت قليلاً بينما انخفض عدد التذاكر.",
    "hindi": "तिमाही रिपोर्ट से पता चलता है कि सहायता लागत थोड़ी बढ़ी है जबकि टिकटों की संख्या घटी है।",
    "thai": "รายงานรายไตรมาสแสดงให้เห็นว่าค่าใช้จ่ายด้านการสนับสนุนเพิ่มขึ้นเล็กน้อยในขณะที่จำนวนตั๋วลดลง",
    "greek": "Η τριμηνιαία έκθεση δείχνει ότι το κόστος υποστήριξης αυξήθηκε ελαφρά, "
    "ενώ ο αριθμός των αιτημάτων μειώθηκε.",
    "hebrew": "הדוח הרבעוני מראה כי עלויות התמיכה עלו מעט בעוד מספר הפניות ירד.",
    "vietnamese": "Báo cáo quý cho thấy chi phí hỗ trợ tăng nhẹ trong khi số lượng yêu cầu giảm.",
    "german": "Der Quartalsbericht zeigt, dass die Supportkosten leicht gestiegen sind, während die Ticketanzahl sank.",
    "french": "Le rapport trimestriel montre que les coûts d'assistance ont légèrement augmenté, "
    "tandis que le nombre de tickets a baissé.",
    "spanish": "El informe trimestral muestra que los costes de soporte subieron ligeramente "
    "mientras el número de tickets bajó.",
}

_EMOJI = [
    "😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉😌😍🥰😘",
    "👍🏻👍🏼👍🏽👍🏾👍🏿 👋🏻👋🏿 🙏🏽",
    "👨‍👩‍👧‍👦 👩‍💻 🧑🏽‍🚀 🏳️‍🌈 🏴‍☠️ ❤️‍🔥",
    "🇺🇸🇬🇧🇫🇷🇩🇪🇯🇵🇨🇳🇧🇷🇮🇳🇿🇦🇦🇺",
    "🚀✨🔥💯🎉🎊🥳 Launch day!!! 🚀🚀🚀",
]


def _sentences(rng: random.Random, pool: Sequence[str], n: int, sep: str = " ") -> str:
    return sep.join(rng.choice(pool) for _ in range(n))


def _word_salad(rng: random.Random, n: int) -> str:
    words = [rng.choice(_WORDS) for _ in range(n)]
    out: list[str] = []
    for i, word in enumerate(words):
        w = word.capitalize() if i == 0 or out[-1].endswith(".") else word
        out.append(w + ("." if rng.random() < 0.08 else ("," if rng.random() < 0.05 else "")))
    return " ".join(out)


def _json_value(rng: random.Random, depth: int) -> Any:
    kind = rng.random()
    if depth <= 0 or kind < 0.35:
        choice = rng.randrange(6)
        if choice == 0:
            return rng.randint(-(10**6), 10**9)
        if choice == 1:
            return round(rng.uniform(-1000, 1000), rng.randint(0, 6))
        if choice == 2:
            return rng.choice([True, False, None])
        if choice == 3:
            return _word_salad(rng, rng.randint(1, 8))
        if choice == 4:
            return "".join(rng.choice(string.hexdigits.lower()) for _ in range(32))
        return f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}T{rng.randint(0, 23):02d}:00:00Z"
    if kind < 0.65:
        return [_json_value(rng, depth - 1) for _ in range(rng.randint(1, 5))]
    return {
        rng.choice(_WORDS) + "_" + rng.choice(["id", "name", "count", "usd", "at", "tags", "status"]): _json_value(
            rng, depth - 1
        )
        for _ in range(rng.randint(1, 6))
    }


def _tool_schema(rng: random.Random, i: int) -> dict[str, Any]:
    props = {
        f"{rng.choice(_WORDS)}_{j}": {
            "type": rng.choice(["string", "integer", "number", "boolean"]),
            "description": _word_salad(rng, rng.randint(3, 14)),
        }
        for j in range(rng.randint(1, 6))
    }
    return {
        "type": "function",
        "function": {
            "name": f"tool_{i}_{rng.choice(_WORDS)}",
            "description": _word_salad(rng, rng.randint(5, 30)),
            "parameters": {"type": "object", "properties": props, "required": sorted(props)[:1]},
        },
    }


def _random_unicode(rng: random.Random, n: int) -> str:
    ranges = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x9FFF), (0x1F300, 0x1FAFF)]
    out = []
    for _ in range(n):
        lo, hi = rng.choice(ranges)
        out.append(chr(rng.randint(lo, hi)))
    return "".join(out)


def corpus() -> list[Item]:
    """The deterministic benchmark corpus (no downloads, no randomness across runs)."""
    rng = random.Random(20260101)
    items: list[Item] = []

    def add(category: str, name: str, text: str) -> None:
        items.append(Item(category, name, text))

    # English prose: short, medium, long; real sentences and generated word sequences.
    add("english", "hello", "Hello, how are you?")
    add("english", "one-sentence", _ENGLISH[0])
    for n in (3, 8, 20):
        add("english", f"prose-{n}", _sentences(rng, _ENGLISH, n))
    add("english", "prose-long", "\n\n".join(_sentences(rng, _ENGLISH, 12) for _ in range(25)))
    add("english", "generated-200w", _word_salad(rng, 200))
    add("english", "generated-3000w", _word_salad(rng, 3000))
    add("english", "instructions", "You are a helpful assistant. " + _sentences(rng, _ENGLISH, 6, "\n- "))

    # Code.
    for i, snippet in enumerate(_CODE):
        add("code", f"snippet-{i}", snippet)
    add("code", "module-long", "\n\n".join(rng.choice(_CODE) for _ in range(40)))
    add("code", "minified-js", "".join(_CODE[2].split()) * 20)
    add("code", "deep-indent", "\n".join(" " * (4 * (i % 12)) + f"x_{i} = f(x_{i - 1})" for i in range(1, 200)))

    # JSON.
    for i, depth in enumerate((1, 2, 3, 4)):
        value = _json_value(rng, depth)
        add("json", f"compact-{i}", json.dumps(value, separators=(",", ":")))
        add("json", f"indented-{i}", json.dumps(value, indent=2))
    add("json", "tool-schemas", json.dumps([_tool_schema(rng, i) for i in range(12)]))
    add("json", "records-long", json.dumps([_json_value(rng, 2) for _ in range(300)]))
    add("json", "unicode-escaped", json.dumps({"text": _sentences(rng, _CHINESE, 5)}))

    # Chinese, Japanese, Korean.
    add("chinese", "short", _CHINESE[0])
    add("chinese", "poem", _CHINESE[5])
    add("chinese", "medium", _sentences(rng, _CHINESE, 10, ""))
    add("chinese", "long", _sentences(rng, _CHINESE, 300, ""))
    add("japanese", "short", _JAPANESE[0])
    add("japanese", "novel", _JAPANESE[3])
    add("japanese", "medium", _sentences(rng, _JAPANESE, 10, ""))
    add("japanese", "long", _sentences(rng, _JAPANESE, 300, ""))
    add("korean", "short", _KOREAN[0])
    add("korean", "medium", _sentences(rng, _KOREAN, 12))

    # Other scripts and European languages.
    for name, text in _OTHER_SCRIPTS.items():
        add("other-scripts", name, text)
    add("other-scripts", "mixed-long", _sentences(rng, list(_OTHER_SCRIPTS.values()), 60))

    # Emoji.
    for i, text in enumerate(_EMOJI):
        add("emoji", f"set-{i}", text)
    add("emoji", "long", _sentences(rng, _EMOJI, 100))
    add("emoji", "with-prose", " ".join(f"{s} {rng.choice(_EMOJI)[:4]}" for s in rng.sample(_ENGLISH, 8)))

    # Numbers.
    add("numbers", "digits-1000", "".join(rng.choice(string.digits) for _ in range(1000)))
    add("numbers", "decimals", " ".join(f"{rng.uniform(-1e6, 1e6):.6f}" for _ in range(200)))
    add("numbers", "csv", "\n".join(",".join(str(rng.randint(0, 99999)) for _ in range(8)) for _ in range(100)))
    add(
        "numbers",
        "phone-and-dates",
        " ".join(f"+1-555-{rng.randint(100, 999)}-{rng.randint(1000, 9999)}" for _ in range(50)),
    )
    add("numbers", "hex-uuids", "\n".join(f"{rng.getrandbits(128):032x}" for _ in range(50)))
    add("numbers", "arithmetic", " ".join(f"{rng.randint(1, 999)}*{rng.randint(1, 999)}=" for _ in range(100)))

    # Markup and mixed content.
    add(
        "markup",
        "markdown-table",
        "| team | spend | limit |\n|---|---:|---:|\n"
        + "\n".join(
            f"| {rng.choice(_WORDS)} | ${rng.uniform(0, 9999):.2f} | ${rng.randint(1, 99) * 100} |" for _ in range(60)
        ),
    )
    add(
        "markup",
        "html",
        "".join(f'<div class="row"><span id="c{i}">{rng.choice(_WORDS)}</span></div>\n' for i in range(150)),
    )
    add(
        "markup",
        "urls",
        "\n".join(
            f"https://example.com/{rng.choice(_WORDS)}/{rng.getrandbits(40):x}"
            f"?q={rng.choice(_WORDS)}&page={rng.randint(1, 99)}"
            for _ in range(80)
        ),
    )
    add(
        "markup",
        "mixed-doc",
        f"# Report\n\n{_sentences(rng, _ENGLISH, 5)}\n\n```python\n{_CODE[0]}```\n\n{_CHINESE[1]} {_EMOJI[4]}\n",
    )

    # Adversarial: whitespace, repetition, random characters, base64-like blobs.
    add("adversarial", "spaces-1000", " " * 1000)
    add("adversarial", "newlines", "\n" * 500)
    add("adversarial", "tabs-and-spaces", "\t \t  \n" * 200)
    add("adversarial", "repeated-char", "a" * 2000)
    add("adversarial", "repeated-word", "token " * 1000)
    add("adversarial", "random-ascii", "".join(rng.choice(string.printable) for _ in range(3000)))
    add("adversarial", "random-unicode", _random_unicode(rng, 2000))
    add(
        "adversarial",
        "base64-blob",
        "".join(rng.choice(string.ascii_letters + string.digits + "+/") for _ in range(4000)),
    )
    add(
        "adversarial",
        "special-tokens",
        "<|endoftext|><|im_start|>system<|im_end|>\n\nHuman: hi\n\nAssistant: hello" * 10,
    )
    add("adversarial", "combining-marks", "".join("e" + chr(0x301 + (i % 40)) for i in range(500)))
    add("adversarial", "single-char", "x")
    add("adversarial", "empty", "")
    return items


def random_strings(seed: int, count: int) -> Iterator[str]:
    """Random strings for property checks: mixed scripts, lengths 0-2000, including whitespace runs."""
    rng = random.Random(seed)
    alphabets = [
        string.printable,
        string.ascii_letters + " ",
        string.digits + " .,",
        " \t\n",
        "".join(chr(c) for c in range(0x4E00, 0x4E00 + 300)),
        "".join(chr(c) for c in range(0x3040, 0x30FF)),
        "".join(chr(c) for c in range(0x1F600, 0x1F650)) + "\u200d\ufe0f",
        "".join(chr(c) for c in range(0x0900, 0x097F)),
        "".join(chr(c) for c in range(0x0E00, 0x0E7F)),
    ]
    for _ in range(count):
        n = rng.choice([0, 1, 2, 5, 20, 100, 500, 2000])
        parts = []
        while sum(map(len, parts)) < n:
            alphabet = rng.choice(alphabets)
            parts.append("".join(rng.choice(alphabet) for _ in range(rng.randint(1, 60))))
        yield "".join(parts)[:n]


# --------------------------------------------------------------------------------------------
# Measurement
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    label: str
    provider: str
    model: str
    real: Callable[[str], int] | None  # the real input tokens of a one-user-message request


def _openai_real(encoding: str) -> Callable[[str], int]:
    from tokenguard import tokens

    enc = tokens.encoding(encoding)

    def real(text: str) -> int:
        # OpenAI's documented framing: 3 per message, the role (1 token), 3 priming the reply.
        return len(enc.encode_ordinary(text)) + 3 + 1 + 3

    return real


def _ctok_real(version: str) -> Callable[[str], int] | None:
    try:
        import ctok  # type: ignore[import-not-found]
    except ImportError:
        return None

    def real(text: str) -> int:
        return int(ctok.token_count(text, version))

    return real


def models() -> list[Model]:
    return [
        Model("OpenAI gpt-4o (o200k_base)", "openai", "gpt-4o", _openai_real("o200k_base")),
        Model("OpenAI gpt-4 (cl100k_base)", "openai", "gpt-4", _openai_real("cl100k_base")),
        Model("Anthropic Claude 3 - Opus 4.6 (ref: ctok v3)", "anthropic", "claude-sonnet-4-5", _ctok_real("3.0")),
        Model("Anthropic Opus 4.7 (ref: ctok v4.7)", "anthropic", "claude-opus-4-7", _ctok_real("4.7")),
        Model("Anthropic Opus 4.8+ (ref: ctok v4.8)", "anthropic", "claude-opus-4-8", _ctok_real("4.8")),
    ]


def request_body(provider: str, model: str, text: str) -> dict[str, Any]:
    if provider == "anthropic":
        return {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": text}]}
    return {"model": model, "messages": [{"role": "user", "content": text}]}


@dataclass
class Row:
    model: str
    category: str
    name: str
    real: int
    bound: int
    point: int
    bytes_bound: int
    chars_point: int


def measure(items: Sequence[Item], model_list: Sequence[Model]) -> list[Row]:
    from tokenguard import tokens

    tokens.preload()
    rows: list[Row] = []
    for m in model_list:
        if m.real is None:
            continue
        api = "messages" if m.provider == "anthropic" else "chat.completions"
        for item in items:
            est = tokens.estimate_request(m.provider, api, m.model, request_body(m.provider, m.model, item.text))
            # The estimate tokenguard used before this module counted tokens: UTF-8 bytes + 8 per
            # message (bound), characters / 4 + 8 (point).
            utf8 = len(item.text.encode("utf-8"))
            rows.append(
                Row(
                    m.label,
                    item.category,
                    item.name,
                    m.real(item.text),
                    est.bound,
                    est.point,
                    utf8 + 8,
                    -(-len(item.text) // 4) + 8,
                )
            )
    return rows


def _quantiles(values: Sequence[float]) -> dict[str, float]:
    ordered = sorted(values)

    def pct(p: float) -> float:
        k = (len(ordered) - 1) * p
        lo = int(k)
        hi = min(lo + 1, len(ordered) - 1)
        return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)

    return {"min": ordered[0], "median": statistics.median(ordered), "p95": pct(0.95), "max": ordered[-1]}


def summarize(rows: Sequence[Row]) -> dict[str, dict[str, dict[str, float]]]:
    out: dict[str, dict[str, dict[str, float]]] = {}
    for label in dict.fromkeys(r.model for r in rows):
        mine = [r for r in rows if r.model == label]
        big = [r for r in mine if r.real >= 100] or mine
        out[label] = {
            "bound/real": _quantiles([r.bound / r.real for r in mine]),
            "bound/real, texts of >= 100 tokens": _quantiles([r.bound / r.real for r in big]),
            "point/real": _quantiles([r.point / r.real for r in mine]),
            "old bound (bytes)/real": _quantiles([r.bytes_bound / r.real for r in mine]),
            "old point (chars/4)/real": _quantiles([r.chars_point / r.real for r in mine]),
        }
    return out


def by_category(rows: Sequence[Row], label: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    mine = [r for r in rows if r.model == label]
    for category in dict.fromkeys(r.category for r in mine):
        sub = [r for r in mine if r.category == category]
        out[category] = {
            "items": len(sub),
            "min bound/real": min(r.bound / r.real for r in sub),
            "median bound/real": statistics.median(r.bound / r.real for r in sub),
            "median point/real": statistics.median(r.point / r.real for r in sub),
        }
    return out


_LOAD_CHILD = """
import json, sys, time
sys.path.insert(0, {src!r})
def rss():
    with open("/proc/self/status") as f:
        return int(f.read().split("VmRSS:")[1].split()[0]) / 1024
import tokenguard.tokens as tokens
before = rss()
t0 = time.perf_counter()
tokens.preload([{name!r}])
print(json.dumps([time.perf_counter() - t0, rss() - before]))
"""


def load_cost() -> list[tuple[str, float, float]]:
    """Seconds and resident MB to load each encoding, each in a fresh interpreter."""
    import subprocess

    src = str(Path(__file__).resolve().parents[1] / "src")
    out = []
    for name in ("o200k_base", "cl100k_base"):
        code = _LOAD_CHILD.format(src=src, name=name)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        seconds, mb = json.loads(proc.stdout)
        out.append((name, seconds, mb))
    return out


def timing() -> list[tuple[str, float]]:
    """Microseconds per estimate for a few request sizes (after preload)."""
    from tokenguard import tokens

    tokens.preload()
    rng = random.Random(7)
    cases = {
        "short chat (1 message, 20 chars)": "Hello, how are you?",
        "medium chat (2 KB English)": _sentences(rng, _ENGLISH, 20),
        "long chat (50 KB English)": _sentences(rng, _ENGLISH, 500),
    }
    out = []
    for label, text in cases.items():
        body = {"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": text}]}
        for provider, api, model in (
            ("openai", "chat.completions", "gpt-4o"),
            ("anthropic", "messages", "claude-sonnet-4-5"),
        ):
            n = 2000 if len(text) < 5000 else 50
            # A fresh string each time so the count cache cannot answer (the worst case).
            bodies = [{"messages": [body["messages"][0], {"role": "user", "content": text + str(i)}]} for i in range(n)]
            t0 = time.perf_counter()
            for b in bodies:
                tokens.estimate_request(provider, api, model, b)
            cold = (time.perf_counter() - t0) / n * 1e6
            tokens.estimate_request(provider, api, model, body)  # counted once, then from the cache
            t0 = time.perf_counter()
            for _ in range(n):
                tokens.estimate_request(provider, api, model, body)
            warm = (time.perf_counter() - t0) / n * 1e6
            out.append((f"{provider}: {label}, new text", cold))
            out.append((f"{provider}: {label}, repeated text", warm))
    return out


def _fmt(q: Mapping[str, float]) -> str:
    return " | ".join(f"{q[k]:.2f}" for k in ("min", "median", "p95", "max"))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, help="also write the rows and summary as JSON here")
    parser.add_argument("--timing", action="store_true", help="also measure the per-call cost of an estimate")
    args = parser.parse_args(argv)

    items = corpus()
    model_list = models()
    rows = measure(items, model_list)
    summary = summarize(rows)
    cats = dict.fromkeys(i.category for i in items)
    print(
        f"corpus: {len(items)} texts in {len(cats)} categories ({', '.join(cats)}), "
        f"{min(len(i.text) for i in items)}-{max(len(i.text) for i in items)} characters"
    )
    skipped = [m.label for m in model_list if m.real is None]
    if skipped:
        print(f"skipped (reference not installed: pip install ctok): {', '.join(skipped)}")
    print()
    print("| model (real count) | estimate / real | min | median | p95 | max |")
    print("|---|---|---:|---:|---:|---:|")
    for label, qs in summary.items():
        for name, q in qs.items():
            print(f"| {label} | {name} | {_fmt(q)} |")
    print()
    for label in summary:
        print(f"per category, {label}:")
        print("| category | items | min bound/real | median bound/real | median point/real |")
        print("|---|---:|---:|---:|---:|")
        for category, c in by_category(rows, label).items():
            print(
                f"| {category} | {c['items']:.0f} | {c['min bound/real']:.2f} "
                f"| {c['median bound/real']:.2f} | {c['median point/real']:.2f} |"
            )
        print()
    under = [r for r in rows if r.bound < r.real]
    print(f"bound below the real count: {len(under)} of {len(rows)}")
    for r in under:
        print(f"  UNDER: {r.model} {r.category}/{r.name}: bound {r.bound} < real {r.real}")
    if args.timing:
        print()
        print("| estimate (after preload) | µs per call |")
        print("|---|---:|")
        for label, us in timing():
            print(f"| {label} | {us:.1f} |")
        if Path("/proc/self/status").exists():
            print()
            print("| encoding | load (s) | resident memory (MB) |")
            print("|---|---:|---:|")
            for name, seconds, mb in load_cost():
                print(f"| {name} | {seconds:.2f} | {mb:.0f} |")
    if args.json:
        args.json.write_text(
            json.dumps({"summary": summary, "rows": [r.__dict__ for r in rows]}, indent=2), encoding="utf-8"
        )
    return 1 if under else 0


if __name__ == "__main__":
    raise SystemExit(main())
