"""Your own prices: tg.Price in code, [prices."<model>"] in a TOML file, and unknown models.

Prices come from genai-prices by default. Overrides cover negotiated rates, fine-tunes and
self-hosted models. A model with no price at all is never silently free: it is recorded as
unpriced (cost None, a warning once), or refused before sending with on_unknown_price="block".

Offline: the real ``openai`` SDK talks to tokenguard's fake server; the TOML file goes to a
temporary directory.

    python examples/price_overrides.py
"""

from __future__ import annotations

import logging
import sys
import tempfile
from decimal import Decimal
from pathlib import Path

from openai import OpenAI

import tokenguard as tg
from tokenguard.testing import FakeLLMServer, FakeUsage

POLICY = """
# tokenguard.toml: USD per million tokens
[prices."gpt-4o-mini"]            # a negotiated rate: 20% off list
input_mtok = "0.12"
output_mtok = "0.48"
cache_read_mtok = "0.06"

[prices."ft:gpt-4o-mini:acme::support-v3"]   # a fine-tune
input_mtok = 0.30
output_mtok = 1.20
"""

MESSAGES = [{"role": "user", "content": "Summarize this ticket."}]


def usd(amount: Decimal | None) -> str:
    return "unpriced" if amount is None else f"${amount:.6f}"


def one_call(guard: tg.Guard, server: FakeLLMServer, model: str) -> tg.CallRecord:
    client = guard.wrap(OpenAI(base_url=server.openai_base_url, api_key="offline", max_retries=0))
    client.chat.completions.create(model=model, messages=MESSAGES)
    return list(guard.records())[-1]


def main() -> None:
    logging.basicConfig(stream=sys.stdout, format="   [log] %(levelname)s %(name)s: %(message)s")
    with FakeLLMServer() as server:
        # Every call below reports the same usage: 1M input tokens (half from the cache), 100k output.
        server.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=100_000, cache_read_tokens=500_000))

        print("1. genai-prices (list price) vs an override in code")
        list_price = one_call(tg.Guard(telemetry=False), server, "gpt-4o-mini")
        negotiated = one_call(
            tg.Guard(
                telemetry=False,
                prices={"gpt-4o-mini": tg.Price(input_mtok="0.12", output_mtok="0.48", cache_read_mtok="0.06")},
            ),
            server,
            "gpt-4o-mini",
        )
        print(f"   gpt-4o-mini at list price:   {usd(list_price.cost_usd)}")
        print(f"   gpt-4o-mini negotiated rate: {usd(negotiated.cost_usd)}")
        expected = (500_000 * Decimal("0.12") + 500_000 * Decimal("0.06") + 100_000 * Decimal("0.48")) / 1_000_000
        assert negotiated.cost_usd == expected

        print("\n2. A self-hosted model, priced with a plain mapping (cache prices default to input_mtok)")
        local = one_call(
            tg.Guard(telemetry=False, prices={"llama-3.1-70b-local": {"input_mtok": "0.05", "output_mtok": "0.10"}}),
            server,
            "llama-3.1-70b-local",
        )
        print(f"   llama-3.1-70b-local: {usd(local.cost_usd)}")

        print("\n3. The same overrides from a TOML policy file")
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "tokenguard.toml"
            path.write_text(POLICY, encoding="utf-8")
            file_guard = tg.Guard.from_file(path)
            for model in ("gpt-4o-mini", "ft:gpt-4o-mini:acme::support-v3"):
                print(f"   {model}: {usd(one_call(file_guard, server, model).cost_usd)}")

            path.write_text('[prices."gpt-4o-mini"]\ninput_mtok = "0.12"\noutput_mtk = "0.48"\n', encoding="utf-8")
            try:
                tg.Guard.from_file(path)
            except tg.ConfigError as exc:
                print(f"   a typo is an error, not a silent default:\n     {str(exc).replace(tmp, '<tmp>')}")

        print("\n4. A model nobody has a price for")
        warned = tg.Guard(telemetry=False)  # on_unknown_price="warn", the default
        for _ in range(2):  # the warning is logged once per model
            unpriced = one_call(warned, server, "my-experimental-model")
        print(f"   recorded: status={unpriced.status} cost={usd(unpriced.cost_usd)} decisions={unpriced.decisions}")

        strict = tg.Guard(telemetry=False, on_unknown_price="block")
        requests_before = len(server.requests)
        try:
            one_call(strict, server, "my-experimental-model")
        except tg.PolicyViolation as exc:
            print(f"   refused: {str(exc)[:90]}...")
        [blocked] = strict.records()
        assert len(server.requests) == requests_before  # nothing was sent
        print(f"   recorded: status={blocked.status} cost={usd(blocked.cost_usd)} decisions={blocked.decisions}")

    print(
        "\nNote: APIs may answer with a more specific model name than requested (gpt-4o -> gpt-4o-2024-08-06);"
        "\nkey an override on every name in record.response_model, not only on the requested one."
    )


if __name__ == "__main__":
    main()
