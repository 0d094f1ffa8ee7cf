"""Pre-call token estimation (step 4): how many input tokens a request can use, before it is sent.

Two numbers per request:

* an **upper bound**, used to reserve budget: the UTF-8 byte length of every text in the request,
  plus a per-message allowance. Byte-level BPE tokenizers (OpenAI's, Anthropic's) never produce
  more tokens than bytes, so this bound holds for any text; it overestimates English prose ~4x.
* a **point estimate** (about 4 characters per token), used only when the vendor reports no
  usage at all (a stream abandoned before its usage event), and flagged ``usage_estimated``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

__all__ = ["InputEstimate", "estimate_input"]

PER_MESSAGE_TOKENS = 8
"""Role markers and separators a vendor adds around each message (OpenAI adds 3-4)."""

DEFAULT_MAX_OUTPUT_TOKENS = 32_768
"""The output bound used when a request sets no maximum and the model's limit is unknown."""


@dataclass(frozen=True, slots=True)
class InputEstimate:
    bound: int
    point: int


def estimate_input(texts: Iterable[str], messages: int) -> InputEstimate:
    """Estimate the input tokens of a request whose texts are ``texts`` in ``messages`` messages."""
    chars = 0
    utf8 = 0
    for text in texts:
        n = len(text)
        chars += n
        # ASCII text is one byte per character; only encode what may be wider.
        utf8 += n if text.isascii() else len(text.encode("utf-8"))
    overhead = PER_MESSAGE_TOKENS * max(messages, 1)
    return InputEstimate(bound=utf8 + overhead, point=-(-chars // 4) + overhead)
