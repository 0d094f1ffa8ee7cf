"""The README's demonstration runs offline and its tables add up."""

from __future__ import annotations

import re

import pytest

from tokenguard.cli import main


def test_demo_prints_spend_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for heading in ("Spend by team", "Spend by app", "Spend by model", "Calls by status", "cost/success"):
        assert heading in out
    for team in ("support", "sales", "research", "legal", "ops"):
        assert re.search(rf"^{team}\s+\d+\s+\d+\s+\$0\.\d+$", out, re.M), team
    total = re.search(r"Total committed spend: \$(\S+)\s+\(guard.spend\(\) = \$(\S+)\)", out)
    assert total is not None and total.group(1) == total.group(2)
    assert "cancelled" in out and "error" in out
    for governance in (
        "routed: fallback:429 (gpt-4o -> gpt-4.1)",
        "routed: downgrade:review (gpt-4o -> gpt-4o-mini)",
        "refused before sending: usecase:contract_review:block",
        "sensitive data: email (redact)",
    ):
        assert re.search(rf"^{re.escape(governance)}\s+\d+$", out, re.M), governance
