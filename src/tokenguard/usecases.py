"""The use-case catalog (step 3 of the pipeline): what a kind of task may do, by risk tier.

A :class:`UseCase` names a task (``tg.task(name)`` binds it) and gives it a risk tier. The tier
sets defaults that the use case may override: which models it may use, whether it needs an
approval reference before any call is sent, and what happens to sensitive data in its prompts.

========  ====================  ==================  =========================================
tier      requires_approval     sensitive_data      models
========  ====================  ==================  =========================================
low       no                    ``flag``            the tier's cheaper models, if configured
medium    no                    ``redact``          any
high      yes                   ``block``           any
========  ====================  ==================  =========================================

A task whose name is not in the catalog follows ``Guard(default_risk=...)``: ``"low"`` when the
catalog has use cases and no default is set; with neither use cases nor ``default_risk``, tasks bind
no use case at all. Calls outside any task follow ``Guard(sensitive_data=...)`` only (default
``"allow"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from .errors import ConfigError
from .pricing import to_decimal

__all__ = ["DEFAULT_TIERS", "Action", "Risk", "Tier", "UseCase", "sensitive_actions"]

Risk = Literal["low", "medium", "high"]
Action = Literal["allow", "flag", "redact", "block"]
RISKS: tuple[Risk, ...] = ("low", "medium", "high")
ACTIONS: tuple[Action, ...] = ("allow", "flag", "redact", "block")
_NAME_RE = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.:/-]{0,127}")
SensitivePolicy = Action | Mapping[str, Action]
_NOTHING: Mapping[str, Action] = MappingProxyType({})


def _check_sensitive(value: object, what: str) -> Mapping[str, Action]:
    if isinstance(value, str):
        value = {"*": value}
    if not isinstance(value, Mapping):
        raise ConfigError(f"{what} must be an action ({', '.join(ACTIONS)}) or a mapping of kind to action")
    for kind, action in value.items():
        if action not in ACTIONS:
            raise ConfigError(f"{what}: action for {kind!r} must be one of {', '.join(ACTIONS)}, got {action!r}")
        if not (isinstance(kind, str) and kind):
            raise ConfigError(f"{what}: kinds must be non-empty strings, got {kind!r}")
    return value


def sensitive_actions(value: object, what: str, kinds: Sequence[str]) -> Mapping[str, Action]:
    """Normalise a sensitive-data policy over the ``kinds`` the detectors can report: one action
    for every kind (``"redact"``), or ``{kind: action}`` where the key ``"*"`` covers the kinds not
    named. Kinds whose action is ``allow`` are left out (they are not scanned for)."""
    if value == "allow":
        return _NOTHING
    given = _check_sensitive(value, what)
    unknown = sorted(k for k in given if k != "*" and k not in kinds)
    if unknown:
        raise ConfigError(
            f"{what}: unknown sensitive-data kind(s) {', '.join(map(repr, unknown))}; the detectors report "
            f"{', '.join(kinds)} (add a detector with Guard(detectors=[...]) for other kinds)"
        )
    fallback = given.get("*", "allow")
    return MappingProxyType({k: a for k in kinds if (a := given.get(k, fallback)) != "allow"})


def _patterns(value: object, what: str) -> tuple[str, ...]:
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(m, str) and m for m in items):
        raise ConfigError(f"{what} must be a model name or a list of model names, got {value!r}")
    return tuple(items)


@dataclass(frozen=True)
class Tier:
    """What a risk tier implies unless the use case says otherwise.

    ``allowed_models`` (shell-style patterns; empty: any) and ``default_model`` (where a call to a
    model outside them goes; with models of several providers, a list of which the first of the
    client's provider is used); ``requires_approval``; ``sensitive_data``: an action for every
    kind, or ``{kind: action}`` (``"*"`` for the rest).
    """

    requires_approval: bool = False
    sensitive_data: SensitivePolicy = "allow"
    allowed_models: tuple[str, ...] = ()
    default_model: tuple[str, ...] = ()

    if TYPE_CHECKING:  # what the constructor accepts; the fields hold the normalised values

        def __init__(
            self,
            requires_approval: bool = False,
            sensitive_data: SensitivePolicy = "allow",
            allowed_models: str | Sequence[str] = (),
            default_model: str | Sequence[str] = (),
        ) -> None: ...

    def __post_init__(self) -> None:
        object.__setattr__(self, "allowed_models", _patterns(self.allowed_models, "allowed_models"))
        object.__setattr__(self, "default_model", _patterns(self.default_model, "default_model"))
        _check_sensitive(self.sensitive_data, "sensitive_data")
        if not isinstance(self.requires_approval, bool):
            raise ConfigError(f"requires_approval must be true or false, got {self.requires_approval!r}")


DEFAULT_TIERS: Mapping[str, Tier] = MappingProxyType(
    {
        "low": Tier(sensitive_data="flag"),
        "medium": Tier(sensitive_data="redact"),
        "high": Tier(requires_approval=True, sensitive_data="block"),
    }
)


@dataclass(frozen=True)
class UseCase:
    """A catalog entry: a kind of task, its risk tier and what that allows.

    * ``name``: the task name that binds it (``tg.task(name)``).
    * ``risk``: ``"low"``, ``"medium"`` or ``"high"``; its tier gives the defaults below.
    * ``value``: what one successful task is worth to the business, in USD (for reports).
    * ``allowed_models`` / ``default_model``: as :class:`Tier`; ``None`` takes the tier's.
    * ``requires_approval``: calls are refused unless the tag ``approval_tag`` (default
      ``"approval_id"``) is in force, e.g. ``tg.task("legal_review", approval_id="LEGAL-123")``.
      ``None`` takes the tier's (high risk: yes).
    * ``sensitive_data``: as :class:`Tier`; ``None`` takes the tier's.
    * ``approver``: who grants approvals (named in the refusal message); ``description``: free text.
    """

    name: str
    risk: Risk = "medium"
    value: Decimal | None = None
    allowed_models: tuple[str, ...] | None = None
    default_model: tuple[str, ...] | None = None
    requires_approval: bool | None = None
    sensitive_data: SensitivePolicy | None = None
    approval_tag: str = "approval_id"
    approver: str | None = None
    description: str = ""

    if TYPE_CHECKING:  # what the constructor accepts; the fields hold the normalised values

        def __init__(
            self,
            name: str,
            risk: Risk = "medium",
            value: Decimal | int | float | str | None = None,
            allowed_models: str | Sequence[str] | None = None,
            default_model: str | Sequence[str] | None = None,
            requires_approval: bool | None = None,
            sensitive_data: SensitivePolicy | None = None,
            approval_tag: str = "approval_id",
            approver: str | None = None,
            description: str = "",
        ) -> None: ...

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or _NAME_RE.fullmatch(self.name) is None:
            raise ConfigError(f"use case name {self.name!r} is invalid: use letters, digits and _ . : / -")
        what = f"use case {self.name!r}"
        if self.risk not in RISKS:
            raise ConfigError(f"{what}: risk must be one of {', '.join(RISKS)}, got {self.risk!r}")
        if self.value is not None:
            object.__setattr__(self, "value", to_decimal(self.value, f"{what}: value"))
        try:
            if self.allowed_models is not None:
                object.__setattr__(self, "allowed_models", _patterns(self.allowed_models, "allowed_models"))
            if self.default_model is not None:
                object.__setattr__(self, "default_model", _patterns(self.default_model, "default_model"))
            if self.sensitive_data is not None:
                _check_sensitive(self.sensitive_data, "sensitive_data")
        except ConfigError as exc:
            raise ConfigError(f"{what}: {exc}") from None
        if self.requires_approval is not None and not isinstance(self.requires_approval, bool):
            raise ConfigError(f"{what}: requires_approval must be true, false or unset")
        if not isinstance(self.approval_tag, str) or not self.approval_tag:
            raise ConfigError(f"{what}: approval_tag must be a tag key")


@dataclass(frozen=True)
class Binding:
    """A use case resolved against its tier: what the pipeline applies to a call."""

    name: str
    risk: Risk
    requires_approval: bool
    approval_tag: str
    approver: str | None
    sensitive: Mapping[str, Action]
    allowed_models: tuple[str, ...]
    default_model: tuple[str, ...]


@dataclass(frozen=True)
class Catalog:
    """The Guard's use cases and tiers; resolves a task name to its :class:`Binding`."""

    use_cases: Mapping[str, UseCase] = field(default_factory=dict)
    tiers: Mapping[str, Tier] = field(default_factory=lambda: DEFAULT_TIERS)
    default_risk: Risk | None = None
    kinds: tuple[str, ...] = ()
    """The sensitive-data kinds the Guard's detectors report."""
    _cache: dict[str, Binding] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def build(
        cls,
        use_cases: Sequence[UseCase],
        tiers: Mapping[str, Tier | Mapping[str, Any]] | None,
        default_risk: Risk | None,
        kinds: Sequence[str],
    ) -> Catalog:
        """Validate the catalog (every sensitive-data policy against ``kinds``, now rather than on
        the first call of a task)."""
        if isinstance(use_cases, UseCase) or not all(isinstance(u, UseCase) for u in use_cases):
            raise ConfigError("use_cases must be a sequence of tg.UseCase(...)")
        names = [u.name for u in use_cases]
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise ConfigError(f"use case names must be unique; repeated: {', '.join(repeated)}")
        if default_risk is not None and default_risk not in RISKS:
            raise ConfigError(f"default_risk must be one of {', '.join(RISKS)}, got {default_risk!r}")
        merged = dict(DEFAULT_TIERS)
        for risk, given in (tiers or {}).items():
            if risk not in RISKS:
                raise ConfigError(f"tiers: unknown tier {risk!r} (the tiers are {', '.join(RISKS)})")
            tier = given
            if isinstance(given, Mapping):
                try:
                    tier = replace(DEFAULT_TIERS[risk], **given)
                except (TypeError, ConfigError) as exc:
                    raise ConfigError(f"tiers.{risk}: {exc}") from None
            if not isinstance(tier, Tier):
                raise ConfigError(f"tiers.{risk} must be a tg.Tier or a mapping of its fields")
            merged[risk] = tier
        for risk, tier in merged.items():
            sensitive_actions(tier.sensitive_data, f"tiers.{risk}: sensitive_data", kinds)
        for u in use_cases:
            if u.sensitive_data is not None:
                sensitive_actions(u.sensitive_data, f"use case {u.name!r}: sensitive_data", kinds)
        return cls({u.name: u for u in use_cases}, MappingProxyType(merged), default_risk, tuple(kinds))

    def __bool__(self) -> bool:
        """Whether tasks bind use cases (the catalog has entries, or a default tier is set)."""
        return bool(self.use_cases) or self.default_risk is not None

    def bind(self, task_name: str) -> Binding:
        """The use case a task of this name binds (its tier's defaults filled in)."""
        binding = self._cache.get(task_name)
        if binding is None:
            use_case = self.use_cases.get(task_name)
            if use_case is None:
                name = task_name if _NAME_RE.fullmatch(task_name) else "unknown"
                use_case = UseCase(name, risk=self.default_risk or "low")
            tier = self.tiers[use_case.risk]
            binding = Binding(
                name=task_name,
                risk=use_case.risk,
                requires_approval=tier.requires_approval
                if use_case.requires_approval is None
                else use_case.requires_approval,
                approval_tag=use_case.approval_tag,
                approver=use_case.approver,
                sensitive=sensitive_actions(
                    tier.sensitive_data if use_case.sensitive_data is None else use_case.sensitive_data,
                    f"use case {task_name!r}: sensitive_data",
                    self.kinds,
                ),
                allowed_models=tier.allowed_models if use_case.allowed_models is None else use_case.allowed_models,
                default_model=tier.default_model if use_case.default_model is None else use_case.default_model,
            )
            if len(self._cache) >= 4096:  # task names are usually few; never let dynamic ones grow this
                self._cache.clear()
            self._cache[task_name] = binding
        return binding
