"""The README's demonstration runs offline and its reports add up."""

from __future__ import annotations

import json
import re

import pytest

from tokenguard.cli import main


def test_demo_prints_the_reports(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    for heading in (
        "Spend by team",
        "Spend by app",
        "Spend by model",
        "Spend by status",
        "Outcomes by task",
        "Governance",
    ):
        assert heading in out
    for team in ("support", "sales", "research", "legal", "ops"):
        assert re.search(rf"^\s+{team}\s+\d+\s+[\d,]+\s+[\d,]+\s+\$0\.\d+\s+\d+\.\d%\s*$", out, re.M), team
    total = re.search(r"Total committed spend: \$(\S+)\s+\(guard.spend\(\) = \$(\S+)\)", out)
    assert total is not None and total.group(1) == total.group(2)
    for status in ("cancelled", "error", "blocked"):
        assert re.search(rf"^\s+{status}\s+\d+", out, re.M), status
    for area, what in (
        ("routed", "fallback:429"),
        ("routed", "downgrade:review"),
        ("refused before sending", "usecase:contract_review:block"),
        ("sensitive data", r"email \(redact\)"),
    ):
        assert re.search(rf"^\s+{area}\s+{what}\s+\d+\s*$", out, re.M), what


def test_demo_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--format", "json"]) == 0
    out = capsys.readouterr().out
    first = json.JSONDecoder().raw_decode(out[out.index("{") :])[0]
    assert first["title"] == "Spend by team"
    assert sum(float(r["cost_usd"]) for r in first["rows"]) == pytest.approx(float(first["total"]["cost_usd"]))
