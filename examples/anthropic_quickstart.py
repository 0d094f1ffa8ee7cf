"""Wrap the official Anthropic client: messages, the streaming helper, prompt caching.

Shows how Anthropic's usage convention (``input_tokens`` without the cache parts) becomes the
ledger's OpenTelemetry convention (input *includes* cache reads and writes), and what a cached
call costs. Offline: the real ``anthropic`` SDK talks to tokenguard's fake server on 127.0.0.1.

    python examples/anthropic_quickstart.py
"""

from __future__ import annotations

from decimal import Decimal

from anthropic import Anthropic

import tokenguard as tg
from tokenguard.testing import FakeLLMServer, FakeUsage

MODEL = "claude-haiku-4-5"


def usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:.8f}"


def main() -> None:
    with FakeLLMServer() as server:
        guard = tg.Guard()
        claude = guard.wrap(Anthropic(base_url=server.anthropic_base_url, api_key="offline", max_retries=0))

        with tg.tags(team="sales", app="crm", user="rep-7"):
            message = claude.messages.create(
                model=MODEL,
                max_tokens=30,
                system="You write short, friendly sales emails.",
                messages=[{"role": "user", "content": "Follow up on yesterday's demo."}],
            )
            print("reply:", message.content[0].text)

            with claude.messages.stream(
                model=MODEL, max_tokens=12, messages=[{"role": "user", "content": "Give me a subject line."}]
            ) as stream:
                print("streamed:", "".join(stream.text_stream))

            # A long system prompt served from the prompt cache: the fake server reports the usage
            # Anthropic would (input_tokens=2,000 uncached, 30,000 read from the cache, 8,000 written).
            server.set_usage(
                FakeUsage(input_tokens=40_000, output_tokens=400, cache_read_tokens=30_000, cache_write_tokens=8_000)
            )
            cached_reply = claude.messages.create(
                model=MODEL, max_tokens=400, messages=[{"role": "user", "content": "Next email."}]
            )
            u = cached_reply.usage
            print(
                f"\nAnthropic's usage for the cached call: input_tokens={u.input_tokens} "
                f"cache_read_input_tokens={u.cache_read_input_tokens} "
                f"cache_creation_input_tokens={u.cache_creation_input_tokens} output_tokens={u.output_tokens}"
            )

    print("\nThe ledger (input includes cache reads and writes, the OpenTelemetry convention):")
    print(f"{'stream':<7} {'in':>6} {'cache r':>8} {'cache w':>8} {'out':>5} {'status':<7} cost")
    for r in guard.records():
        print(
            f"{r.stream!s:<7} {r.input_tokens:>6} {r.cache_read_tokens:>8} {r.cache_write_tokens:>8} "
            f"{r.output_tokens:>5} {r.status:<7} {usd(r.cost_usd)}"
        )

    cached = list(guard.records())[-1]
    uncached = cached.input_tokens - cached.cache_read_tokens - cached.cache_write_tokens
    print(
        f"\nthe cached call in the ledger: input_tokens={cached.input_tokens} = {uncached} uncached "
        f"+ {cached.cache_read_tokens} read + {cached.cache_write_tokens} written; each part at its own "
        f"price: {usd(cached.cost_usd)}"
    )
    print(f"spend of team sales: {usd(guard.spend(scope={'team': 'sales'}, period='total'))}")


if __name__ == "__main__":
    main()
