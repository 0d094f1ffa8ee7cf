"""Pre-call token estimation (step 4): how many input tokens a request can use, before it is sent.

Two numbers per request (:class:`InputEstimate`):

* ``bound``: an **upper bound**, reserved against budgets so that hard caps hold;
* ``point``: the **best guess**, used only when the vendor reports no usage at all (a stream abandoned
  before its usage event), and flagged ``usage_estimated``.

How each is computed (the method and its measured accuracy are in ``docs/concepts/estimates.md``):

* **OpenAI**: the exact count with OpenAI's own tokenizer (tiktoken's ``o200k_base`` or
  ``cl100k_base`` byte-pair encoding, chosen by model), plus OpenAI's documented chat framing
  (3 tokens per message and 3 priming the reply) and a small fixed margin.
* **Anthropic**: Claude's tokenizer is not public. The bound weighs each ``o200k_base`` token of the
  text (:func:`_weight`): its byte length for whitespace and runs of one repeated byte, 2 for a
  1-byte token, 3 otherwise; calibrated against a reconstruction of Claude's counts (benchmark
  corpus, random and adversarial strings). The point estimate is the ``o200k_base`` count times
  the measured median ratio for the model's tokenizer generation.
* **Images, audio, files**: the vendors' published per-image maxima, and size-based bounds for
  audio and documents. Tool definitions count as input (their JSON), plus the vendors' tool
  preambles.
* **Offline**: the two BPE files ship inside the package (``tokenguard/_encodings``, byte-identical
  to the files tiktoken downloads: checked against the SHA-256 that tiktoken pins). Nothing is
  ever downloaded and no network call is made. An encoding is loaded once, on first use or by
  :func:`preload` (the Guard calls it from a background thread; a load takes ~0.3 s), and shared by
  all threads. Long texts are counted in chunks (bounded cost, no pathological regex cases) and
  their counts cached by hash, so a repeated system prompt or tool list is not counted again.
* **Without tiktoken** (or if an encoding cannot be loaded) the bound falls back to the UTF-8 byte
  length, which no byte-level BPE can exceed (twice that for Claude), with a warning once.

``import tokenguard`` does not import tiktoken; this module imports only the standard library until
an encoding is first needed.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import logging
import math
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from operator import itemgetter
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DEFAULT_MAX_OUTPUT_TOKENS",
    "PER_MESSAGE_TOKENS",
    "InputEstimate",
    "count_tokens",
    "encoding",
    "encoding_for",
    "estimate_input",
    "estimate_request",
    "image_bound",
    "preload",
]

log = logging.getLogger("tokenguard")

PER_MESSAGE_TOKENS = 8
"""Allowance per message in a bound: role markers and separators (OpenAI uses 3 + 1 for the role)."""

DEFAULT_MAX_OUTPUT_TOKENS = 32_768
"""The output bound used when a request sets no maximum and the model's limit is unknown."""

OPENAI_REPLY_PRIMING = 3
"""OpenAI primes every reply with ``<|start|>assistant<|message|>`` (3 tokens)."""

OPENAI_REQUEST_MARGIN = 8
"""Fixed slack in an OpenAI chat bound, for framing the published formula does not show."""

OPENAI_TOOLS_BASE = 32
OPENAI_TOOL_EACH = 8
"""Tool definitions: their JSON is counted (OpenAI renders them more compactly, as TypeScript-like
declarations), plus a preamble and an allowance per tool."""

ANTHROPIC_REQUEST_FRAME = 24
ANTHROPIC_PER_MESSAGE = 10
ANTHROPIC_PER_BLOCK = 2
"""A Claude request's framing: a single user message costs 6-12 tokens beyond its text (measured
frames of the Claude 3 - Opus 4.6, Opus 4.7 and 4.8 tokenizers); these allowances are larger."""

ANTHROPIC_TOOLS_PREAMBLE = 600
"""The tool-use system prompt Anthropic adds when ``tools`` are present (its documented sizes are
159-530 tokens, depending on model and ``tool_choice``)."""

ANTHROPIC_SERVER_TOOL = 1_500
"""Each Anthropic-defined tool (``bash``, ``text_editor``, ``computer``, ``web_search``, ...): its
documented system prompt and definition cost up to ~1,250 tokens (computer use: 499 + 735)."""

AUDIO_BASE64_CHARS_PER_TOKEN = 8
"""Audio input: at most one token per 8 base64 characters (6 bytes of encoded audio). Audio tokens
come at ~10 per second; the lowest-bitrate formats accepted use >= 1,000 bytes per second."""

_CHUNK_CHARS = 8_192
"""Texts longer than this are counted in chunks cut at whitespace: linear cost, and no pathological
regex case (tiktoken's pre-tokenizer overflows its stack on ~1 MB of one whitespace run)."""

_CACHE_MIN_CHARS = 512
_OPAQUE_JSON_CHARS = 65_536
"""A structured part (not a plain text) whose JSON is longer than this is bounded by its bytes rather
than tokenized: unknown media (base64) would otherwise cost ~0.1 s per megabyte to count."""
_CACHE_ENTRIES = 4_096


@dataclass(frozen=True, slots=True)
class InputEstimate:
    """The input tokens a request can use: ``bound`` (reserve this) and ``point`` (best guess)."""

    bound: int
    point: int
    method: str = "bytes"
    """How the text was counted: ``tiktoken:<encoding>``, ``claude:o200k-weighted`` or ``bytes``."""
    uncounted: tuple[str, ...] = ()
    """Request parts whose tokens cannot be known locally (e.g. ``previous_response_id``, a file
    referenced by id, server-side tool results); the bound does not include them."""


# ------------------------------------------------------------------------------------------------
# Encodings: vendored BPE files, loaded once
# ------------------------------------------------------------------------------------------------


class _Encoder(Protocol):
    def encode_ordinary(self, text: str) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class _Spec:
    file: str
    sha256: str
    pat_str: str
    special_tokens: Mapping[str, int]


_O200K_PAT = "|".join(
    [
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?""",
        r"""\p{N}{1,3}""",
        r""" ?[^\s\p{L}\p{N}]+[\r\n/]*""",
        r"""\s*[\r\n]+""",
        r"""\s+(?!\S)""",
        r"""\s+""",
    ]
)
_CL100K_PAT = (
    r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+"""
    r"""|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
)

# The pattern, special tokens and SHA-256 are tiktoken's own (tiktoken_ext/openai_public.py): the
# vendored files are byte-identical to the ones tiktoken would download.
_SPECS: dict[str, _Spec] = {
    "o200k_base": _Spec(
        "o200k_base.tiktoken.gz",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
        _O200K_PAT,
        {"<|endoftext|>": 199999, "<|endofprompt|>": 200018},
    ),
    "cl100k_base": _Spec(
        "cl100k_base.tiktoken.gz",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
        _CL100K_PAT,
        {
            "<|endoftext|>": 100257,
            "<|fim_prefix|>": 100258,
            "<|fim_middle|>": 100259,
            "<|fim_suffix|>": 100260,
            "<|endofprompt|>": 100276,
        },
    ),
}

ENCODINGS_DIR = Path(__file__).with_name("_encodings")

_load_lock = threading.Lock()
_encoders: dict[str, _Encoder] = {}
_failed: dict[str, str] = {}
_claude_weights: bytes = b""
"""Per ``o200k_base`` token id, its weight in a Claude bound (see :func:`_weight`)."""


def _weight(token: bytes) -> int:
    """The Claude tokens one ``o200k_base`` token can need, by the calibrated rule.

    Whitespace (``"\\n    "``, ``"\\t\\n"``) and runs of one repeated byte (``"-----"``, ``"aaaa"``) are one
    o200k token but can be one Claude token per byte: their byte length. Anything else: at most 3,
    and at most 2 per byte (Claude spends a token on a case or word marker next to a 1-byte
    character: ``"Z!"`` can cost 3 tokens)."""
    n = len(token)
    if n >= 2 and (token.count(token[:1]) == n or token.isspace()):
        return n
    return min(2 * n, 3)


def _weight_table(ranks: Mapping[bytes, int]) -> bytes:
    """:func:`_weight` of every token, indexed by rank (the same rule, unrolled: ~3x faster)."""
    table = bytearray(b"\x03") * (max(ranks.values()) + 1)
    for token, rank in ranks.items():
        n = len(token)
        if n < 2:
            table[rank] = 2 * n
        elif token.isspace() or token == token[:1] * n:
            table[rank] = n
    return bytes(table)


def _read_ranks(spec: _Spec) -> dict[bytes, int]:
    import binascii
    import gzip

    data = gzip.decompress((ENCODINGS_DIR / spec.file).read_bytes())
    digest = hashlib.sha256(data).hexdigest()
    if digest != spec.sha256:
        raise ValueError(f"{spec.file} is corrupt (SHA-256 {digest}, expected {spec.sha256})")
    ranks: dict[bytes, int] = {}
    decode = binascii.a2b_base64
    for line in data.splitlines():
        if line:
            token, _, rank = line.partition(b" ")
            ranks[decode(token)] = int(rank)
    return ranks


def _build(name: str) -> _Encoder:
    global _claude_weights
    spec = _SPECS[name]
    tiktoken = importlib.import_module("tiktoken")
    ranks = _read_ranks(spec)
    if name == "o200k_base":
        _claude_weights = _weight_table(ranks)
    encoder: _Encoder = tiktoken.Encoding(
        name=name, pat_str=spec.pat_str, mergeable_ranks=ranks, special_tokens=dict(spec.special_tokens)
    )
    # The Rust core holds its own copy; the Encoding keeps this dict only to be pickled. Emptying it
    # frees ~35 MB (o200k_base) for the life of the process.
    ranks.clear()
    return encoder


def _encoder(name: str) -> _Encoder | None:
    """The loaded encoding ``name``, loading it now (once, for all threads) if needed; ``None`` if
    it cannot be loaded (tiktoken missing, file damaged): the caller falls back to bytes."""
    encoder = _encoders.get(name)
    if encoder is not None or name in _failed:
        return encoder
    with _load_lock:
        encoder = _encoders.get(name)
        if encoder is not None or name in _failed:
            return encoder
        try:
            encoder = _build(name)
        except Exception as exc:
            _failed[name] = f"{type(exc).__name__}: {exc}"
            log.warning(
                "tokenguard cannot load the %s token encoding (%s); input estimates fall back to the UTF-8 "
                "byte bound, which is safe but several times too high. Install tiktoken to count tokens.",
                name,
                _failed[name],
            )
            return None
        _encoders[name] = encoder
        return encoder


def preload(encodings: Iterable[str] = ("o200k_base",)) -> bool:
    """Load token encodings now (``o200k_base`` by default: it serves GPT-4o and later and the Claude
    bound), so the first estimate does not wait ~0.3 s. Safe from any thread, idempotent, never
    raises; returns whether all of them are available. ``cl100k_base`` (GPT-4, GPT-3.5, embeddings)
    loads on first use unless named here."""
    ok = True
    for name in encodings:
        if name not in _SPECS:
            raise ValueError(f"unknown encoding {name!r}; tokenguard ships {sorted(_SPECS)}")
        ok = _encoder(name) is not None and ok
    return ok


def encoding(name: str) -> Any:
    """The ``tiktoken.Encoding`` ``name`` (``"o200k_base"`` or ``"cl100k_base"``), from the vendored
    file. Raises ``RuntimeError`` if it cannot be loaded (e.g. tiktoken is not installed)."""
    if name not in _SPECS:
        raise ValueError(f"unknown encoding {name!r}; tokenguard ships {sorted(_SPECS)}")
    encoder = _encoder(name)
    if encoder is None:
        raise RuntimeError(f"the {name} encoding is unavailable: {_failed.get(name)}")
    return encoder


@functools.lru_cache(maxsize=512)
def encoding_for(provider: str, model: str) -> str | None:
    """The tiktoken encoding OpenAI uses for ``model``; ``None`` for other providers and for model
    names tokenguard does not recognise (e.g. an Azure deployment name)."""
    if provider != "openai":
        return None
    m = model.lower().removeprefix("ft:").removeprefix("openai/")
    if m.startswith(
        ("gpt-4o", "chatgpt-4o", "gpt-4.1", "gpt-4.5", "gpt-5", "gpt-oss", "o1", "o3", "o4", "codex", "computer-use")
    ):
        return "o200k_base"
    if m.startswith(("gpt-4", "gpt-3.5", "gpt-35", "text-embedding-", "davinci-002", "babbage-002")):
        return "cl100k_base"
    return None


# ------------------------------------------------------------------------------------------------
# Counting a text
# ------------------------------------------------------------------------------------------------


def _utf8_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8", "surrogatepass"))


def _chunks(text: str) -> Iterator[str]:
    start, n = 0, len(text)
    while n - start > _CHUNK_CHARS:
        end = start + _CHUNK_CHARS
        cut = max(text.rfind(" ", end - 512, end), text.rfind("\n", end - 512, end))
        if cut <= start:
            cut = end
        yield text[start:cut]
        start = cut
    yield text[start:]


_cache: OrderedDict[tuple[str, bool, int, int], tuple[int, int, int]] = OrderedDict()
_cache_lock = threading.Lock()


def _measure(name: str, encoder: _Encoder, text: str, weighted: bool) -> tuple[int, int, int]:
    """``(count, weight, cuts)`` of ``text``: its token count, the sum of the Claude weights of its
    tokens (``weighted``; else the count again) and how many chunk boundaries were added."""
    key = None
    if len(text) >= _CACHE_MIN_CHARS:
        # The text's own (keyed, 64-bit) hash and length: O(1) for a string seen before, and the cache
        # holds no prompt text. A collision between two live entries is ~1e-15 per lookup.
        key = (name, weighted, len(text), hash(text))
        with _cache_lock:
            hit = _cache.get(key)
            if hit is not None:
                _cache.move_to_end(key)
                return hit
    count = weight = cuts = 0
    weights = _claude_weights
    try:
        # Most texts fit in one chunk: skip the chunking generator for them.
        for piece in (text,) if len(text) <= _CHUNK_CHARS else _chunks(text):
            ids = encoder.encode_ordinary(piece)
            count += len(ids)
            if weighted and ids:
                weight += sum(itemgetter(*ids)(weights)) if len(ids) > 1 else weights[ids[0]]
            cuts += 1
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException:  # tiktoken's Rust core can panic (PanicException is a BaseException)
        log.debug("tokenguard could not tokenize a text; it is bounded by its bytes", exc_info=True)
        n = _utf8_len(text)
        return n, 2 * n, 0
    result = (count, weight if weighted else count, cuts - 1)
    if key is not None:
        with _cache_lock:
            _cache[key] = result
            if len(_cache) > _CACHE_ENTRIES:
                _cache.popitem(last=False)
    return result


def count_tokens(text: str, encoding_name: str = "o200k_base") -> int:
    """The exact number of tokens of ``text`` in ``encoding_name`` (no message framing)."""
    encoder = encoding(encoding_name)
    return _measure(encoding_name, encoder, text, False)[0] if text else 0


# ------------------------------------------------------------------------------------------------
# Images and other media
# ------------------------------------------------------------------------------------------------

_CLAUDE_VERSION = re.compile(r"claude-(?:(?:opus|sonnet|haiku)-)?(\d+)(?:[.-](\d{1,2}))?(?!\d)")


def _claude_version(model: str) -> tuple[int, int] | None:
    match = _CLAUDE_VERSION.search(model.lower())
    if match is None:
        return None
    return int(match[1]), int(match[2] or 0)


@functools.lru_cache(maxsize=512)
def _claude_legacy(model: str) -> bool:
    """Claude 3 - Opus 4.6: the older tokenizer and the 1568-px image limit. Unknown names count as
    newer (the more expensive assumptions)."""
    version = _claude_version(model)
    return version is not None and version < (4, 7)


# OpenAI, by model prefix (first match wins; a prefix ending in "-" also matches the bare name).
# Tile models: 85/75/70 base tokens + 170/150/140 per 512-px tile, at most 8 tiles (fit in 2048 px,
# short side 768 px); low detail is the base alone. Patch models: 32-px patches, capped at 1,536,
# times a per-model multiplier. gpt-4o-mini prices images as 2,833 + 5,667 per tile.
_OPENAI_IMAGE: tuple[tuple[str, int, int], ...] = (
    # (prefix, low detail, high or auto detail)
    ("gpt-4o-mini", 2_833, 2_833 + 8 * 5_667),
    ("gpt-4.1-nano", 3_779, 3_779),
    ("gpt-4.1-mini", 2_489, 2_489),
    ("gpt-5-nano", 3_779, 3_779),
    ("gpt-5-mini", 2_489, 2_489),
    ("o4-mini", 2_642, 2_642),
    ("gpt-4o", 85, 85 + 8 * 170),
    ("chatgpt-4o", 85, 85 + 8 * 170),
    ("gpt-4.1", 85, 85 + 8 * 170),
    ("gpt-4.5", 85, 85 + 8 * 170),
    ("gpt-4-turbo", 85, 85 + 8 * 170),
    ("gpt-4-vision", 85, 85 + 8 * 170),
    ("o1", 75, 75 + 8 * 150),
    ("o3", 75, 75 + 8 * 150),
    ("gpt-5-", 70, 70 + 8 * 140),
    ("gpt-5.1-", 70, 70 + 8 * 140),
    ("gpt-5.2-", 1_536, 1_536),
    ("gpt-5.3-", 1_536, 1_536),
)
_OPENAI_PATCH_BUDGET = 2_500
"""Patches per image for OpenAI models not in the table (GPT-5.4 and later use 2,500)."""
_OPENAI_ORIGINAL_PATCHES = 10_000
"""``detail="original"`` (GPT-5.4 and later): up to 10,000 patches."""


def _openai_multiplier(model: str) -> int:
    """The image-token multiplier of an OpenAI model, in hundredths."""
    if "nano" in model:
        return 246
    if model.startswith("o4-mini"):
        return 172
    if "mini" in model:
        return 162
    return 100


def image_bound(provider: str, model: str, detail: str | None = None) -> int:
    """The most input tokens one image can cost, by the vendor's published formula (the image's
    size is not read: this is the maximum over all sizes).

    Anthropic: ``ceil(w/28) * ceil(h/28)`` visual tokens after resizing to the model's limit, so at
    most ~1,600 before Opus 4.7 and 4,784 from Opus 4.7 on (unknown models: the latter).
    OpenAI: by model (``_OPENAI_IMAGE``); ``detail="low"`` is the fixed cost of tile models,
    ``detail="original"`` up to 10,000 patches; models not in the table (and mini/nano variants of
    listed ones): 2,500 patches times the multiplier their name implies. Other providers: the
    largest of these."""
    if provider == "anthropic":
        return 1_600 if _claude_legacy(model) else 4_800
    m = model.lower().removeprefix("ft:").removeprefix("openai/")
    multiplier = _openai_multiplier(m) if provider == "openai" else 246
    if detail == "original":
        return -(-_OPENAI_ORIGINAL_PATCHES * multiplier // 100)
    if provider == "openai":
        for prefix, low, high in _OPENAI_IMAGE:
            if (m + "-").startswith(prefix) if prefix.endswith("-") else m.startswith(prefix):
                rest = m[len(prefix) :]
                if "mini" in rest or "nano" in rest:
                    break  # a variant the prefix does not describe, e.g. gpt-5.1-codex-mini
                return low if detail == "low" else high
    return -(-_OPENAI_PATCH_BUDGET * multiplier // 100)


_PDF_PAGE = re.compile(rb"/Type\s*/Page(?![A-Za-z])")


def _document_bound(data: str, per_page: int) -> int:
    """A base64 PDF: its base64 length (assumed >= the tokens of its extracted text) plus one image
    per page (vendors send each page's text and an image of it)."""
    import binascii

    try:
        pages = len(_PDF_PAGE.findall(binascii.a2b_base64(data)))
    except (binascii.Error, ValueError):
        pages = 0
    return _utf8_len(data) + max(pages, 1) * per_page + 64


def _data_url_payload(url: Any) -> str:
    if isinstance(url, str) and url.startswith("data:"):
        return url.partition(",")[2]
    return ""


# ------------------------------------------------------------------------------------------------
# Walking a request body
# ------------------------------------------------------------------------------------------------


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _seq(value: Any) -> tuple[Any, ...] | list[Any]:
    if isinstance(value, (list, tuple)):
        return value
    return ()


class _Parts:
    """What a request contains, in the units it is counted in."""

    __slots__ = (
        "extra_bound",
        "extra_point",
        "messages",
        "model",
        "provider",
        "server_tools",
        "texts",
        "tools",
        "uncounted",
    )

    def __init__(self, provider: str, model: str) -> None:
        self.provider = provider
        self.model = model
        self.texts: list[str] = []
        self.messages = 0
        self.tools = 0
        self.server_tools = 0
        self.extra_bound = 0
        self.extra_point = 0
        self.uncounted: list[str] = []

    def text(self, value: Any) -> None:
        if isinstance(value, str):
            if value:
                self.texts.append(value)
        elif value is None or isinstance(value, bool):
            return
        elif isinstance(value, (int, float)):
            self.texts.append(str(value))
        else:
            text = _json(value)
            if len(text) > _OPAQUE_JSON_CHARS:  # e.g. media of a kind tokenguard does not know
                self.opaque(text, 2 if self.provider == "anthropic" else 1)
            else:
                self.texts.append(text)

    def add(self, bound: int, point: int) -> None:
        self.extra_bound += bound
        self.extra_point += point

    def image(self, detail: Any = None) -> None:
        n = image_bound(self.provider, self.model, detail if isinstance(detail, str) else None)
        self.add(n, n)

    def opaque(self, data: Any, per_byte: int = 1) -> None:
        """Encrypted or encoded content, bounded by its size (``per_byte`` tokens per UTF-8 byte)
        instead of being tokenized."""
        n = _utf8_len(data) if isinstance(data, str) else _utf8_len(_json(data))
        self.add(per_byte * n, -(-n // 4))

    def missing(self, what: str) -> None:
        if what not in self.uncounted:
            self.uncounted.append(what)


def _openai_content(value: Any, p: _Parts) -> None:
    if not isinstance(value, (list, tuple)):
        p.text(value)
        return
    for part in value:
        if not isinstance(part, Mapping):
            p.text(part)
            continue
        kind = part.get("type")
        if kind in ("text", "input_text", "output_text"):
            p.text(part.get("text"))
        elif kind == "refusal":
            p.text(part.get("refusal"))
        elif kind == "image_url":
            image = part.get("image_url")
            p.image(image.get("detail") if isinstance(image, Mapping) else None)
        elif kind in ("input_image", "computer_screenshot"):
            p.image(part.get("detail"))
        elif kind == "input_audio":
            audio = part.get("input_audio")
            data = audio.get("data") if isinstance(audio, Mapping) else None
            n = -(-_utf8_len(data) // AUDIO_BASE64_CHARS_PER_TOKEN) if isinstance(data, str) else 0
            p.add(n + 16, n // 10 + 16)
        elif kind in ("file", "input_file"):
            _openai_file(part.get("file") if kind == "file" else part, p)
        else:
            p.text(part)


def _openai_file(file: Any, p: _Parts) -> None:
    if not isinstance(file, Mapping):
        return
    p.text(file.get("filename"))
    data = file.get("file_data")
    payload = _data_url_payload(data) or (data if isinstance(data, str) else "")
    if payload:
        n = _document_bound(payload, image_bound(p.provider, p.model))
        p.add(n, n // 4)
    else:
        p.missing("file referenced by id or URL")


def _openai_tools(body: Mapping[str, Any], p: _Parts) -> None:
    tools = [*_seq(body.get("tools")), *_seq(body.get("functions"))]
    if not tools:
        return
    for tool in tools:
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind not in (None, "function", "custom"):
            p.server_tools += 1
            if kind in (
                "web_search",
                "web_search_preview",
                "file_search",
                "code_interpreter",
                "mcp",
                "computer_use_preview",
            ):
                p.missing(f"results of the {kind} tool")
        p.tools += 1
    p.text(tools)


def _walk_openai_chat(body: Mapping[str, Any], p: _Parts) -> None:
    for message in _seq(body.get("messages")):
        p.messages += 1
        if not isinstance(message, Mapping):
            p.text(message)
            continue
        for key, value in message.items():
            if key == "role":
                continue
            if key == "content":
                _openai_content(value, p)
            elif key == "audio" and isinstance(value, Mapping) and "data" not in value:
                p.missing("audio referenced by id")
            else:  # name, tool_calls, tool_call_id, function_call, refusal, ...
                p.text(value)
    _openai_tools(body, p)
    for key in ("tool_choice", "response_format", "prediction"):
        if isinstance(body.get(key), Mapping):
            p.text(body[key])


def _walk_responses_item(item: Any, p: _Parts) -> None:
    if not isinstance(item, Mapping):
        p.messages += 1
        p.text(item)
        return
    kind = item.get("type")
    p.messages += 1
    if kind == "message" or (kind is None and "role" in item):
        _openai_content(item.get("content"), p)
    elif kind == "function_call":
        p.text(item.get("name"))
        p.text(item.get("arguments"))
    elif kind in ("function_call_output", "custom_tool_call_output"):
        _openai_content(item.get("output"), p)
    elif kind == "computer_call_output":
        p.image(None)
    elif kind == "reasoning":
        for summary in _seq(item.get("summary")):
            p.text(summary.get("text") if isinstance(summary, Mapping) else summary)
        if item.get("encrypted_content"):
            p.opaque(item["encrypted_content"])
    elif kind == "item_reference":
        p.missing("item_reference")
    else:
        p.text({k: v for k, v in item.items() if k not in ("id", "status")})


def _walk_responses(body: Mapping[str, Any], p: _Parts) -> None:
    p.text(body.get("instructions"))
    value = body.get("input")
    if isinstance(value, str):
        p.messages += 1
        p.text(value)
    else:
        for item in _seq(value):
            _walk_responses_item(item, p)
    _openai_tools(body, p)
    if isinstance(body.get("tool_choice"), Mapping):
        p.text(body["tool_choice"])
    text = body.get("text")
    if isinstance(text, Mapping) and isinstance(text.get("format"), Mapping):
        p.text(text["format"])
    for key in ("previous_response_id", "conversation"):
        if body.get(key):
            p.missing(key)
    prompt = body.get("prompt")
    if isinstance(prompt, Mapping):
        p.missing("prompt template")
        p.text(prompt.get("variables"))


def _walk_embeddings(body: Mapping[str, Any], p: _Parts) -> None:
    value = body.get("input")
    items = [value] if isinstance(value, str) else _seq(value)
    if items and all(isinstance(v, int) for v in items):
        p.add(len(items), len(items))  # one input given as token ids
        return
    for item in items:
        if isinstance(item, str):
            p.text(item)
        elif isinstance(item, (list, tuple)):
            p.add(len(item), len(item))
        else:
            p.text(item)


def _anthropic_blocks(value: Any, p: _Parts) -> None:
    if not isinstance(value, (list, tuple)):
        p.text(value)
        return
    for block in value:
        if not isinstance(block, Mapping):
            p.text(block)
            continue
        kind = block.get("type")
        if kind == "text":
            p.text(block.get("text"))
        elif kind == "image":
            p.image()
        elif kind == "document":
            _anthropic_document(block, p)
        elif kind in ("tool_use", "server_tool_use", "mcp_tool_use"):
            p.text(block.get("name"))
            p.text(block.get("input"))
        elif kind in ("tool_result", "mcp_tool_result"):
            _anthropic_blocks(block.get("content"), p)
        elif kind == "thinking":
            p.text(block.get("thinking"))
        elif kind == "redacted_thinking":
            p.opaque(block.get("data", ""))
        elif kind == "search_result":
            p.text(block.get("title"))
            p.text(block.get("source"))
            _anthropic_blocks(block.get("content"), p)
        elif kind == "container_upload":
            p.missing("container_upload")
        elif kind is not None and kind.endswith("_tool_result"):
            p.opaque(block.get("content"))  # web search / fetch / code execution results
        else:
            p.text(block)


def _anthropic_document(block: Mapping[str, Any], p: _Parts) -> None:
    p.text(block.get("title"))
    p.text(block.get("context"))
    source = block.get("source")
    if not isinstance(source, Mapping):
        p.missing("document")
        return
    kind = source.get("type")
    if kind == "text":
        p.text(source.get("data"))
    elif kind == "content":
        _anthropic_blocks(source.get("content"), p)
    elif kind == "base64" and isinstance(source.get("data"), str):
        n = _document_bound(source["data"], image_bound(p.provider, p.model))
        p.add(n, n // 4)
    else:
        p.missing("document referenced by URL or file id")


def _walk_anthropic(body: Mapping[str, Any], p: _Parts) -> None:
    system = body.get("system")
    if system:
        p.messages += 1
        _anthropic_blocks(system, p)
    for message in _seq(body.get("messages")):
        p.messages += 1
        if isinstance(message, Mapping):
            _anthropic_blocks(message.get("content"), p)
        else:
            p.text(message)
    tools = _seq(body.get("tools"))
    for tool in tools:
        p.tools += 1
        kind = tool.get("type") if isinstance(tool, Mapping) else None
        if kind not in (None, "custom") and not (isinstance(tool, Mapping) and "input_schema" in tool):
            p.server_tools += 1
            if isinstance(kind, str) and kind.startswith(("web_search", "web_fetch", "code_execution", "tool_search")):
                p.missing(f"results of the {kind} tool")
    if tools:
        p.text(list(tools))
    if isinstance(body.get("tool_choice"), Mapping):
        p.text(body["tool_choice"])
    for key in ("output_format", "output_config"):
        if isinstance(body.get(key), Mapping):
            p.text(body[key])
    if body.get("mcp_servers"):
        p.missing("tools of the MCP servers")


# ------------------------------------------------------------------------------------------------
# From parts to an estimate
# ------------------------------------------------------------------------------------------------


CLAUDE_POINT_FACTOR_LEGACY = 1.15
"""Claude 3 - Opus 4.6: median Claude / o200k token ratio on the benchmark corpus."""
CLAUDE_POINT_FACTOR = 1.4
"""Opus 4.7 and later (and unknown Claude models): the same median for the newer tokenizer."""


def _count_texts(texts: list[str], names: tuple[str, ...], weighted: bool) -> tuple[int, int, int, str] | None:
    """``(count, weight, cuts, method)`` over ``texts`` with the first-loaded of ``names`` (for an
    unknown OpenAI model: the larger count of both encodings); ``None`` if none can be loaded."""
    results: list[tuple[int, int, int]] = []
    used: list[str] = []
    for name in names:
        encoder = _encoder(name)
        if encoder is None:
            return None
        count = weight = cuts = 0
        for text in texts:
            c, w, k = _measure(name, encoder, text, weighted)
            count += c
            weight += w
            cuts += k
        results.append((count, weight, cuts))
        used.append(name)
    count, weight, cuts = max(results)
    return count, weight, cuts, "tiktoken:" + "+".join(used)


def _finish(p: _Parts, api: str) -> InputEstimate:
    texts = p.texts
    uncounted = tuple(p.uncounted)
    utf8 = 0
    counted: tuple[int, int, int, str] | None = None
    if p.provider == "anthropic":
        names: tuple[str, ...] = ("o200k_base",)
        frame = ANTHROPIC_REQUEST_FRAME + ANTHROPIC_PER_MESSAGE * p.messages + ANTHROPIC_PER_BLOCK * len(texts)
        legacy = _claude_legacy(p.model)
        point_frame = (8 if legacy else 12) + 4 * max(p.messages - 1, 0)
        if p.tools:
            frame += ANTHROPIC_TOOLS_PREAMBLE + ANTHROPIC_SERVER_TOOL * p.server_tools
            point_frame += 350 + 700 * p.server_tools
        counted = _count_texts(texts, names, True) if texts else (0, 0, 0, "claude:o200k-weighted")
        if counted is None:  # no tokenizer: a Claude token needs at least half a byte (see _weight)
            utf8 = sum(map(_utf8_len, texts))
            return InputEstimate(2 * utf8 + frame + p.extra_bound, -(-utf8 // 4) + point_frame + p.extra_point)
        count, weight, cuts, _ = counted
        factor = CLAUDE_POINT_FACTOR_LEGACY if legacy else CLAUDE_POINT_FACTOR
        return InputEstimate(
            weight + cuts + frame + p.extra_bound,
            math.ceil(count * factor) + point_frame + p.extra_point,
            "claude:o200k-weighted",
            uncounted,
        )

    frame = point_frame = 0
    if api != "embeddings":
        frame = PER_MESSAGE_TOKENS * p.messages + OPENAI_REPLY_PRIMING + OPENAI_REQUEST_MARGIN
        point_frame = 4 * p.messages + OPENAI_REPLY_PRIMING
        if p.tools:
            frame += OPENAI_TOOLS_BASE + OPENAI_TOOL_EACH * p.tools
            point_frame += 10
    if p.provider == "openai":
        name = encoding_for(p.provider, p.model)
        names = (name,) if name else ("o200k_base", "cl100k_base")
        counted = _count_texts(texts, names, False) if texts else (0, 0, 0, "tiktoken:" + "+".join(names))
    if counted is None:  # no tokenizer (or not an OpenAI model): no byte-level BPE token is shorter than a byte
        utf8 = sum(map(_utf8_len, texts))
        return InputEstimate(
            utf8 + len(texts) + frame + p.extra_bound, -(-utf8 // 4) + point_frame + p.extra_point, "bytes", uncounted
        )
    count, _, cuts, method = counted
    return InputEstimate(
        count + cuts + len(texts) + frame + p.extra_bound, count + point_frame + p.extra_point, method, uncounted
    )


def estimate_request(provider: str, api: str, model: str, body: Mapping[str, Any]) -> InputEstimate:
    """Estimate the input tokens of one request: ``provider`` (``"openai"``/``"anthropic"``), its
    ``api`` (``"chat.completions"``, ``"responses"``, ``"embeddings"``, ``"messages"``), the model
    and the JSON body about to be sent. Loads the encoding on first use (see :func:`preload`);
    never makes a network call; never raises for a malformed body (the odd part is counted as its
    JSON)."""
    p = _Parts(provider, model)
    if provider == "anthropic":
        _walk_anthropic(body, p)
    elif api == "embeddings":
        _walk_embeddings(body, p)
    elif api == "responses":
        _walk_responses(body, p)
    elif api == "chat.completions" or "messages" in body:
        _walk_openai_chat(body, p)
    else:  # an endpoint tokenguard does not know: every byte of the body may be input
        p.text({k: v for k, v in body.items() if k != "model"})
        p.messages = 1
    return _finish(p, api)


def estimate_input(
    texts: Iterable[str], messages: int, *, provider: str | None = None, model: str | None = None
) -> InputEstimate:
    """Estimate the input tokens of ``texts`` sent in ``messages`` messages.

    Without ``provider`` (the original behaviour): UTF-8 bytes + 8 per message as the bound and
    ``chars / 4`` as the point estimate, no tokenizer. With ``provider`` and ``model`` the texts are
    counted as :func:`estimate_request` counts them (images and other non-text parts are not seen:
    prefer :func:`estimate_request`)."""
    if provider is None or model is None:
        chars = 0
        utf8 = 0
        for text in texts:
            chars += len(text)
            utf8 += _utf8_len(text)
        overhead = PER_MESSAGE_TOKENS * max(messages, 1)
        return InputEstimate(bound=utf8 + overhead, point=-(-chars // 4) + overhead)
    p = _Parts(provider, model)
    p.texts = [t for t in texts if t]
    p.messages = max(messages, 1)
    return _finish(p, "chat.completions")
