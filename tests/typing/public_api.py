"""Type-checked, never run: the public constructors accept what the docs show (``nox -s typecheck``
runs ``mypy --strict`` on this file as a user's code would be checked)."""

from __future__ import annotations

from decimal import Decimal

import tokenguard as tg

budget = tg.Budget("support", limit_usd="500", scope={"team": "support"}, hard_at=1.5, review_action="downgrade")
route = tg.Route(scope={"team": "support"}, default="gpt-4o-mini", fallbacks=["gpt-4.1-mini"], downgrade={"a": "b"})
tier = tg.Tier(allowed_models=["gpt-4o-mini"], default_model="gpt-4o-mini", sensitive_data={"*": "flag"})
use_case = tg.UseCase("legal_review", risk="high", value=Decimal("12.5"), approver="legal-ops@example.com")
guard = tg.Guard(
    budgets=[budget],
    routes=[route],
    use_cases=[use_case],
    tiers={"low": tier},
    default_risk="medium",
    sensitive_data={"api_key": "block", "*": "redact"},
    nudges=tg.NudgePolicy(context_length_tokens=8000),
)


@tg.route(default="gpt-4o-mini", retries=2, max_wait_s=10.0)
def summarize(ticket: str) -> str:
    with tg.route(route), tg.task("summarize_ticket", approval_id="A-1"):
        return ticket


findings: list[tg.Finding] = tg.scan("mail jane@example.com")
kinds: list[str] = [f.kind for f in findings]
