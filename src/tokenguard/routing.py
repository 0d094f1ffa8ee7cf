"""Routing (step 3 of the pipeline): which model a call is sent to, and what happens when it fails.

A :class:`Route` is a policy. ``tg.route(...)`` sets one for the calls made inside a block or a
decorated function; ``Guard(routes=[...])`` (``[[routes]]`` in the policy file) sets routes that
apply to every call whose tags match their ``scope``. All the routes in force merge field by field,
the innermost ``tg.route`` winning, over the Guard's matching routes in the order given.

For each call the router decides, in this order, and records the reason:

1. ``model="auto"`` goes to the route's ``default`` model (reason ``default``);
2. a model outside the use case's allowed models goes to its default model (``use-case``);
3. a model outside the route's ``allow`` list goes to its ``default`` (``allow-list``);
4. a prompt above ``max_input_tokens`` goes to ``long_context_model`` (``context-length``), or is
   refused when there is none;
5. a model with a ``downgrade`` target goes there while a matching budget with
   ``review_action="downgrade"`` is in review (``downgrade:review``).

Then the call is sent; on a 429 (its ``retry-after`` is honoured), a 5xx, a timeout or a lost
connection it is retried ``retries`` times with exponential backoff (with ``tenacity``), then sent
to each of the route's ``fallbacks`` of the same provider in turn (reasons ``retry:429``,
``fallback:429``, ...).
Every attempt is admitted against the budgets with the model it actually uses, and is its own
ledger record; the attempts share a ``chain_id`` and one parent span.
"""

from __future__ import annotations

import contextvars
import fnmatch
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from email.utils import parsedate_to_datetime
from types import MappingProxyType, TracebackType
from typing import TYPE_CHECKING, TypedDict

from typing_extensions import Unpack

from .context import _route_var, _Scope
from .errors import ConfigError

if TYPE_CHECKING:
    from .providers.base import CallRequest
    from .usecases import Binding

__all__ = [
    "AUTO",
    "Plan",
    "Route",
    "Unroutable",
    "choose_model",
    "current_route",
    "model_matches",
    "retry_after",
    "retry_reason",
    "route",
]

AUTO = "auto"
"""The model name that asks the router for the route's default model."""

DEFAULT_RETRIES = 0
"""The vendor SDKs already retry 429s, 5xx and timeouts (``max_retries``, 2 by default) inside each
attempt; tokenguard adds its own retries only when a route asks for them."""
DEFAULT_MAX_WAIT_S = 30.0
BACKOFF_INITIAL_S = 0.5
BACKOFF_MAX_S = 8.0


def _models(value: object, what: str) -> tuple[str, ...] | None:
    if value is None:
        return None
    items = (value,) if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not all(isinstance(m, str) and m for m in items):
        raise ConfigError(f"{what} must be a model name or a list of model names, got {value!r}")
    return tuple(items)


class RouteFields(TypedDict, total=False):
    """The policy fields of :class:`Route` and :func:`route`, as given (see :class:`Route`)."""

    default: str | Sequence[str] | None
    allow: str | Sequence[str] | None
    downgrade: Mapping[str, str] | None
    fallbacks: str | Sequence[str] | None
    retries: int | None
    max_wait_s: float | None
    backoff_s: float | None
    max_input_tokens: int | None
    long_context_model: str | None


@dataclass(frozen=True)
class Route:
    """A routing policy. Every field is optional; an unset field (``None``) inherits from the
    routes around it.

    * ``default``: the model (or, for clients of several providers, the list of models; the first
      of the client's provider is used) for calls made with ``model="auto"``, and where the
      ``allow`` list sends a model it does not allow.
    * ``allow``: the models calls may use (shell-style patterns, e.g. ``"gpt-4o-mini*"``). A model
      outside it goes to ``default``, or is refused with :class:`~tokenguard.PolicyViolation`
      when there is none.
    * ``downgrade``: ``{model pattern: cheaper model}``, used while a budget matching the call with
      ``review_action="downgrade"`` is in review.
    * ``fallbacks``: models tried in turn, after the retries, when a call fails with a 429, a 5xx,
      a timeout or a lost connection. Models of another provider than the client's are skipped.
    * ``retries``: attempts with the same model after the first one (default 0: the SDK's own
      ``max_retries`` already retry inside each attempt), with exponential backoff and jitter, or
      the ``retry-after`` the vendor asked for. For a ledger record per attempt, set
      ``max_retries=0`` on the client and ``retries`` here.
    * ``max_wait_s``: the longest wait before a retry (default 30 s); a ``retry-after`` beyond it
      moves on to the next fallback at once.
    * ``backoff_s``: the first backoff (default 0.5 s), doubling up to 8 s, plus up to as much
      jitter; a ``retry-after`` sent by the vendor is used instead.
    * ``max_input_tokens`` / ``long_context_model``: prompts above that many input tokens go to
      the long-context model, or are refused when there is none.
    * ``scope`` (for ``Guard(routes=...)`` only): the tags (and ``model``) a call must carry for
      the route to apply, as for budgets. ``name`` labels it in errors.

    The vendor SDK's own retries (``max_retries``) still happen inside each attempt.
    """

    default: tuple[str, ...] | None = None
    allow: tuple[str, ...] | None = None
    downgrade: Mapping[str, str] | None = None
    fallbacks: tuple[str, ...] | None = None
    retries: int | None = None
    max_wait_s: float | None = None
    backoff_s: float | None = None
    max_input_tokens: int | None = None
    long_context_model: str | None = None
    scope: Mapping[str, str] = field(default_factory=dict)
    name: str | None = None

    if TYPE_CHECKING:  # what the constructor accepts; the fields hold the normalised values

        def __init__(
            self, *, scope: Mapping[str, str] = ..., name: str | None = None, **policy: Unpack[RouteFields]
        ) -> None: ...

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        what = f"route {self.name!r}" if self.name else "route"
        set_(self, "default", _models(self.default, f"{what}: default"))
        set_(self, "allow", _models(self.allow, f"{what}: allow"))
        set_(self, "fallbacks", _models(self.fallbacks, f"{what}: fallbacks"))
        if self.downgrade is not None:
            if not isinstance(self.downgrade, Mapping) or not all(
                isinstance(k, str) and isinstance(v, str) and k and v for k, v in self.downgrade.items()
            ):
                raise ConfigError(
                    f"{what}: downgrade must map model patterns to cheaper models, e.g. "
                    f'{{"gpt-4o": "gpt-4o-mini"}}, got {self.downgrade!r}'
                )
            set_(self, "downgrade", MappingProxyType(dict(self.downgrade)))
        for name in ("retries", "max_input_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise ConfigError(f"{what}: {name} must be an int >= 0, got {value!r}")
        for name in ("max_wait_s", "backoff_s"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
                raise ConfigError(f"{what}: {name} must be a number of seconds >= 0, got {value!r}")
        if self.long_context_model is not None and (
            not isinstance(self.long_context_model, str) or not self.long_context_model
        ):
            raise ConfigError(f"{what}: long_context_model must be a model name, got {self.long_context_model!r}")
        if not isinstance(self.scope, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.scope.items()
        ):
            raise ConfigError(f"{what}: scope must map tag keys (or 'model') to str values, got {self.scope!r}")
        set_(self, "scope", MappingProxyType(dict(self.scope)))

    def matches(self, tags: Mapping[str, str], model: str) -> bool:
        """Whether this route's ``scope`` covers a call with these tags to ``model``."""
        return all((model if key == "model" else tags.get(key)) == value for key, value in self.scope.items())

    def over(self, outer: Route) -> Route:
        """This route on top of ``outer``: every field set here wins, the others are inherited."""
        changes = {
            f.name: getattr(self, f.name)
            for f in fields(self)
            if f.name not in ("scope", "name") and getattr(self, f.name) is not None
        }
        return replace(outer, **changes) if changes else outer

    # -- decisions -----------------------------------------------------------------------------

    def allows(self, model: str) -> bool:
        return self.allow is None or model_matches(model, self.allow)

    def downgrade_for(self, model: str) -> str | None:
        if not self.downgrade:
            return None
        exact = self.downgrade.get(model)
        if exact is not None:
            return exact
        for pattern, target in self.downgrade.items():
            if fnmatch.fnmatchcase(model, pattern):
                return target
        return None


_EMPTY_ROUTE = Route()


class route(_Scope):
    """Set a routing policy for the calls made inside (a context manager and a decorator for sync
    and async functions). Takes a :class:`Route`, or its fields as keyword arguments, or both
    (the keywords win)::

        @tg.route(default="gpt-4o-mini", allow=["gpt-4o-mini", "gpt-4o"], fallbacks=["gpt-4.1-mini"])
        def summarize(ticket): ...

        with tg.route(downgrade={"gpt-4o": "gpt-4o-mini"}, max_input_tokens=32_000):
            ...

    Nested routes merge field by field, the inner one winning. Bad values raise
    :class:`~tokenguard.ConfigError` here, not when a call is made.
    """

    def __init__(self, policy: Route | None = None, /, **fields: Unpack[RouteFields]) -> None:
        if policy is not None and not isinstance(policy, Route):
            raise ConfigError(f"tg.route() takes a tg.Route or keyword arguments, got {policy!r}")
        if "scope" in fields:  # a mistake that typed code cannot make
            raise ConfigError("tg.route(...) applies to the calls inside it; scope= is for Guard(routes=[...])")
        try:
            extra = Route(**fields)
        except TypeError as exc:
            known = ", ".join(f for f in _fields_of_route() if f != "scope")
            raise ConfigError(f"tg.route(): {exc} (its fields are: {known})") from None
        self._policy = extra.over(policy) if policy is not None else extra
        self._tokens: list[contextvars.Token[Route | None]] = []

    def _fresh(self) -> route:
        return route(self._policy)

    def __enter__(self) -> Route:
        outer = _route_var.get()
        merged = self._policy.over(outer) if outer is not None else self._policy
        self._tokens.append(_route_var.set(merged))
        return merged

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        _route_var.reset(self._tokens.pop())


def _fields_of_route() -> list[str]:
    return [f.name for f in fields(Route)]


def model_matches(model: str, patterns: Iterable[str]) -> bool:
    """Whether ``model`` matches one of the shell-style ``patterns`` (``"gpt-4o-mini*"``)."""
    return any(fnmatch.fnmatchcase(model, p) for p in patterns)


class Unroutable(Exception):
    """A routing rule had nowhere to send the call; ``rule`` names it (``default``, ``use-case``,
    ``allow-list``, ``context-length``) and the message says what to change."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


def choose_model(
    provider: str,
    model: str,
    route: Route | None,
    use_case: Binding | None,
    *,
    belongs: Callable[[str, str], bool],
    input_tokens: Callable[[str], int],
    in_review: Callable[[str], bool],
) -> tuple[str, str | None]:
    """The model a call goes to and why (``None``: as asked), in the order of this module's
    docstring. ``belongs(provider, model)`` says whether a client of ``provider`` can send a
    model; ``input_tokens(model)`` is the prompt's size for it; ``in_review(model)`` whether a
    matching budget with ``review_action="downgrade"`` is in review. Raises :class:`Unroutable`.
    (The Guard calls this for live calls; ``tokenguard simulate`` for replayed ones.)"""

    def first_of(models: Iterable[str], within: Route | None) -> str | None:
        return next((m for m in models if belongs(provider, m) and (within is None or within.allows(m))), None)

    reason = None
    if model == AUTO:
        target = first_of((route.default if route else None) or (), route)
        if target is None and use_case is not None:
            target = first_of(use_case.default_model, route)
        if target is None:
            raise Unroutable(
                "default",
                f"model='auto' asks the router for a default {provider} model, but no route in force names one. "
                f"The request was not sent. Set one with tg.route(default=...) or a [[routes]] default in "
                f"tokenguard.toml.",
            )
        model, reason = target, "default"
    if use_case is not None and use_case.allowed_models and not model_matches(model, use_case.allowed_models):
        target = first_of(use_case.default_model, None)
        if target is None:
            raise Unroutable(
                "use-case",
                f"use case {use_case.name!r} ({use_case.risk} risk) does not allow model {model!r}; it allows "
                f"{', '.join(use_case.allowed_models)}. The request was not sent. Ask for an allowed model, or "
                f"give the use case (or its tier) a default_model to route such calls to.",
            )
        model, reason = target, "use-case"
    if route is None:
        return model, reason
    if not route.allows(model):
        target = first_of(route.default or (), route)
        if target is None:
            raise Unroutable(
                "allow-list",
                f"the route in force does not allow model {model!r} (it allows {', '.join(route.allow or ())}) "
                f"and has no default model to send the call to. The request was not sent. Ask for an allowed "
                f"model, or give the route a default.",
            )
        model, reason = target, "allow-list"
    if route.max_input_tokens is not None:
        tokens = input_tokens(model)
        if tokens > route.max_input_tokens:
            if route.long_context_model is None:
                raise Unroutable(
                    "context-length",
                    f"the prompt is about {tokens} input tokens, above the {route.max_input_tokens} allowed by "
                    f"the route in force (max_input_tokens). The request was not sent. Shorten or summarise the "
                    f"prompt, split the work, or give the route a long_context_model.",
                )
            model, reason = route.long_context_model, "context-length"
    target = route.downgrade_for(model)
    if target is not None and target != model and in_review(model):
        model, reason = target, "downgrade:review"
    return model, reason


def current_route() -> Route | None:
    """The routing policy set by the enclosing :func:`route` scopes, or ``None``."""
    return _route_var.get()


def effective(guard_routes: Sequence[Route], tags: Mapping[str, str], model: str) -> Route | None:
    """The routes in force for a call: the Guard's matching routes, then the ``tg.route`` scopes."""
    layers = [r for r in guard_routes if r.matches(tags, model)]
    inner = _route_var.get()
    if inner is not None:
        layers.append(inner)
    if len(layers) < 2:
        return layers[0] if layers else None
    # Merging validates a new Route: done once per combination of layers, not per call.
    key = tuple(map(id, layers))
    cached = _merged.get(key)
    if cached is not None and all(a is b for a, b in zip(cached[0], layers, strict=True)):
        return cached[1]
    merged = layers[0]
    for r in layers[1:]:
        merged = r.over(merged)
    if len(_merged) >= 256:
        _merged.clear()
    _merged[key] = (tuple(layers), merged)  # the layers are kept alive, so their ids stay theirs
    return merged


_merged: dict[tuple[int, ...], tuple[tuple[Route, ...], Route]] = {}


# -- retries -------------------------------------------------------------------------------------


def retry_reason(exc: BaseException) -> str | None:
    """Why a failed attempt may be retried: ``"429"``, ``"5xx"``, ``"timeout"``, ``"connection"``;
    ``None`` when it may not (a 4xx the request itself caused, or a policy refusal).

    Reads the attributes both vendor SDKs' errors share, so no SDK is imported."""
    status = getattr(exc, "status_code", None)
    if isinstance(status, int):
        if status == 429:
            return "429"
        if status >= 500:
            return "5xx"
        if status == 408:
            return "timeout"
        return None
    names = {c.__name__ for c in type(exc).__mro__}
    if "APITimeoutError" in names:
        return "timeout"
    if "APIConnectionError" in names:
        return "connection"
    return None


def retry_after(exc: BaseException) -> float | None:
    """The wait, in seconds, that a 429/5xx response asked for (``retry-after-ms`` or
    ``retry-after``, in seconds or as an HTTP date), or ``None``."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            return max(float(ms) / 1000, 0.0)
        value = headers.get("retry-after")
        if value is None:
            return None
        try:
            return max(float(value), 0.0)
        except ValueError:
            from datetime import datetime, timezone

            return max((parsedate_to_datetime(value) - datetime.now(timezone.utc)).total_seconds(), 0.0)
    except (TypeError, ValueError, OverflowError):
        return None


# -- a routed call -------------------------------------------------------------------------------


@dataclass(slots=True)
class Plan:
    """What step 3 decided for one governed call, before any attempt is sent."""

    req: CallRequest
    """The first attempt's request: the routed model, and the body as it will be sent (redacted)."""
    requested: str
    """The model the caller asked for."""
    reason: str | None = None
    """Why ``req.model`` was chosen, when routing chose it."""
    decisions: tuple[str, ...] = ()
    """Use-case and sensitive-data decisions, added to every attempt's record (each attempt adds
    its own ``route:<reason>``)."""
    findings: Mapping[str, int] = field(default_factory=dict)
    route: Route | None = None
    fallbacks: tuple[str, ...] = ()
    """The models to try after ``req.model``'s retries, in order (of the client's provider)."""

    @property
    def chains(self) -> bool:
        """Whether the call may take more than one attempt (retries or fallbacks)."""
        return bool(self.fallbacks) or self.retries > 0

    @property
    def retries(self) -> int:
        r = self.route.retries if self.route is not None else None
        return DEFAULT_RETRIES if r is None else r

    @property
    def max_wait_s(self) -> float:
        w = self.route.max_wait_s if self.route is not None else None
        return DEFAULT_MAX_WAIT_S if w is None else w

    @property
    def backoff_s(self) -> float:
        b = self.route.backoff_s if self.route is not None else None
        return BACKOFF_INITIAL_S if b is None else b

    def attempt(self, model: str) -> CallRequest:
        """The request of an attempt with ``model`` (a fallback): same body, another model."""
        if model == self.req.model:
            return self.req
        return replace(self.req, model=model, body={**self.req.body, "model": model})
