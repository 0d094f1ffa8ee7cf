"""The TOML policy file: top-level keys are ``Guard(...)`` arguments, ``[[budgets]]`` tables are
``Budget(...)`` arguments, ``[prices."<model>"]`` tables override prices. Unknown keys are errors;
every error names the file, the key path and what is wrong.

Example::

    store = "sqlite:///tokenguard.db"
    on_store_error = "open"
    capture_content = false
    metric_tags = ["team", "app"]

    [[budgets]]
    name = "support"
    limit_usd = 500
    scope = { team = "support" }
    period = "month"
    alert_at = 0.8
    review_at = 1.0
    hard_at = 1.2

    [[grants]]        # an approved exception, audited in review like any change to this file
    id = "support-launch-week"
    budget = "support"
    extra_usd = 100
    approved_by = "cfo@example.com"
    reason = "launch week"
    expires_at = 2026-12-31T23:59:59Z

    [prices."ft:gpt-4o-mini:acme::abc123"]
    input_mtok = 0.30
    output_mtok = 1.20
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from .budgets import Budget
from .errors import ConfigError
from .pricing import Price
from .routing import Route
from .usecases import UseCase

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["load_guard_kwargs"]


class _PriceTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    input_mtok: float | int | str
    output_mtok: float | int | str
    cache_read_mtok: float | int | str | None = None
    cache_write_mtok: float | int | str | None = None


Number = float | int | str


class _BudgetTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    limit_usd: Number
    scope: dict[str, str] = Field(default_factory=dict)
    period: Literal["day", "week", "month", "quarter", "year", "total"] = "month"
    alert_at: Number = "0.8"
    review_at: Number = "1.0"
    hard_at: Number = "1.2"
    review_action: Literal["warn", "downgrade", "block"] = "warn"
    timezone: str = "UTC"


class _GrantTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    budget: str
    extra_usd: Number
    approved_by: str
    reason: str
    expires_at: datetime


Models = str | list[str]
Sensitive = Any  # an action or {kind: action}: checked by the constructors, whose errors name the choices
RiskName = Literal["low", "medium", "high"]


class _RouteTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    scope: dict[str, str] = Field(default_factory=dict)
    default: Models | None = None
    allow: Models | None = None
    downgrade: dict[str, str] | None = None
    fallbacks: Models | None = None
    retries: int | None = None
    max_wait_s: float | None = None
    backoff_s: float | None = None
    max_input_tokens: int | None = None
    long_context_model: str | None = None


class _TierTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    requires_approval: bool | None = None
    sensitive_data: Sensitive | None = None
    allowed_models: Models | None = None
    default_model: Models | None = None


class _UseCaseTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    risk: RiskName = "medium"
    value: Number | None = None
    allowed_models: Models | None = None
    default_model: Models | None = None
    requires_approval: bool | None = None
    sensitive_data: Sensitive | None = None
    approval_tag: str = "approval_id"
    approver: str | None = None
    description: str = ""


class _PolicyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    store: str = "memory://"
    on_store_error: Literal["open", "closed"] = "open"
    capture_content: bool = False
    telemetry: bool = True
    on_unknown_price: Literal["warn", "block"] = "warn"
    admit_unpriced: bool = False
    reservation_ttl_s: float = 600.0
    budgets: list[_BudgetTable] = Field(default_factory=list)
    grants: list[_GrantTable] = Field(default_factory=list)
    metric_tags: list[str] = Field(default_factory=lambda: ["team", "app"])
    prices: dict[str, _PriceTable] = Field(default_factory=dict)
    routes: list[_RouteTable] = Field(default_factory=list)
    use_cases: list[_UseCaseTable] = Field(default_factory=list)
    tiers: dict[RiskName, _TierTable] = Field(default_factory=dict)
    default_risk: RiskName | None = None
    sensitive_data: Sensitive = "allow"
    nudges: dict[str, Any] = Field(default_factory=dict)  # NudgePolicy(...) checks its keys


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item.replace("_", "").isalnum():
            parts.append(f".{item}" if parts else item)
        else:
            parts.append(f'."{item}"' if parts else f'"{item}"')
    return "".join(parts) or "(top level)"


def load_guard_kwargs(path: Path) -> dict[str, Any]:
    """Read and validate a policy file; return the keyword arguments of ``Guard(...)``."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the policy file ({exc.strerror or exc})") from None
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    try:
        policy = _PolicyFile.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = _key_path(tuple(err["loc"]))
            if err["type"] == "extra_forbidden":
                problems.append(f"{where}: unknown key (check its spelling; unknown keys are not ignored)")
            else:
                problems.append(f"{where}: {err['msg']} (got {err.get('input')!r})")
        raise ConfigError(f"{path}: " + "; ".join(problems)) from None
    budgets: list[Budget] = []
    for i, budget_table in enumerate(policy.budgets):
        try:
            budgets.append(Budget(**budget_table.model_dump()))
        except ConfigError as exc:
            raise ConfigError(f"{path}: budgets[{i}] ({budget_table.name!r}): {exc}") from None
    prices: dict[str, Price] = {}
    for model, table in policy.prices.items():
        try:
            prices[model] = Price(**table.model_dump(exclude_none=True))
        except ConfigError as exc:
            raise ConfigError(f'{path}: prices."{model}": {exc}') from None
    grants = [g.model_dump() for g in policy.grants]
    routes: list[Route] = []
    for i, route_table in enumerate(policy.routes):
        try:
            routes.append(Route(**route_table.model_dump()))
        except ConfigError as exc:
            raise ConfigError(f"{path}: routes[{i}]: {exc}") from None
    use_cases: list[UseCase] = []
    for i, use_case_table in enumerate(policy.use_cases):
        try:
            use_cases.append(UseCase(**use_case_table.model_dump()))
        except ConfigError as exc:
            raise ConfigError(f"{path}: use_cases[{i}]: {exc}") from None
    tiers = {risk: t.model_dump(exclude_none=True) for risk, t in policy.tiers.items()}
    return {
        "store": policy.store,
        "on_store_error": policy.on_store_error,
        "capture_content": policy.capture_content,
        "telemetry": policy.telemetry,
        "on_unknown_price": policy.on_unknown_price,
        "admit_unpriced": policy.admit_unpriced,
        "reservation_ttl_s": policy.reservation_ttl_s,
        "budgets": budgets,
        "grants": grants,
        "metric_tags": tuple(policy.metric_tags),
        "prices": prices,
        "routes": routes,
        "use_cases": use_cases,
        "tiers": tiers,
        "default_risk": policy.default_risk,
        "sensitive_data": policy.sensitive_data,
        "nudges": policy.nudges,
    }
