"""The use-case catalog and the sensitive-data guard on real calls: approvals for high-risk use
cases, tier models, and flag / redact / block of sensitive data in what is actually sent."""

from __future__ import annotations

import json
from pathlib import Path

import anthropic
import openai
import pytest

import tokenguard as tg
from support import API_KEY, records

MSG = [{"role": "user", "content": "hi"}]
EMAIL = "jane.doe@example.com"
KEY = "sk-proj-" + "Zx8Qm2Lp9Vt4Rk7Nw3Hj6Bc1Df5Gs0Ya2Ue8Io4Pq7"
CARD = "4111 1111 1111 1111"

CATALOG = [
    tg.UseCase("summarize_ticket", risk="low", value="0.40"),
    tg.UseCase("legal_review", risk="high", approver="legal-ops@example.com"),
    tg.UseCase("draft_reply", risk="medium"),
]


def make(fake_llm, otel=None, **kw):
    extra = {"tracer_provider": otel.tracer_provider} if otel else {"telemetry": False}
    guard = tg.Guard(use_cases=CATALOG, **extra, **kw)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    return guard, client


def ask(client, content="hi", model="gpt-4o-mini"):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": content}], max_tokens=5)


# -- risk tiers and approvals ----------------------------------------------------------------------


def test_high_risk_without_approval_is_refused_before_sending(fake_llm):
    guard, client = make(fake_llm)
    with tg.task("legal_review", guard=guard), pytest.raises(tg.PolicyViolation) as info:
        ask(client)
    message = str(info.value)
    assert "high risk" in message and "approval_id=" in message and "legal-ops@example.com" in message
    assert fake_llm.requests == []
    [r] = records(guard)
    assert r.status == "blocked" and r.cost_usd == 0
    assert "usecase:legal_review:block" in r.decisions
    assert r.estimated_cost_usd is not None and r.estimated_cost_usd > 0


def test_high_risk_with_an_approval_reference_goes_through(fake_llm):
    guard, client = make(fake_llm)
    with tg.task("legal_review", guard=guard, approval_id="LEGAL-123"):
        ask(client)
    with tg.task("legal_review", guard=guard), tg.tags(approval_id="LEGAL-124"):
        ask(client)
    first, second = records(guard)
    assert first.status == "ok" and first.tags["approval_id"] == "LEGAL-123"
    assert "usecase:legal_review:allow" in first.decisions
    assert second.tags["approval_id"] == "LEGAL-124"


def test_unknown_task_names_follow_the_default_tier(fake_llm):
    guard, client = make(fake_llm, default_risk="high")
    with tg.task("brand_new_flow", guard=guard), pytest.raises(tg.PolicyViolation, match="brand_new_flow"):
        ask(client)
    ask(client)  # outside any task: no use case applies
    assert [r.status for r in records(guard)] == ["blocked", "ok"]


def test_low_risk_tasks_default_to_the_tiers_cheaper_models(fake_llm):
    guard, client = make(
        fake_llm, tiers={"low": {"allowed_models": ["gpt-4o-mini", "gpt-4.1-nano"], "default_model": "gpt-4o-mini"}}
    )
    with tg.task("summarize_ticket", guard=guard):
        ask(client, model="gpt-4o")
        ask(client, model="gpt-4.1-nano")
    with tg.task("draft_reply", guard=guard):  # medium tier: any model
        ask(client, model="gpt-4o")
    assert [r.body["model"] for r in fake_llm.requests] == ["gpt-4o-mini", "gpt-4.1-nano", "gpt-4o"]
    first = records(guard)[0]
    assert (first.routed_from, first.route_reason) == ("gpt-4o", "use-case")


def test_a_use_case_that_allows_no_such_model_and_has_no_default_refuses(fake_llm):
    guard = tg.Guard(telemetry=False, use_cases=[tg.UseCase("triage", risk="low", allowed_models=["gpt-4o-mini"])])
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    with tg.task("triage", guard=guard), pytest.raises(tg.PolicyViolation, match="does not allow model 'gpt-4o'"):
        ask(client, model="gpt-4o")


def test_bad_catalogs_are_config_errors():
    with pytest.raises(tg.ConfigError, match="risk must be one of"):
        tg.UseCase("x", risk="extreme")
    with pytest.raises(tg.ConfigError, match="unique"):
        tg.Guard(use_cases=[tg.UseCase("x"), tg.UseCase("x")])
    with pytest.raises(tg.ConfigError, match="unknown tier"):
        tg.Guard(use_cases=[tg.UseCase("x")], tiers={"critical": {}})
    with pytest.raises(tg.ConfigError, match="action for '\\*' must be one of"):
        tg.UseCase("x", sensitive_data="shred")
    with pytest.raises(tg.ConfigError, match="default_risk"):
        tg.Guard(default_risk="none")


# -- sensitive data --------------------------------------------------------------------------------


def test_medium_risk_redacts_what_is_sent_without_touching_the_callers_objects(fake_llm, otel):
    guard, client = make(fake_llm, otel)
    messages = [
        {"role": "system", "content": "You draft replies."},
        {"role": "user", "content": [{"type": "text", "text": f"Reply to {EMAIL}, card {CARD}."}]},
    ]
    before = json.dumps(messages)
    with tg.task("draft_reply", guard=guard):
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=5)
    assert json.dumps(messages) == before  # the caller's objects are not mutated
    sent = json.dumps(fake_llm.requests[0].body)
    assert EMAIL not in sent and "4111" not in sent
    assert "You draft replies." in sent
    [r] = records(guard)
    assert dict(r.findings) == {"email": 1, "payment_card": 1}
    assert {"sensitive:email:redact", "sensitive:payment_card:redact"} <= set(r.decisions)
    [span] = otel.spans.get_finished_spans()
    assert span.attributes["tokenguard.sensitive.email"] == 1
    exported = json.dumps({k: str(v) for k, v in span.attributes.items()}) + r.model_dump_json()
    assert EMAIL not in exported and "4111" not in exported


def test_high_risk_blocks_secrets_without_quoting_them(fake_llm):
    guard, client = make(fake_llm)
    with tg.task("legal_review", guard=guard, approval_id="L-1"), pytest.raises(tg.PolicyViolation) as info:
        ask(client, f"our key is {KEY}")
    assert KEY not in str(info.value) and "1 api_key" in str(info.value)
    assert fake_llm.requests == []
    [r] = records(guard)
    assert r.status == "blocked" and dict(r.findings) == {"api_key": 1}
    assert "sensitive:api_key:block" in r.decisions


def test_low_risk_flags_and_sends_unchanged(fake_llm):
    guard, client = make(fake_llm)
    with tg.task("summarize_ticket", guard=guard):
        ask(client, f"customer {EMAIL} writes")
    assert EMAIL in fake_llm.requests[0].body["messages"][0]["content"]
    [r] = records(guard)
    assert dict(r.findings) == {"email": 1} and "sensitive:email:flag" in r.decisions


def test_guard_policy_outside_tasks_mixes_actions_per_kind(fake_llm):
    guard = tg.Guard(telemetry=False, sensitive_data={"*": "flag", "payment_card": "redact", "api_key": "block"})
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    ask(client, f"{EMAIL} paid with {CARD}")
    sent = fake_llm.requests[0].body["messages"][0]["content"]
    assert EMAIL in sent and CARD not in sent  # only the redacted kind is replaced
    with pytest.raises(tg.PolicyViolation):
        ask(client, f"token {KEY}")
    assert len(fake_llm.requests) == 1
    ask(client, "nothing to see")
    assert records(guard)[-1].findings == {}


def test_every_governed_api_has_its_input_scanned(fake_llm):
    guard = tg.Guard(telemetry=False, sensitive_data="redact")
    oai = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    ant = guard.wrap(anthropic.Anthropic(base_url=fake_llm.anthropic_base_url, api_key=API_KEY, max_retries=0))
    oai.responses.create(model="gpt-4o-mini", instructions=f"cc {EMAIL}", input=f"mail {EMAIL}", max_output_tokens=16)
    oai.embeddings.create(model="text-embedding-3-small", input=[f"a {EMAIL}", "b"])
    ant.messages.create(
        model="claude-haiku-4-5",
        system=f"escalate to {EMAIL}",
        max_tokens=5,
        messages=[
            {"role": "user", "content": "look it up"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "crm", "input": {"q": "x"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": f"owner {EMAIL}"}]},
        ],
    )
    for request in fake_llm.requests:
        assert EMAIL not in json.dumps(request.body), request.path
    assert [dict(r.findings) for r in records(guard)] == [{"email": 2}, {"email": 1}, {"email": 2}]


# -- the policy file -------------------------------------------------------------------------------


def test_the_policy_file_holds_use_cases_tiers_routes_and_nudges(tmp_path, fake_llm):
    path = Path(tmp_path / "tokenguard.toml")
    path.write_text(
        """
default_risk = "medium"
sensitive_data = { "*" = "flag", api_key = "block" }

[tiers.low]
allowed_models = ["gpt-4o-mini"]
default_model = "gpt-4o-mini"

[[use_cases]]
name = "summarize_ticket"
risk = "low"
value = 0.4

[[use_cases]]
name = "legal_review"
risk = "high"
approver = "legal-ops@example.com"

[[routes]]
scope = { team = "support" }
fallbacks = ["gpt-4o-mini"]
retries = 0

[nudges]
context_length_tokens = 4000
interval_s = 60
"""
    )
    guard = tg.Guard.from_file(path, telemetry=False)
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    with tg.task("summarize_ticket", guard=guard):
        ask(client, model="gpt-4o")
    fake_llm.fail_next(429, retry_after=0)
    with tg.tags(team="support"):
        ask(client, model="gpt-4o")
    assert [r.body["model"] for r in fake_llm.requests] == ["gpt-4o-mini", "gpt-4o", "gpt-4o-mini"]
    assert guard.nudger is not None and guard.nudger.policy.context_length_tokens == 4000


def test_policy_file_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[[use_cases]]\nname = "x"\nrisk = "extreme"\n')
    with pytest.raises(tg.ConfigError, match=r"use_cases\[0\]\.risk"):
        tg.Guard.from_file(path)
    path.write_text('[[routes]]\nfallback = ["x"]\n')
    with pytest.raises(tg.ConfigError, match=r"routes\[0\]\.fallback: unknown key"):
        tg.Guard.from_file(path)
    path.write_text("[nudges]\nfrequency = 1\n")
    with pytest.raises(tg.ConfigError, match=r"bad\.toml: nudges: unknown key\(s\) frequency \(known: enabled,"):
        tg.Guard.from_file(path)
    path.write_text("[nudges]\nmin_tasks = 0\n")
    with pytest.raises(tg.ConfigError, match=r"bad\.toml: nudges\.min_tasks must be an int >= 1"):
        tg.Guard.from_file(path)


class TicketIds:
    """A custom detector: internal ticket ids (kind "ticket_id")."""

    name = "ticket_ids"
    kinds = ("ticket_id",)

    def find(self, text):
        import re

        for m in re.finditer(r"\bTCK-\d{6}\b", text):
            yield tg.Finding(kind="ticket_id", start=m.start(), end=m.end(), detector=self.name)


def test_custom_detectors_join_the_built_ins_in_governed_calls(fake_llm):
    guard = tg.Guard(telemetry=False, detectors=[TicketIds()], sensitive_data={"ticket_id": "redact", "email": "flag"})
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    ask(client, f"TCK-123456 from {EMAIL}")
    sent = fake_llm.requests[0].body["messages"][0]["content"]
    assert "TCK-123456" not in sent and EMAIL in sent
    assert dict(records(guard)[0].findings) == {"ticket_id": 1, "email": 1}


def test_a_policy_naming_a_kind_no_detector_reports_is_a_config_error():
    with pytest.raises(tg.ConfigError, match="unknown sensitive-data kind.*'person'"):
        tg.Guard(sensitive_data={"person": "redact"})
    with pytest.raises(tg.ConfigError, match="use case 'x'.*'ticket'"):
        tg.Guard(use_cases=[tg.UseCase("x", sensitive_data={"ticket": "block"})])
    with pytest.raises(tg.ConfigError, match="not a detector"):
        tg.Guard(detectors=[object()])


def test_default_risk_alone_binds_every_task(fake_llm):
    guard = tg.Guard(telemetry=False, default_risk="high")
    client = guard.wrap(openai.OpenAI(base_url=fake_llm.openai_base_url, api_key=API_KEY, max_retries=0))
    with tg.task("anything", guard=guard), pytest.raises(tg.PolicyViolation, match="'anything' is high risk"):
        ask(client)
    assert not tg.Guard(telemetry=False).catalog  # no use cases and no default: no task binds


def test_bad_sensitive_data_in_the_policy_file_names_key_and_choices(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text('[tiers.low]\nsensitive_data = "shred"\n')
    with pytest.raises(tg.ConfigError, match=r"tiers\.low: sensitive_data: action for '\*' must be one of allow, flag"):
        tg.Guard.from_file(path)
    path.write_text('sensitive_data = { email = "hide" }\n')
    with pytest.raises(tg.ConfigError, match=r"bad\.toml: sensitive_data: action for 'email' must be one of"):
        tg.Guard.from_file(path)
