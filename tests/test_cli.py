"""The `tokenguard` command over a real SQLite ledger written by real governed calls: reports in
every format, budgets, exceptions, and clear errors for a missing store, an empty period and
unknown group keys."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from decimal import Decimal

import openai
import pytest

import tokenguard as tg
from support import API_KEY
from tokenguard.cli import main
from tokenguard.testing import FakeUsage


@pytest.fixture
def policy(tmp_path, fake_llm):
    """A policy file and its SQLite ledger: support $0.45 over 3 calls, sales $2.50, search (no team) $0.30."""
    db = tmp_path / "ledger.db"
    path = tmp_path / "tokenguard.toml"
    path.write_text(
        f'store = "sqlite:///{db}"\n\n[[budgets]]\nname = "support"\nlimit_usd = 1\nscope = {{ team = "support" }}\n'
    )
    fake_llm.set_usage(FakeUsage(input_tokens=1_000_000, output_tokens=0))
    guard = tg.Guard.from_file(path, telemetry=False, nudges=False)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    messages = [{"role": "user", "content": "hi"}]
    with tg.tags(team="support"):
        for _ in range(3):
            with tg.task("summarize", guard=guard) as t:
                client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=5)
                t.succeed()
    with tg.tags(team="sales"):
        client.chat.completions.create(model="gpt-4o", messages=messages, max_tokens=5)
    with tg.tags(app="search"):
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=5)
    guard.close()
    return path


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_report_spend_in_three_formats(policy, capsys):
    code, out, _ = run(capsys, "report", "--config", str(policy), "--by", "team")
    assert code == 0 and "support" in out and "(unattributed)" in out and "$3.250000" in out
    code, out, _ = run(capsys, "report", "--config", str(policy), "--by", "team,model", "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert rows[-1]["team"] == "TOTAL" and Decimal(rows[-1]["cost_usd"]) == Decimal("3.25")
    code, out, _ = run(capsys, "report", "--config", str(policy), "--by", "team", "--format", "json")
    data = json.loads(out)
    assert {r["team"] for r in data["rows"]} == {"sales", "support", None}


def test_chargeback_outcomes_and_governance(policy, capsys):
    code, out, _ = run(
        capsys, "report", "--config", str(policy), "--by", "team", "--allocate", "app=search:team", "--format", "json"
    )
    data = json.loads(out)
    assert Decimal(data["total"]["cost_usd"]) == Decimal("3.25")
    assert sum(Decimal(r["allocated_usd"]) for r in data["rows"]) == Decimal("0.30")
    code, out, _ = run(capsys, "report", "outcomes", "--config", str(policy), "--format", "json")
    [row] = json.loads(out)["rows"]
    assert (
        row["task"] == "summarize"
        and row["success_rate"] == 1.0
        and Decimal(row["cost_per_success"]) == Decimal("0.15")
    )
    code, out, _ = run(capsys, "report", "governance", "--config", str(policy))
    assert code == 1  # nothing governed in this ledger: an empty report says so


def test_budgets_and_exceptions(policy, capsys):
    code, out, _ = run(capsys, "budgets", "--config", str(policy), "--format", "json")
    [row] = json.loads(out)["rows"]
    assert row["budget"] == "support" and Decimal(row["spent_usd"]) == Decimal("0.45") and row["state"] == "ok"
    code, out, _ = run(
        capsys,
        "exceptions", "grant", "support", "25",
        "--config", str(policy), "--approved-by", "cfo", "--reason", "launch", "--expires", "2099-01-01",
    )  # fmt: skip
    assert code == 0 and out.startswith("granted ")
    grant_id = out.split()[1].rstrip(":")
    code, out, _ = run(capsys, "exceptions", "--config", str(policy), "--format", "json")
    [row] = json.loads(out)["rows"]
    assert (row["id"], row["approved_by"], row["status"]) == (grant_id, "cfo", "active")
    code, out, _ = run(capsys, "exceptions", "revoke", grant_id, "--config", str(policy))
    assert code == 0 and "revoked" in out
    code, _, err = run(capsys, "exceptions", "revoke", "nope", "--config", str(policy))
    assert code == 2 and "no exception (grant) with id 'nope'" in err


def test_clear_errors(policy, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("TOKENGUARD_CONFIG", raising=False)
    code, _, err = run(capsys, "report")
    assert code == 2 and "no store to read" in err
    code, _, err = run(capsys, "report", "--store", f"sqlite:///{tmp_path / 'missing.db'}")
    assert code == 2 and "no ledger at" in err and not (tmp_path / "missing.db").exists()
    code, _, err = run(capsys, "report", "--store", "memory://")
    assert code == 2 and "memory://" in err
    code, _, err = run(capsys, "report", "--config", str(policy), "--since", "2001-01-01", "--until", "2001-02-01")
    assert code == 1 and "nothing in this window" in err
    code, _, err = run(capsys, "report", "--config", str(policy), "--by", "tem")
    assert code == 2 and "no call in this window carries the tag(s) tem; tags seen: app, team" in err
    code, _, err = run(capsys, "report", "--config", str(policy), "--since", "last tuesday")
    assert code == 2 and "is not a date" in err
    monkeypatch.setenv("TOKENGUARD_CONFIG", str(policy))
    code, out, _ = run(capsys, "report", "--period", "this-month")  # the environment names the policy
    assert code == 0 and "support" in out


@pytest.mark.parametrize(
    "command", ["report", "budgets", "exceptions", "leaderboard", "anomalies", "dashboard", "simulate", "demo"]
)
def test_every_command_has_help_with_examples(command):
    out = subprocess.run(
        [sys.executable, "-m", "tokenguard.cli", command, "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "examples:" in out and f"tokenguard {command}" in out


def test_simulate_a_stricter_policy(policy, tmp_path, capsys):
    stricter = tmp_path / "stricter.toml"
    stricter.write_text(
        """
[[budgets]]
name = "sales"
limit_usd = 1
hard_at = 1.5
scope = { team = "sales" }

[[routes]]
scope = { team = "support" }
allow = ["gpt-4.1-nano"]
default = "gpt-4.1-nano"
"""
    )
    code, out, _ = run(capsys, "simulate", "--config", str(policy), "--policy", str(stricter), "--format", "json")
    assert code == 0
    rows = {(r["section"], r["what"]): r for r in json.loads(out)["rows"]}
    assert rows[("period", "calls replayed")]["calls"] == 6
    assert Decimal(rows[("period", "calls replayed")]["usd"]) == Decimal("3.25")
    # the $2.50 sales call does not fit under a $1.50 cap
    assert rows[("would refuse", "budget:sales:blocked")]["calls"] == 1
    # support's three gpt-4o-mini calls go to gpt-4.1-nano ($0.10 per 1M input tokens)
    assert rows[("would reroute", "allow-list: gpt-4o-mini -> gpt-4.1-nano")]["calls"] == 3
    assert Decimal(rows[("period", "cost under the new policy")]["usd"]) == Decimal("0.30") + Decimal("0.30")
    code, _, err = run(capsys, "simulate", "--config", str(policy), "--policy", str(tmp_path / "nope.toml"))
    assert code == 2 and "does not exist" in err


def test_leaderboard_and_anomalies_commands(policy, capsys):
    code, out, _ = run(capsys, "leaderboard", "--config", str(policy), "--min-tasks", "1", "--format", "json")
    assert code == 0
    rows = {r["team"]: r for r in json.loads(out)["rows"]}
    assert rows["support"]["tasks"] == 3 and rows["support"]["rank"] is None  # no task was reviewed: not ranked
    assert all(r["rank"] is None for r in rows.values())
    code, out, _ = run(capsys, "anomalies", "--config", str(policy))
    assert code == 0 and "no anomalies found" in out  # one day of history is no baseline


def test_dashboard_command_writes_one_self_contained_file(policy, tmp_path, capsys):
    out_file = tmp_path / "report.html"
    code, out, _ = run(capsys, "dashboard", "--config", str(policy), "--out", str(out_file))
    assert code == 0 and str(out_file) in out
    html = out_file.read_text()
    assert html.startswith("<!DOCTYPE html>") and "<svg" in html
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "") and "https://" not in html
