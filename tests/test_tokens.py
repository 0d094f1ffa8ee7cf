"""Pre-call token estimates (tokenguard.tokens): the bound is an upper bound, counting works offline,
importing tokenguard stays light.

Ground truth used here:
* OpenAI: tiktoken's count with the vendored encodings *is* OpenAI's tokenizer; plus a few
  ``prompt_tokens`` recorded from the OpenAI API (published test fixtures of the
  openai-messages-token-helper project), including tool definitions and an image.
* Anthropic: Claude's tokenizer is not public. ``CLAUDE_REFERENCE`` holds counts from ``ctok``, an
  offline reconstruction of Claude's ``count_tokens`` (see benchmarks/estimate_accuracy.py); when
  ``ctok`` is installed, the whole corpus is checked against it as well.
"""

from __future__ import annotations

import gzip
import hashlib
import importlib.util
import inspect
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from support import require_service
from tokenguard import tokens

ROOT = Path(__file__).resolve().parents[1]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("estimate_accuracy", ROOT / "benchmarks" / "estimate_accuracy.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["estimate_accuracy"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()
CORPUS = bench.corpus()


@pytest.fixture(scope="module", autouse=True)
def _tiktoken() -> None:
    if importlib.util.find_spec("tiktoken") is None:
        require_service("tiktoken (a tokenguard dependency)")
    assert tokens.preload(["o200k_base", "cl100k_base"])


def o200k(text: str) -> int:
    return len(tokens.encoding("o200k_base").encode_ordinary(text))


def cl100k(text: str) -> int:
    return len(tokens.encoding("cl100k_base").encode_ordinary(text))


def chat(model: str, text: str, provider: str = "openai") -> tokens.InputEstimate:
    api = "messages" if provider == "anthropic" else "chat.completions"
    return tokens.estimate_request(provider, api, model, {"messages": [{"role": "user", "content": text}]})


def openai_real(count: int, messages: int = 1) -> int:
    """OpenAI's documented chat framing: 3 per message + the role (1 token), 3 priming the reply."""
    return count + 4 * messages + 3


# -- the vendored encodings --------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["o200k_base", "cl100k_base"])
def test_vendored_encodings_are_byte_identical_to_what_tiktoken_downloads(name: str) -> None:
    spec = tokens._SPECS[name]
    data = gzip.decompress((tokens.ENCODINGS_DIR / spec.file).read_bytes())
    assert hashlib.sha256(data).hexdigest() == spec.sha256
    # ... and that hash is the one tiktoken itself pins for the file it would download.
    openai_public = pytest.importorskip("tiktoken_ext.openai_public")
    assert f'expected_hash="{spec.sha256}"' in inspect.getsource(openai_public)


def test_the_vendored_o200k_counts_like_openai_recorded_usage() -> None:
    # prompt_tokens the OpenAI API returned for one-message requests to gpt-4o ("count_omni").
    recorded = [
        ("system", "You are a bot.", 12),
        (
            "system",
            "You are a helpful, pattern-following assistant that translates corporate jargon into plain English.",
            24,
        ),
        ("user", "Hello, how are you?", 13),
        ("user", "á", 8),
        ("user", "What happens in a performance review?", 14),
        ("assistant", "Yes, there is a dress code at Contoso Electronics. Look sharp! [employee_handbook-1.pdf]", 30),
    ]
    for role, content, prompt_tokens in recorded:
        est = tokens.estimate_request(
            "openai", "chat.completions", "gpt-4o", {"messages": [{"role": role, "content": content}]}
        )
        assert est.point == prompt_tokens, content
        assert prompt_tokens <= est.bound <= prompt_tokens + 20
        assert est.method == "tiktoken:o200k_base"


@pytest.mark.parametrize(
    ("model", "encoding"),
    [
        ("gpt-4o", "o200k_base"),
        ("gpt-4o-mini-2024-07-18", "o200k_base"),
        ("ft:gpt-4o-mini:acme::abc", "o200k_base"),
        ("gpt-4.1-nano", "o200k_base"),
        ("gpt-5", "o200k_base"),
        ("o3-mini", "o200k_base"),
        ("gpt-4", "cl100k_base"),
        ("gpt-4-turbo", "cl100k_base"),
        ("gpt-3.5-turbo", "cl100k_base"),
        ("text-embedding-3-small", "cl100k_base"),
        ("my-azure-deployment", None),
    ],
)
def test_encoding_for_model(model: str, encoding: str | None) -> None:
    assert tokens.encoding_for("openai", model) == encoding
    assert tokens.encoding_for("anthropic", "claude-sonnet-4-5") is None


def test_the_claude_weight_table_follows_the_rule() -> None:
    enc = tokens.encoding("o200k_base")
    table = tokens._claude_weights
    assert len(table) == 199998
    for rank in [*range(0, 199998, 37), *enc.encode_ordinary("\n    \t\n  ---- aaaa Z! ")]:
        assert table[rank] == tokens._weight(enc.decode_single_token_bytes(rank)), rank
    assert tokens._weight(b" ") == 2 and tokens._weight(b"ab") == 3 and tokens._weight(b" hello") == 3
    assert tokens._weight(b"\n    ") == 5 and tokens._weight(b"-" * 16) == 16


# -- the bound holds ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "count"), [("gpt-4o", o200k), ("gpt-4", cl100k), ("my-deployment", None)])
def test_openai_bound_is_above_the_exact_count_on_the_corpus(model: str, count: Any) -> None:
    for item in CORPUS:
        est = chat(model, item.text)
        exact = max(o200k(item.text), cl100k(item.text)) if count is None else count(item.text)
        assert est.bound >= openai_real(exact), (item.category, item.name)
        if count is not None:  # exact, but for a token per chunk boundary in long texts
            assert 0 <= est.point - openai_real(exact) <= len(item.text) // tokens._CHUNK_CHARS


def test_openai_bound_is_above_the_exact_count_on_random_strings() -> None:
    for text in bench.random_strings(seed=12345, count=400):
        assert chat("gpt-4o", text).bound >= openai_real(o200k(text)), repr(text)
        assert chat("gpt-3.5-turbo", text).bound >= openai_real(cl100k(text)), repr(text)


def test_chunked_counting_never_counts_fewer_tokens_than_the_whole_text() -> None:
    encoder = tokens.encoding("o200k_base")
    texts = [i.text for i in CORPUS if len(i.text) > tokens._CHUNK_CHARS]
    texts += ["word " * 5000, "x" * 20000, "中文" * 9000, ("ab " * 3000 + "\n") * 4]
    assert len(texts) >= 6
    for text in texts:
        count, _, cuts = tokens._measure("o200k_base", encoder, text + " ", False)
        assert cuts >= 1
        assert count + cuts >= o200k(text + " ")


# Reference Claude counts for a one-user-message request, for the Claude 3 - Opus 4.6 tokenizer,
# the Opus 4.7 one and the Opus 4.8 one (from ctok 1.3.0; see the module docstring).
CLAUDE_REFERENCE: list[tuple[str, int, int, int]] = [
    ("Hello, world", 10, 16, 11),
    ("Please summarize the customer's complaint in two sentences and suggest a polite reply.", 24, 38, 33),
    (
        "It was the best of times, it was the worst of times, it was the age of wisdom, it was the age of foolishness.",
        37,
        46,
        41,
    ),
    ("def settle(call, usage):\n    cost = call.rates.cost(usage)\n    return cost\n", 30, 41, 36),
    ("SELECT team, SUM(cost_usd) AS spend FROM calls WHERE status = 'ok' GROUP BY team;", 33, 55, 50),
    ('{"user_id":42,"tags":["a","b"],"cost_usd":0.0012,"ok":true,"at":"2026-01-01T00:00:00Z"}', 52, 67, 62),
    ("本季度的支持成本略有上升，而工单数量有所下降。", 31, 35, 29),  # noqa: RUF001
    ("吾輩は猫である。名前はまだ無い。", 26, 30, 24),
    ("이번 분기 지원 비용은 약간 증가했지만 티켓 수는 감소했습니다.", 44, 48, 42),
    ("तिमाही रिपोर्ट से पता चलता है कि सहायता लागत थोड़ी बढ़ी है।", 50, 54, 49),
    ("รายงานรายไตรมาสแสดงให้เห็นว่าค่าใช้จ่ายเพิ่มขึ้นเล็กน้อย", 62, 66, 61),
    ("Квартальный отчёт показывает рост расходов.", 25, 29, 24),  # noqa: RUF001
    ("👨\u200d👩\u200d👧\u200d👦 🇺🇸🇯🇵 👍🏽 🚀✨🔥", 50, 54, 48),
    ("3.14159265358979323846264338327950288419716939937510", 27, 31, 25),
    ("a" * 300, 108, 311, 306),
    (" " * 500, 39, 43, 38),
    ("\t\n" * 100, 207, 211, 205),
    ("-" * 200, 11, 45, 40),
    ("Z!" * 100, 207, 311, 306),
    ("aA" * 150, 307, 311, 306),
    ("HELLO WORLD " * 20, 88, 172, 167),
    ("e\u0301" * 100, 58, 62, 57),
    ("ǅ!" * 50, 257, 261, 256),
    ("x", 8, 12, 7),
    ("", 8, 12, 6),
]


@pytest.mark.parametrize(("text", "v3", "v47", "v48"), CLAUDE_REFERENCE, ids=range(len(CLAUDE_REFERENCE)))
@pytest.mark.parametrize("model", ["claude-3-5-sonnet-20241022", "claude-sonnet-4-5", "claude-opus-4-7", "claude-x"])
def test_anthropic_bound_is_above_the_reference_counts(text: str, v3: int, v47: int, v48: int, model: str) -> None:
    est = chat(model, text, provider="anthropic")
    assert est.method == "claude:o200k-weighted"
    assert est.bound >= max(v3, v47, v48)


def test_anthropic_bound_is_above_ctok_on_the_corpus_when_ctok_is_installed() -> None:
    ctok = pytest.importorskip("ctok")
    for item in [*CORPUS, *(bench.Item("random", str(i), t) for i, t in enumerate(bench.random_strings(7, 200)))]:
        est = chat("claude-opus-4-7", item.text, provider="anthropic")
        real = max(ctok.token_count(item.text, v) for v in ("3.0", "4.7", "4.8"))
        assert est.bound >= real, (item.category, item.name)


def test_anthropic_bound_never_below_the_o200k_count_on_random_strings() -> None:
    # Every o200k token weighs at least 1, so the Claude bound is at least the o200k count.
    for text in bench.random_strings(seed=99, count=300):
        assert chat("claude-sonnet-4-5", text, provider="anthropic").bound >= o200k(text) + 8


def test_anthropic_point_estimate_is_near_the_reference() -> None:
    for text, v3, v47, _ in CLAUDE_REFERENCE[:14]:
        assert 0.5 * v3 <= chat("claude-sonnet-4-5", text, provider="anthropic").point <= 2 * v3, text
        assert 0.5 * v47 <= chat("claude-opus-4-7", text, provider="anthropic").point <= 2 * v47, text


# -- request structure: tools, images, media, other APIs ----------------------------------------------

SYSTEM = {"role": "system", "content": "You are a bot."}

# prompt_tokens the OpenAI API returned for a system message plus tool definitions (published
# fixtures of the openai-messages-token-helper project).
RECORDED_TOOLS: list[tuple[list[dict[str, Any]], Any, int]] = [
    (
        [
            {
                "type": "function",
                "function": {
                    "name": "search_sources",
                    "description": "Retrieve sources from the Azure AI Search index",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "search_query": {
                                "type": "string",
                                "description": (
                                    "Query string to retrieve documents from azure search eg: 'Health care plan'"
                                ),
                            }
                        },
                        "required": ["search_query"],
                    },
                },
            }
        ],
        {"type": "function", "function": {"name": "search_sources"}},
        75,
    ),
    (
        [
            {
                "type": "function",
                "function": {
                    "name": "summarize_order",
                    "description": "Summarize the customer order request",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "product_name": {"type": "string", "description": "Product name ordered by customer"},
                            "quantity": {"type": "integer", "description": "Quantity ordered by customer"},
                            "unit": {
                                "type": "string",
                                "enum": ["meals", "days"],
                                "description": "unit of measurement of the customer order",
                            },
                        },
                        "required": ["product_name", "quantity", "unit"],
                    },
                },
            }
        ],
        "none",
        86,
    ),
    (
        [
            {
                "type": "function",
                "function": {
                    "name": "search_sources",
                    "description": "Retrieve sources from the Azure AI Search index",
                },
            }
        ],
        "auto",
        42,
    ),
]


@pytest.mark.parametrize(("tools", "tool_choice", "prompt_tokens"), RECORDED_TOOLS)
@pytest.mark.parametrize("model", ["gpt-4o", "gpt-3.5-turbo"])
def test_tool_definitions_count_as_input(tools: Any, tool_choice: Any, prompt_tokens: int, model: str) -> None:
    body = {"messages": [SYSTEM], "tools": tools, "tool_choice": tool_choice}
    with_tools = tokens.estimate_request("openai", "chat.completions", model, body)
    without = tokens.estimate_request("openai", "chat.completions", model, {"messages": [SYSTEM]})
    assert with_tools.bound >= prompt_tokens
    assert with_tools.bound <= 3 * prompt_tokens
    assert with_tools.bound - without.bound >= prompt_tokens - 12


def test_anthropic_tools_add_the_tool_use_preamble_and_server_tools() -> None:
    body: dict[str, Any] = {"messages": [{"role": "user", "content": "What's the weather?"}]}
    plain = tokens.estimate_request("anthropic", "messages", "claude-sonnet-4-5", body)
    tool = {"name": "get_weather", "description": "Weather", "input_schema": {"type": "object", "properties": {}}}
    custom = tokens.estimate_request("anthropic", "messages", "claude-sonnet-4-5", {**body, "tools": [tool]})
    assert custom.bound >= plain.bound + tokens.ANTHROPIC_TOOLS_PREAMBLE + o200k(json.dumps(tool))
    server = {"type": "web_search_20250305", "name": "web_search", "max_uses": 3}
    both = tokens.estimate_request("anthropic", "messages", "claude-sonnet-4-5", {**body, "tools": [tool, server]})
    assert both.bound >= custom.bound + tokens.ANTHROPIC_SERVER_TOOL
    assert "results of the web_search_20250305 tool" in both.uncounted


def test_image_bounds_follow_the_published_formulas() -> None:
    assert tokens.image_bound("openai", "gpt-4o") == 85 + 8 * 170
    assert tokens.image_bound("openai", "gpt-4o-2024-08-06", "low") == 85
    assert tokens.image_bound("openai", "gpt-4o-mini") == 2833 + 8 * 5667
    assert tokens.image_bound("openai", "gpt-4.1-mini") == 2489
    assert tokens.image_bound("openai", "gpt-5") == 70 + 8 * 140
    assert tokens.image_bound("openai", "gpt-5.1-codex-mini") == 4050  # a variant: patch rule, x1.62
    assert tokens.image_bound("openai", "gpt-5.4") == 2500
    assert tokens.image_bound("openai", "gpt-5.4", "original") == 10000
    assert tokens.image_bound("openai", "o3") == 75 + 8 * 150
    assert tokens.image_bound("anthropic", "claude-3-5-sonnet-20241022") == 1600
    assert tokens.image_bound("anthropic", "claude-sonnet-4-20250514") == 1600
    assert tokens.image_bound("anthropic", "claude-opus-4-7") == 4800
    assert tokens.image_bound("anthropic", "claude-sonnet-5") == 4800
    assert tokens.image_bound("anthropic", "some-claude-alias") == 4800


def test_images_in_requests() -> None:
    pixel = (
        "data:image/png;base64,"
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z/C/HgAGgwJ/lK3Q6wAAAABJRU5ErkJggg=="
    )
    parts = [{"type": "text", "text": "Describe this picture:"}, {"type": "image_url", "image_url": {"url": pixel}}]
    est = tokens.estimate_request(
        "openai", "chat.completions", "gpt-4o", {"messages": [{"role": "user", "content": parts}]}
    )
    assert est.bound >= 266  # recorded prompt_tokens for this request (a 1x1 PNG, detail auto)
    assert est.bound <= 1445 + 40
    responses = tokens.estimate_request(
        "openai",
        "responses",
        "gpt-4o",
        {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": pixel, "detail": "low"}]}]},
    )
    assert 85 <= responses.bound <= 85 + 40
    source = {"type": "base64", "media_type": "image/png", "data": pixel.partition(",")[2]}
    image = {"role": "user", "content": [{"type": "image", "source": source}, {"type": "text", "text": "What is it?"}]}
    claude = tokens.estimate_request("anthropic", "messages", "claude-opus-4-7", {"messages": [image]})
    assert claude.bound >= 4784


def test_other_parts_and_apis() -> None:
    emb = tokens.estimate_request(
        "openai", "embeddings", "text-embedding-3-small", {"input": ["hello world", "goodbye"]}
    )
    assert emb.point == cl100k("hello world") + cl100k("goodbye")
    assert emb.point <= emb.bound <= emb.point + 4
    ids = tokens.estimate_request("openai", "embeddings", "text-embedding-3-small", {"input": [[1, 2, 3], [4]]})
    assert ids.point == 4
    resp = tokens.estimate_request(
        "openai",
        "responses",
        "gpt-5",
        {
            "instructions": "Be brief.",
            "input": [
                {"role": "user", "content": "What is 2+2?"},
                {"type": "function_call", "name": "add", "arguments": '{"a": 2, "b": 2}', "call_id": "c1"},
                {"type": "function_call_output", "call_id": "c1", "output": "4"},
                {"type": "reasoning", "summary": [], "encrypted_content": "x" * 400},
            ],
            "previous_response_id": "resp_123",
        },
    )
    assert resp.bound >= 400 + o200k("Be brief.") + o200k("What is 2+2?")
    assert resp.uncounted == ("previous_response_id",)
    blocks = [
        {"type": "tool_use", "id": "t1", "name": "lookup", "input": {"query": "x" * 300}},
        {"type": "tool_result", "tool_use_id": "t1", "content": [{"type": "text", "text": "y" * 300}]},
        {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": "z " * 300}},
        {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}},
    ]
    claude = tokens.estimate_request(
        "anthropic",
        "messages",
        "claude-haiku-4-5",
        {"system": "Be brief.", "messages": [{"role": "user", "content": blocks}]},
    )
    assert claude.bound >= o200k("x" * 300) + o200k("y" * 300) + o200k("z " * 300)
    assert claude.uncounted == ("document referenced by URL or file id",)


def test_a_malformed_body_never_raises() -> None:
    junk: list[Any] = [None, 3, "text", [1, "a", None], {"type": None}, {"content": {"nested": [1.5, True]}}]
    bodies: list[dict[str, Any]] = [
        {"messages": junk},
        {"messages": "not a list", "tools": "nope"},
        {"input": junk},
        {"input": {"weird": object()}},
        {"system": junk, "messages": [{"role": "user", "content": junk}], "tools": junk},
        {},
    ]
    for body in bodies:
        for provider, api in [
            ("openai", "chat.completions"),
            ("openai", "responses"),
            ("openai", "embeddings"),
            ("anthropic", "messages"),
            ("other", "x"),
        ]:
            est = tokens.estimate_request(provider, api, "m", body)
            assert est.bound >= est.point >= 0 or est.bound >= 0


def test_an_unknown_large_part_is_bounded_by_its_bytes_not_tokenized() -> None:
    blob = "QUJD" * 50_000  # 200 KB of base64 in a part type tokenguard does not know
    part = {"type": "input_video", "video": {"data": blob}}
    for provider, api, per_byte in [("openai", "chat.completions", 1), ("anthropic", "messages", 2)]:
        est = tokens.estimate_request(provider, api, "m", {"messages": [{"role": "user", "content": [part]}]})
        assert est.bound >= per_byte * len(blob)
        assert est.point < est.bound


def test_pathological_texts_are_counted_in_bounded_time() -> None:
    # One megabyte of a single whitespace run overflows tiktoken's regex stack when encoded whole.
    for text in (" " * 1_000_000, "a" * 1_000_000):
        t0 = time.perf_counter()
        est = chat("gpt-4o", text)
        elapsed = time.perf_counter() - t0
        assert 1_000_000 // 128 <= est.bound <= 1_000_000 + 40
        print(f"{text[0]!r} x 1e6: {elapsed * 1000:.0f} ms")


def test_estimate_input_keeps_its_original_behaviour() -> None:
    est = tokens.estimate_input(["héllo", "world"], 2)
    assert est == tokens.InputEstimate(bound=6 + 5 + 16, point=3 + 16)
    counted = tokens.estimate_input(["Hello, how are you?"], 1, provider="openai", model="gpt-4o")
    assert counted.point == 13


# -- offline, light, cheap --------------------------------------------------------------------------------

_OFFLINE_CHILD = r"""
import json, os, socket, sys

def deny(event, args):
    if event.startswith(("socket.", "urllib.", "http.")):
        raise RuntimeError(f"network use: {event}")
sys.addaudithook(deny)

from tokenguard import tokens
texts = ["Hello, how are you?", "本季度的支持成本略有上升", "def f(x):\n    return x * 2\n"]
out = {}
for model, provider in [("gpt-4o", "openai"), ("gpt-4", "openai"), ("claude-sonnet-4-5", "anthropic")]:
    api = "messages" if provider == "anthropic" else "chat.completions"
    body = {"messages": [{"role": "user", "content": t} for t in texts]}
    est = tokens.estimate_request(provider, api, model, body)
    out[model] = [est.bound, est.point, est.method]
out["modules"] = sorted(m for m in ("requests", "urllib3", "blobfile", "tiktoken") if m in sys.modules)
out["cache_dir"] = os.listdir(os.environ["TIKTOKEN_CACHE_DIR"])
print(json.dumps(out))
"""


def test_counting_works_offline_with_an_empty_tiktoken_cache(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "TIKTOKEN_CACHE_DIR": str(tmp_path),
        "DATA_GYM_CACHE_DIR": str(tmp_path),
        "HTTPS_PROXY": "http://127.0.0.1:9",
        "HTTP_PROXY": "http://127.0.0.1:9",
    }
    proc = subprocess.run(
        [sys.executable, "-c", _OFFLINE_CHILD], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["gpt-4o"][2] == "tiktoken:o200k_base"
    assert out["gpt-4"][2] == "tiktoken:cl100k_base"
    assert out["claude-sonnet-4-5"][2] == "claude:o200k-weighted"
    texts = ["Hello, how are you?", "本季度的支持成本略有上升", "def f(x):\n    return x * 2\n"]
    assert out["gpt-4o"][1] == openai_real(sum(map(o200k, texts)), messages=3)
    assert out["modules"] == ["tiktoken"]  # nothing that could download
    assert out["cache_dir"] == []


_NO_TIKTOKEN_CHILD = r"""
import json, logging, sys
sys.modules["tiktoken"] = None  # as if it were not installed
logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
from tokenguard import tokens
body = {"messages": [{"role": "user", "content": "héllo wörld"}]}
out = {}
for provider, api, model in [("openai", "chat.completions", "gpt-4o"), ("anthropic", "messages", "claude-opus-4-7")]:
    est = tokens.estimate_request(provider, api, model, body)
    out[provider] = [est.bound, est.point, est.method]
out["preload"] = tokens.preload()
print(json.dumps(out))
"""


def test_without_tiktoken_the_bound_falls_back_to_bytes() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _NO_TIKTOKEN_CHILD], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    utf8 = len("héllo wörld".encode())
    assert out["openai"][2] == "bytes"
    assert out["openai"][0] >= utf8 + 8
    assert out["anthropic"][2] == "bytes"
    assert out["anthropic"][0] >= 2 * utf8
    assert out["preload"] is False
    assert proc.stderr.count("cannot load the o200k_base token encoding") == 1  # warned once


def test_import_tokenguard_does_not_import_tiktoken() -> None:
    code = (
        "import sys, tokenguard, tokenguard.tokens; tokenguard.Guard; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tiktoken', 'regex', 'requests')))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert proc.stdout.strip() == "[]"


def test_first_use_from_many_threads_loads_once_and_agrees() -> None:
    code = r"""
import json, threading
from tokenguard import tokens
results = []
def work():
    body = {"messages": [{"role": "user", "content": "Hello there, general Kenobi"}]}
    est = tokens.estimate_request("anthropic", "messages", "claude-opus-4-7", body)
    results.append((est.bound, est.point, est.method))
threads = [threading.Thread(target=work) for _ in range(8)]
[t.start() for t in threads]; [t.join() for t in threads]
print(json.dumps(sorted(set(map(tuple, results)))))
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert len(json.loads(proc.stdout)) == 1


def test_the_count_cache_holds_no_prompt_text() -> None:
    secret = "my secret prompt " * 100
    chat("gpt-4o", secret)
    assert all(not any(isinstance(part, str) and "secret" in part for part in key) for key in tokens._cache)


def test_per_call_cost_is_measured(record_property: Any) -> None:
    """Not asserted (machines differ): recorded for the report, see docs/concepts/estimates.md."""
    short = {"messages": [{"role": "user", "content": "Hello, how are you?"}]}
    long_text = " ".join(i.text for i in CORPUS if i.category == "english")[:20_000]
    for label, provider, api, model, body in [
        ("openai short", "openai", "chat.completions", "gpt-4o", short),
        ("anthropic short", "anthropic", "messages", "claude-sonnet-4-5", short),
    ]:
        n = 2000
        t0 = time.perf_counter()
        for _ in range(n):
            tokens.estimate_request(provider, api, model, body)
        record_property(f"{label} us", round((time.perf_counter() - t0) / n * 1e6, 1))
    n = 20
    t0 = time.perf_counter()
    for i in range(n):  # a new text each time: no cache
        chat("gpt-4o", long_text + str(i))
    record_property("openai 20 KB new text us", round((time.perf_counter() - t0) / n * 1e6, 1))
