"""The Guard: wires store, pricing and telemetry, and runs each governed call through the pipeline.

A call's life, in the order of DESIGN.md's pipeline::

    adapter in  -> Guard.begin():  context (tags, task) -> estimate -> span start      (steps 1-6)
    vendor call  (providers/wrapping.py)
    adapter out -> Call.settle():  price real usage -> ledger record -> span end, metrics (steps 7-8)

``Call.settle`` runs exactly once per call, whatever happens to it (success, vendor error, stream
abandoned, closed or collected). Budgets, routing and policy (steps 3 and 5) hook into ``begin``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from . import semconv as sc
from .budgets import Budget, BudgetEvent, BudgetStatus, Grant, from_nano, to_nano
from .context import Task, _route_var, _tags_var, _task_var
from .errors import BudgetExceeded, ConfigError, PolicyViolation, StoreUnavailable
from .nudges import Nudge, NudgePolicy, Nudger
from .periods import window
from .pricing import Price, PriceBook, Rates, Usage, to_decimal
from .providers.base import CallRequest, CallResult
from .records import CallRecord, CallStatus, TaskRecord
from .routing import AUTO, Plan, Route, Unroutable, choose_model, effective, model_matches
from .spool import Spool
from .stores import CallQuery, Store, TaskQuery, open_store
from .stores.base import BudgetKey, Charge, Review, Standing
from .telemetry import Telemetry
from .tokens import DEFAULT_MAX_OUTPUT_TOKENS, estimate_request, preload
from .usecases import Binding, Catalog, Risk, SensitivePolicy, Tier, UseCase, sensitive_actions

if TYPE_CHECKING:
    from opentelemetry.metrics import MeterProvider
    from opentelemetry.trace import Span, TracerProvider

    from .providers.base import Adapter
    from .reports import Reports
    from .sensitive import Detector, Scanner

__all__ = ["Call", "Guard", "configure", "default_guard", "wrap"]

log = logging.getLogger("tokenguard")

ClientT = TypeVar("ClientT")
StoreErrorPolicy = Literal["open", "closed"]
UnknownPricePolicy = Literal["warn", "block"]


def _new_id() -> str:
    return os.urandom(16).hex()


class Call:
    """One governed call in flight: what was decided before it was sent, and its settlement."""

    __slots__ = (
        "adapter",
        "attempt",
        "budgets",
        "chain_id",
        "decisions",
        "estimate",
        "first_chunk_at",
        "guard",
        "input_point",
        "nudges",
        "plan",
        "rates",
        "reason",
        "req",
        "reservation",
        "server",
        "settled",
        "span",
        "started",
        "t0",
        "tags",
        "task",
    )

    def __init__(
        self,
        guard: Guard,
        adapter: Adapter,
        req: CallRequest,
        server: tuple[str, int | None] | None,
        plan: Plan | None = None,
        attempt: int = 1,
        reason: str | None = None,
        chain_id: str | None = None,
    ):
        self.guard = guard
        self.adapter = adapter
        self.req = req
        self.server = server
        self.plan = plan
        self.attempt = attempt
        self.reason = reason
        self.chain_id = chain_id
        self.settled = False
        self.first_chunk_at: float | None = None
        self.decisions: list[str] = list(plan.decisions) if plan is not None else []
        if reason is not None:
            self.decisions.append(f"route:{reason}")
        self.nudges: list[tuple[str, str]] = []  # (kind, message)
        self.span: Span | None = None
        self.estimate: Decimal | None = None
        self.rates: Rates | None = None
        self.input_point = 0
        self.budgets: tuple[Budget, ...] = ()
        self.reservation: tuple[str, tuple[BudgetKey, ...]] | None = None
        # Step 2: the context in force where the call was made.
        self.tags = _tags_var.get()
        self.task = _task_var.get()
        self.started = datetime.now(timezone.utc)
        self.t0 = time.perf_counter()

    def settle(self, result: CallResult | None, status: CallStatus, error: BaseException | None = None) -> None:
        """Step 8: price the real usage, write the ledger record, end the span, record metrics.

        Idempotent: only the first settlement counts. Never raises into the caller's code.
        """
        if self.settled:
            return
        self.settled = True
        end_ns = time.time_ns()
        latency = time.perf_counter() - self.t0
        try:
            self.guard._settle(self, result, status, error, latency, end_ns)
        except Exception:  # pragma: no cover - a bug in tokenguard must not break the user's call
            log.exception("tokenguard failed to settle a call; the call itself was not affected")

    def chunk(self) -> None:
        """Note that a stream chunk arrived (for time to first chunk)."""
        if self.first_chunk_at is None:
            self.first_chunk_at = time.perf_counter()


class Guard:
    """Holds policy, store, pricing and telemetry; governs the clients it wraps.

    All arguments are keyword-only:

    * ``store``: a store URI (``"memory://"``, ``"sqlite:///path.db"``, ``"redis://host:port/db"``)
      or a Store. The URI is checked now; the store is connected on first use.
    * ``prices``: overrides and additions, ``{"<model>": tg.Price(...)}`` or plain mappings with the
      same keys; they win over genai-prices' data.
    * ``on_store_error``: ``"open"`` (calls go on when the store fails; records are kept) or
      ``"closed"`` (calls are refused before sending).
    * ``tracer_provider`` / ``meter_provider``: OpenTelemetry providers; ``None`` = the global ones.
    * ``capture_content``: put prompt and completion text on spans (off by default).
    * ``metric_tags``: tag keys that become metric attributes (keep them low-cardinality).
    * ``telemetry``: ``False`` turns spans and metrics off entirely.
    * ``on_unknown_price``: for a model with no known price, ``"warn"`` (record it with
      ``cost_usd=None`` and log a warning once per model) or ``"block"`` (refuse it before sending
      with :class:`~tokenguard.PolicyViolation`).
    * ``budgets``: :class:`~tokenguard.Budget` limits checked before each call is sent.
    * ``admit_unpriced``: let calls to a model with no known price through budgets that match them
      (by default such calls are refused by any budget in scope: their cost cannot be bounded).
    * ``reservation_ttl_s``: how long a call's reservation holds if its process dies mid-call; a
      stream being read keeps its reservation alive.
    * ``grants``: exceptions approved in the policy file (mappings with ``id``, ``budget``,
      ``extra_usd``, ``approved_by``, ``reason``, ``expires_at``), brought into the store on first
      use: new ids are added, edited ones updated, revoked ones stay revoked.
    * ``spool_dir``: where settlements wait while the store is down (default: a ``tokenguard-spool``
      folder in the temporary directory), replayed when it answers again.
    * ``on_event``: called with a :class:`~tokenguard.budgets.BudgetEvent` once per budget,
      threshold and period (alert, review, exceeded, exception used), across processes.
    * ``routes``: :class:`~tokenguard.Route` policies applied to the calls their ``scope`` matches
      (under any ``tg.route(...)`` in force); see :mod:`tokenguard.routing`.
    * ``use_cases``: the :class:`~tokenguard.UseCase` catalog that ``tg.task(name)`` binds;
      ``tiers`` overrides the risk tiers' defaults (:class:`~tokenguard.Tier` or mappings of its
      fields); ``default_risk`` is the tier of tasks not in the catalog (``"low"`` when there is a
      catalog; without one, setting it binds every task to that tier).
    * ``sensitive_data``: what to do with sensitive data in calls outside a use case: an action
      (``"allow"``, ``"flag"``, ``"redact"``, ``"block"``) or ``{kind: action}``. Default ``"allow"``
      (not scanned).
    * ``detectors``: sensitive-data detectors added to the built-in ones (your own
      :class:`~tokenguard.sensitive.Detector`, or :class:`~tokenguard.sensitive.PresidioDetector`);
      their kinds can be named in ``sensitive_data`` policies.
    * ``nudges``: a :class:`~tokenguard.NudgePolicy` (or a mapping of its fields); ``False`` turns
      nudges off.
    """

    def __init__(
        self,
        *,
        store: str | Store = "memory://",
        prices: Mapping[str, Price | Mapping[str, Any]] | None = None,
        on_store_error: StoreErrorPolicy = "open",
        tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None,
        capture_content: bool = False,
        metric_tags: Sequence[str] = ("team", "app"),
        telemetry: bool = True,
        on_unknown_price: UnknownPricePolicy = "warn",
        budgets: Sequence[Budget] = (),
        admit_unpriced: bool = False,
        reservation_ttl_s: float = 600.0,
        on_event: Callable[[BudgetEvent], None] | None = None,
        spool_dir: str | os.PathLike[str] | None = None,
        grants: Sequence[Mapping[str, Any]] = (),
        routes: Sequence[Route] = (),
        use_cases: Sequence[UseCase] = (),
        tiers: Mapping[str, Tier | Mapping[str, Any]] | None = None,
        default_risk: Risk | None = None,
        sensitive_data: SensitivePolicy = "allow",
        detectors: Sequence[Detector] = (),
        nudges: NudgePolicy | Mapping[str, Any] | bool = True,
    ) -> None:
        if on_store_error not in ("open", "closed"):
            raise ConfigError(f"on_store_error must be 'open' or 'closed', got {on_store_error!r}")
        if on_unknown_price not in ("warn", "block"):
            raise ConfigError(f"on_unknown_price must be 'warn' or 'block', got {on_unknown_price!r}")
        self.on_unknown_price: UnknownPricePolicy = on_unknown_price
        self.budgets = _check_budgets(budgets)
        self.admit_unpriced = bool(admit_unpriced)
        if not reservation_ttl_s > 0:
            raise ConfigError(f"reservation_ttl_s must be > 0 seconds, got {reservation_ttl_s!r}")
        self.reservation_ttl_s = float(reservation_ttl_s)
        self.on_event = on_event
        self._charges: dict[str, tuple[datetime, datetime, Charge]] = {}
        self._config_grants = []
        for i, spec in enumerate(grants):
            try:
                self._config_grants.append(self._config_grant(spec))
            except ConfigError as exc:
                label = spec.get("id") if isinstance(spec, Mapping) else None
                raise ConfigError(f"grants[{i}] ({label!r}): {exc}") from None
        self.spool = Spool(spool_dir, store if isinstance(store, str) else f"{type(store).__name__}-{id(store)}")
        if isinstance(metric_tags, str) or not all(isinstance(k, str) for k in metric_tags):
            raise ConfigError(f"metric_tags must be a sequence of tag keys, got {metric_tags!r}")
        self.store = open_store(store)
        self.on_store_error: StoreErrorPolicy = on_store_error
        self.prices = PriceBook(prices)
        self.telemetry = Telemetry(
            tracer_provider=tracer_provider,
            meter_provider=meter_provider,
            capture_content=bool(capture_content),
            metric_tags=metric_tags,
            enabled=bool(telemetry),
        )
        if isinstance(routes, Route) or not all(isinstance(r, Route) for r in routes):
            raise ConfigError("routes must be a sequence of tg.Route(...)")
        self.routes = tuple(routes)
        self.detectors = _check_detectors(detectors)
        # (importing the scanner compiles its patterns: only when a policy may scan)
        scans = bool(detectors or use_cases or tiers or sensitive_data != "allow")
        kinds = _kinds_of(self.detectors) if scans else ()
        self.catalog = Catalog.build(use_cases, tiers, default_risk, kinds)
        self.sensitive = sensitive_actions(sensitive_data, "sensitive_data", kinds)
        self._scanners: dict[frozenset[str], Scanner] = {}
        self._belonging: dict[tuple[str, str], bool] = {}
        self.nudger = _nudger(nudges)
        self._unpriced_warned: set[str] = set()
        self._running_tasks: dict[str, Task] = {}
        self._lock = threading.Lock()
        # genai-prices' data (~0.2 s) and the tokenizer's encoding (~0.4 s) load now, off the
        # caller's thread, not on the first call. Both are once per process and idempotent.
        threading.Thread(target=self._warm_up, name="tokenguard-warm-up", daemon=True).start()

    def _warm_up(self) -> None:
        self.prices.load()
        preload()

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], **overrides: Any) -> Guard:
        """Build a Guard from a TOML policy file (see :mod:`tokenguard.config`).

        Keyword ``overrides`` are ``Guard(...)`` arguments that win over the file's, for what a file
        cannot hold (e.g. ``tracer_provider=``)."""
        from .config import load_guard_kwargs

        path = Path(path)
        kwargs = {**load_guard_kwargs(path), **overrides}
        try:
            return cls(**kwargs)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None

    # -- wrapping ------------------------------------------------------------------------------

    def wrap(self, client: ClientT) -> ClientT:
        """Govern ``client`` (``OpenAI``, ``AsyncOpenAI``, ``Anthropic`` or ``AsyncAnthropic``).

        Returns the same client object, still an instance of its class, whose model calls are now
        attributed, priced, traced and recorded. ``with_options()`` / ``copy()`` results stay
        governed. Anything else raises ``TypeError``.
        """
        from .providers.wrapping import wrap_client

        return wrap_client(self, client)

    # -- the pipeline --------------------------------------------------------------------------

    def plan(self, adapter: Adapter, req: CallRequest, server: tuple[str, int | None] | None) -> Plan | None:
        """Step 3, once per governed call (before any attempt): the use case's risk tier, the
        sensitive-data scan, routing. ``None`` when no policy applies, so the call goes as asked.
        A refusal is recorded as a ``blocked`` call and raised as :class:`PolicyViolation`."""
        task = _task_var.get()
        binding = self.catalog.bind(task.name) if task is not None and self.catalog else None
        route = effective(self.routes, _tags_var.get(), req.model) if self.routes or _route_var.get() else None
        sensitive = binding.sensitive if binding is not None else self.sensitive
        if binding is None and route is None and not sensitive and req.model != AUTO:
            return None
        plan = Plan(req=req, requested=req.model, route=route)
        decisions: list[str] = []
        try:
            if binding is not None:
                self._check_use_case(binding, decisions)
            if sensitive:
                self._scan(adapter, plan, sensitive, decisions, binding)
            self._route(plan, binding, decisions)
        except PolicyViolation as error:
            plan.decisions = tuple(decisions)
            call = Call(self, adapter, plan.req, server, plan, reason=plan.reason)
            self._prepare(call)
            if "route:context-length:block" in decisions and self.nudger is not None:
                call.nudges.append(("context_length", str(error)))  # the refusal is also advice
            call.settle(None, "blocked")
            for kind, message in call.nudges:
                Nudger.deliver(kind, message)
            raise error from None
        plan.decisions = tuple(decisions)
        return plan

    def _check_use_case(self, binding: Binding, decisions: list[str]) -> None:
        name = binding.name
        if binding.requires_approval and not _tags_var.get().get(binding.approval_tag):
            decisions.append(f"usecase:{name}:block")
            who = f" Approvals are granted by {binding.approver}." if binding.approver else ""
            raise PolicyViolation(
                f"use case {name!r} is {binding.risk} risk and needs an approval reference before any call is "
                f"sent; none is in force. The request was not sent. Get an approval id and run the task with it: "
                f"tg.task({name!r}, {binding.approval_tag}='<approval id>') or "
                f"tg.tags({binding.approval_tag}='<approval id>').{who}"
            )
        decisions.append(f"usecase:{name}:allow")

    def _scan(
        self,
        adapter: Adapter,
        plan: Plan,
        actions: Mapping[str, str],
        decisions: list[str],
        binding: Binding | None,
    ) -> None:
        """Scan the request's input text; flag, redact or refuse per kind found."""
        from .sensitive import redact_json

        body = plan.req.body
        keys = [k for k in adapter.input_keys.get(plan.req.api, ()) if body.get(k) is not None]
        counts: dict[str, int] = {}
        redacted: dict[str, Any] = {}
        scanner = self._scanner(actions)
        for key in keys:
            new, found = redact_json(scanner, body[key])
            redacted[key] = new
            for kind, n in found.items():
                counts[kind] = counts.get(kind, 0) + n
        if not counts:
            return
        plan.findings = counts
        found_actions = {kind: actions[kind] for kind in counts}
        decisions.extend(f"sensitive:{kind}:{found_actions[kind]}" for kind in sorted(counts))
        blocked = sorted(k for k, a in found_actions.items() if a == "block")
        if blocked:
            policy = f"use case {binding.name!r}" if binding is not None else "this Guard (sensitive_data=...)"
            what = ", ".join(f"{counts[k]} {k}" for k in blocked)
            raise PolicyViolation(
                f"the request contains sensitive data ({what}) that the policy of {policy} blocks. The request "
                f"was not sent. Remove it from the prompt (tg.scan(text) shows where it is), or use a use case "
                f"whose sensitive_data policy redacts it."
            )
        to_redact = {k for k, a in found_actions.items() if a == "redact"}
        if not to_redact:
            return
        if to_redact != set(counts):  # some kinds are only flagged: redact the others alone
            only = self._scanner(dict.fromkeys(to_redact, "redact"))
            redacted = {key: redact_json(only, body[key])[0] for key in keys}
        plan.req = replace(plan.req, body={**body, **redacted})

    def _scanner(self, actions: Mapping[str, str]) -> Scanner:
        kinds = frozenset(actions)
        scanner = self._scanners.get(kinds)
        if scanner is None:
            from .sensitive import Scanner

            scanner = self._scanners[kinds] = Scanner(self.detectors or None, kinds=kinds)
        return scanner

    def _route(self, plan: Plan, binding: Binding | None, decisions: list[str]) -> None:
        """Choose the model (:func:`~tokenguard.routing.choose_model`) and the fallbacks. A
        refusal adds the decision ``route:<rule>:block`` for the rule that could not route."""
        req, route = plan.req, plan.route
        try:
            model, reason = choose_model(
                req.provider,
                req.model,
                route,
                binding,
                belongs=self._belongs,
                input_tokens=lambda m: estimate_request(req.provider, req.api, m, req.body).point,
                in_review=self._in_review,
            )
        except Unroutable as exc:
            decisions.append(f"route:{exc.rule}:block")
            raise PolicyViolation(str(exc)) from None
        if route is not None and route.fallbacks:
            plan.fallbacks = tuple(
                m for m in dict.fromkeys(route.fallbacks) if m != model and self._belongs(req.provider, m)
            )
        if reason is not None:
            plan.reason = reason
            plan.req = plan.attempt(model)

    def _belongs(self, provider: str, model: str) -> bool:
        """Whether ``model`` can be sent through a ``provider`` client: it is priced for that
        provider, or at least not known as another provider's model."""
        key = (provider, model)
        known = self._belonging.get(key)
        if known is None:
            now = datetime.now(timezone.utc)
            known = self.prices.rates(provider, model, now) is not None or all(
                self.prices.rates(p, model, now) is None for p in _PROVIDERS if p != provider
            )
            self._belonging[key] = known
        return known

    def _in_review(self, model: str) -> bool:
        """Whether a budget matching this call with ``review_action="downgrade"`` is in review."""
        tags, now = _tags_var.get(), datetime.now(timezone.utc)
        for b in self.budgets:
            if b.review_action != "downgrade" or not b.matches(tags, model):
                continue
            try:
                self._apply_config_grants()
                st = self.store.standing((b.name, b.window_id(now)), now)
            except Exception:
                log.warning("tokenguard could not read budget %r to decide a downgrade; the call is not downgraded")
                return False
            cap = from_nano(to_nano(b.cap_usd) + st.grant_nano)
            state = b.state(from_nano(st.spent_nano), cap, from_nano(st.reserved_nano), st.refused)
            if state in ("review", "exceeded"):
                return True
        return False

    def begin(
        self,
        adapter: Adapter,
        req: CallRequest,
        server: tuple[str, int | None] | None,
        plan: Plan | None = None,
        *,
        attempt: int = 1,
        reason: str | None = None,
        chain_id: str | None = None,
    ) -> Call:
        """Steps 4-6 of one attempt up to sending: estimate, span, admission, nudges. Returns the
        call in flight. ``plan`` is what :meth:`plan` decided (``req`` is its request, or a
        fallback's); ``reason`` why this attempt uses ``req.model``."""
        call = Call(self, adapter, req, server, plan, attempt, reason, chain_id)
        self._prepare(call)
        if call.rates is None and self.on_unknown_price == "block":
            self._refuse_unpriced(call)
        if self.budgets:
            self._admit(call)
        if self.nudger is not None:
            self._nudge(call)
            for kind, message in call.nudges:
                try:
                    Nudger.deliver(kind, message)
                except Nudge:  # escalated by a warnings filter ("error"): the call is refused, and recorded
                    call.settle(None, "blocked")
                    raise
        return call

    def _prepare(self, call: Call) -> None:
        """Step 4, and the start of step 6: the call's cost estimate, and its span."""
        req = call.req
        try:
            self._estimate(call)
            # Step 6 starts here: the span covers the vendor call.
            call.span = self.telemetry.start_span(req, call.server)
        except Exception:  # tokenguard's own failure must not stop the user's call
            log.exception("tokenguard could not prepare a %s call; it goes on ungoverned by estimates", req.api)

    def _nudge(self, call: Call) -> None:
        """Context-length and smaller-model nudges for a call about to be sent (budget nudges are
        given at admission)."""
        nudger = self.nudger
        assert nudger is not None
        policy = nudger.policy
        task = call.task
        subject = task.name if task is not None else ""
        limit = policy.context_length_tokens
        if limit is not None and call.input_point > limit and nudger.due("context_length", subject):
            self._give(
                call,
                "context_length",
                f"tokenguard: this prompt is about {call.input_point} input tokens, above your organisation's "
                f"standard context length of {limit}. Trim the history, retrieve less, or summarise first: "
                f"input tokens are paid on every call.",
            )
        if task is not None and policy.smaller_model:
            nudger.seed(self._recent_calls, self._recent_tasks)
            plan = call.plan
            binding = self.catalog.bind(task.name) if self.catalog else None

            def allowed(model: str) -> bool:
                route = plan.route if plan is not None else None
                return (
                    (route is None or route.allows(model))
                    and (binding is None or not binding.allowed_models or model_matches(model, binding.allowed_models))
                    and self._belongs(call.req.provider, model)
                )

            advice = nudger.smaller_model(task.name, call.req.model, allowed)
            if advice is not None and nudger.due("smaller_model", f"{task.name}:{call.req.model}"):
                self._give(call, "smaller_model", advice)

    def _give(self, call: Call, kind: str, message: str) -> None:
        """Attach a nudge to the call (delivered as a warning and a log line once it is admitted)."""
        call.nudges.append((kind, message))
        if call.span is not None and call.span.is_recording():
            call.span.add_event(sc.EVENT_NUDGE, {sc.NUDGE_KIND: kind, sc.NUDGE_MESSAGE: message})

    def _recent_calls(self, since: datetime) -> Iterator[CallRecord]:
        return self.store.calls(CallQuery(since=since))

    def _recent_tasks(self, since: datetime, until: datetime) -> Iterator[TaskRecord]:
        return self.store.tasks(TaskQuery(since=since, until=until))

    def _admit(self, call: Call) -> None:
        """Step 5: reserve the estimate in every matching budget at once, or refuse the call."""
        req = call.req
        matching = tuple(b for b in self.budgets if b.matches(call.tags, req.model))
        if not matching:
            return
        call.budgets = matching
        if call.estimate is None:
            if not self.admit_unpriced:
                self._refuse_unpriced(call, budget=matching[0].name)
            estimate_nano = 0
        else:
            estimate_nano = to_nano(call.estimate, up=True)
        now = call.started
        charges = [self._charge(b, now, estimate_nano) for b in matching]
        rid = _new_id()
        try:
            self._apply_config_grants()
            admission = self.store.admit(rid, charges, now, self.reservation_ttl_s)
        except Exception as exc:
            self._store_failed(call, exc, "admit")
            # Let through unchecked (fail open): its cost still counts against the budgets at settle.
            call.reservation = (rid, tuple(c.key for c in charges))
            return
        for charge, budget, standing in zip(charges, matching, admission.standings, strict=True):
            cap = from_nano(charge.cap_nano + standing.grant_nano)
            state = budget.state(
                from_nano(standing.spent_nano), cap, from_nano(standing.reserved_nano), standing.refused
            )
            call.decisions.append(f"budget:{budget.name}:{state}")
            if state == "review" and budget.review_action == "downgrade":
                call.decisions.append(f"budget:{budget.name}:downgrade")
            if state in ("alert", "review") and self.nudger is not None and self.nudger.policy.budget_alert:
                spent = from_nano(standing.spent_nano)
                if self.nudger.due("budget_alert", budget.name):
                    self._give(
                        call,
                        "budget_alert",
                        f"tokenguard: budget {budget.name!r} is at {spent / budget.limit_usd:.0%} of its "
                        f"${budget.limit_usd} {budget.period} limit (state {state}); calls are refused beyond "
                        f"${cap}. Prefer smaller models and shorter prompts for the rest of the period.",
                    )
            if (
                admission.admitted
                and standing.grant_nano
                and (standing.spent_nano + standing.reserved_nano + charge.estimate_nano > charge.cap_nano)
            ):
                call.decisions.extend(f"grant:{g.id}" for g in self.store.grants(budget.name) if g.active(now))
                self._event(call, budget, charge.key, "exception_used", standing, cap)
        if admission.admitted:
            call.reservation = (rid, tuple(c.key for c in charges))
            return
        i = admission.refused_index
        assert i is not None
        budget, charge, standing = matching[i], charges[i], admission.standings[i]
        cap = from_nano(charge.cap_nano + standing.grant_nano)
        call.decisions.append(f"budget:{budget.name}:blocked")
        self._event(call, budget, charge.key, "exceeded", standing, cap)
        error: Exception
        if admission.refused_reason == "review":
            error = PolicyViolation(
                f"budget {budget.name!r} is in review (spent ${from_nano(standing.spent_nano)} of "
                f"${budget.limit_usd}) and its review_action is 'block'. The request was not sent. "
                f"Ask an approver for an exception (guard.grant_exception({budget.name!r}, ...)) or wait "
                f"for the next period."
            )
        else:
            error = BudgetExceeded(
                budget=budget.name,
                spent_usd=from_nano(standing.spent_nano),
                reserved_usd=from_nano(standing.reserved_nano),
                estimate_usd=call.estimate or Decimal(0),
                cap_usd=cap,
            )
        call.settle(None, "blocked")
        raise error

    def _refuse_unpriced(self, call: Call, budget: str | None = None) -> None:
        model = call.req.model
        why = (
            f"budget {budget!r} applies and an unpriced call's cost cannot be bounded"
            if budget is not None
            else "this Guard refuses unpriced calls (on_unknown_price='block')"
        )
        way_out = "Guard(admit_unpriced=True)" if budget is not None else 'on_unknown_price="warn"'
        error = PolicyViolation(
            f"no price is known for {call.req.provider} model {model!r}, and {why}. The request was not sent. "
            f"Add a price with Guard(prices={{{model!r}: tg.Price(input_mtok=..., output_mtok=...)}}) or "
            f'[prices."{model}"] in tokenguard.toml, or use {way_out}.'
        )
        call.decisions.append("price:unknown")
        if budget is not None:
            call.decisions.append(f"budget:{budget}:blocked")
        self._warn_unpriced(call.req.provider, model)
        call.settle(None, "blocked")
        raise error

    def _estimate(self, call: Call) -> None:
        """Step 4: an upper bound of the call's cost (input bound + the most output it allows)."""
        req = call.req
        estimate = estimate_request(req.provider, req.api, req.model, req.body)
        call.input_point = estimate.point
        rates = self.prices.rates(req.provider, req.model, call.started)
        call.rates = rates
        if rates is not None:
            max_out = req.max_output_tokens
            if max_out is None:
                max_out = self.prices.context_window(req.provider, req.model) or DEFAULT_MAX_OUTPUT_TOKENS
            call.estimate = rates.upper_bound(estimate.bound, max_out)

    def _settle(
        self,
        call: Call,
        result: CallResult | None,
        status: CallStatus,
        error: BaseException | None,
        latency: float,
        end_ns: int,
    ) -> None:
        req = call.req
        decisions = call.decisions
        usage = result.usage if result is not None else None
        estimated = False
        if usage is None:
            if status == "cancelled" or (result is not None and (status == "ok" or result.output_chunks)):
                # The vendor sent no usage but got the prompt (an abandoned stream, or one cut by an
                # error after chunks arrived): estimate the input, count what streamed as output.
                usage = Usage(input_tokens=call.input_point, output_tokens=result.output_chunks if result else 0)
                estimated = True
            else:
                usage = Usage()
        elif usage.estimated:
            estimated = True
        response_model = result.response_model if result is not None else None

        cost: Decimal | None
        if status == "blocked":
            cost = Decimal(0)  # a refused call spends nothing
        else:
            rates = call.rates
            tier = result.service_tier if result is not None else None
            if (response_model and response_model != req.model) or tier:
                rates = self.prices.rates(
                    req.provider, response_model or req.model, call.started, tier, requested=req.model
                )
            if rates is None:
                cost = None
                decisions.append("price:unknown")
                self._warn_unpriced(req.provider, response_model or req.model)
            else:
                cost = rates.cost(usage)

        task = call.task
        if task is not None and cost:
            task.model_costs[req.model] = task.model_costs.get(req.model, Decimal(0)) + cost
        plan = call.plan
        record = CallRecord._trusted(
            {
                "id": _new_id(),
                "time": call.started,
                "latency_s": latency,
                "provider": req.provider,
                "operation": req.operation,
                "api": req.api,
                "request_model": req.model,
                "response_model": response_model,
                "stream": req.stream,
                "response_id": result.response_id if result is not None else None,
                "input_tokens": usage.input_tokens,
                "output_tokens": usage.output_tokens,
                "cache_read_tokens": usage.cache_read_tokens,
                "cache_write_tokens": usage.cache_write_tokens,
                "reasoning_tokens": usage.reasoning_tokens,
                "usage_estimated": estimated,
                "cost_usd": cost,
                "estimated_cost_usd": call.estimate,
                "tags": dict(call.tags),
                "task_id": task.id if task is not None else None,
                "task_name": task.name if task is not None else None,
                "status": status,
                "error_type": type(error).__name__ if error is not None else None,
                "decisions": tuple(decisions),
                "routed_from": plan.requested if plan is not None and plan.requested != req.model else None,
                "route_reason": call.reason,
                "chain_id": call.chain_id,
                "attempt": call.attempt,
                "findings": dict(plan.findings) if plan is not None else {},
                "nudges": tuple(kind for kind, _ in call.nudges),
            }
        )
        self._write(call, record)
        if call.span is not None:
            capture = self.telemetry.capture_content
            self.telemetry.end_span(
                call.span,
                record,
                result,
                time_to_first_chunk=(call.first_chunk_at - call.t0) if call.first_chunk_at is not None else None,
                input_messages=call.adapter.input_messages(req.api, req.body) if capture else None,
                end_time_ns=end_ns,
            )
        self.telemetry.record_metrics(record, call.server)

    def _write(self, call: Call, record: CallRecord) -> None:
        """Commit the call's cost to its budgets, release its reservation, append its record."""
        rid, keys = call.reservation if call.reservation is not None else (None, ())
        cost_nano = to_nano(record.cost_usd) if record.cost_usd else 0
        try:
            if self.spool.pending:
                self._replay_spool()
            standings = self.store.settle(rid, keys, cost_nano, record, datetime.now(timezone.utc))
        except Exception as exc:
            # The call happened: its cost must reach the ledger and the budgets once the store is
            # back. Keep it in this process's spool file, replayed in order on a later settlement.
            try:
                self.spool.add(rid, keys, cost_nano, record)
            except Exception:
                log.exception("tokenguard could neither store nor spool call record %r", record)
                return
            log.warning(
                "tokenguard's store failed (%s); call record %s is spooled to %s and will be replayed",
                type(exc).__name__,
                record.id,
                self.spool.path,
            )
            return
        # keys were built from call.budgets, in the same order
        for budget, key, standing in zip(call.budgets, keys, standings, strict=False):
            cap = from_nano(to_nano(budget.cap_usd) + standing.grant_nano)
            state = budget.state(from_nano(standing.spent_nano), cap, from_nano(standing.reserved_nano), refused=False)
            # Every threshold up to the state reached fires (once per period: the store dedups).
            for kind in _LADDER[: _LADDER_RANK[state]]:
                self._event(call, budget, key, kind, standing, cap)

    def _replay_spool(self) -> None:
        replayed = self.spool.replay(
            lambda rid, keys, cost, record: self.store.settle(rid, keys, cost, record, datetime.now(timezone.utc))
        )
        if replayed:
            log.warning("tokenguard replayed %d spooled call records into its store", replayed)

    def _config_grant(self, spec: Mapping[str, Any]) -> Grant:
        known = {"id", "budget", "extra_usd", "approved_by", "reason", "expires_at"}
        if not isinstance(spec, Mapping) or set(spec) != known:
            raise ConfigError(f"a grant needs exactly the keys {sorted(known)}, got {spec!r}")
        try:
            self._budget(spec["budget"])
        except KeyError as exc:
            raise ConfigError(str(exc.args[0])) from None
        amount = to_decimal(spec["extra_usd"], "extra_usd")
        expires = spec["expires_at"]
        if not isinstance(expires, datetime) or expires.tzinfo is None:
            raise ConfigError(f"expires_at must be a date-time with a UTC offset, got {expires!r}")
        if amount <= 0 or not str(spec["approved_by"]).strip() or not str(spec["reason"]).strip():
            raise ConfigError(f"a grant needs extra_usd > 0, approved_by and reason, got {spec!r}")
        return Grant(
            id=str(spec["id"]),
            budget=str(spec["budget"]),
            extra_usd=amount,
            approved_by=str(spec["approved_by"]),
            reason=str(spec["reason"]),
            created_at=datetime.now(timezone.utc),
            expires_at=expires.astimezone(timezone.utc),
        )

    def _apply_config_grants(self) -> None:
        """Bring the policy file's grants into the store: add new ones, update edited ones (keeping
        when they were first granted), and leave revoked ones revoked."""
        if self._config_grants:
            stored = {g.id: g for g in self.store.grants()}
            for grant in self._config_grants:
                old = stored.get(grant.id)
                if old is None:
                    self.store.add_grant(grant)
                elif not old.revoked and replace(old, created_at=grant.created_at) != grant:
                    self.store.add_grant(replace(grant, created_at=old.created_at))
            self._config_grants = []

    def _charge(self, budget: Budget, now: datetime, estimate_nano: int) -> Charge:
        # The period and the nano-dollar caps are computed once per period, not per call.
        cached = self._charges.get(budget.name)
        if cached is None or not (cached[0] <= now < cached[1]):
            start, end = budget.window(now)
            template = Charge(
                budget=budget.name,
                window=budget.window_id(now),
                cap_nano=to_nano(budget.cap_usd),
                estimate_nano=0,
                block_nano=to_nano(budget.limit_usd * budget.review_at) if budget.review_action == "block" else None,
                window_end=end,
            )
            cached = self._charges[budget.name] = (start or _EPOCH, end or _FOREVER, template)
        return replace(cached[2], estimate_nano=estimate_nano)

    def refresh(self, call: Call) -> None:
        """Keep a call's budget reservation alive (a long stream still being read)."""
        if call.reservation is None:
            return
        rid, keys = call.reservation
        try:
            self.store.refresh(rid, keys, datetime.now(timezone.utc), self.reservation_ttl_s)
        except Exception:
            log.warning("tokenguard could not refresh a reservation; it may expire before the stream ends")

    def _event(self, call: Call, budget: Budget, key: BudgetKey, kind: str, standing: Standing, cap: Decimal) -> None:
        """Fire a threshold event once per budget, kind and period across every process."""
        try:
            if not self.store.claim_event(key, kind):
                return
        except Exception:
            log.exception("tokenguard could not record a %s event of budget %r", kind, budget.name)
            return
        event = BudgetEvent(
            budget=budget.name,
            kind=kind,
            window=key[1],
            spent_usd=from_nano(standing.spent_nano),
            limit_usd=budget.limit_usd,
            cap_usd=cap,
        )
        if call.span is not None and call.span.is_recording():
            call.span.add_event(
                f"tokenguard.budget.{kind}",
                {
                    "tokenguard.budget.name": budget.name,
                    "tokenguard.budget.window": key[1],
                    "tokenguard.budget.spent_usd": float(event.spent_usd),
                    "tokenguard.budget.cap_usd": float(cap),
                },
            )
        log.warning(
            "tokenguard budget %r: %s (spent $%s of $%s, cap $%s)",
            budget.name,
            kind,
            event.spent_usd,
            budget.limit_usd,
            cap,
        )
        if self.on_event is not None:
            try:
                self.on_event(event)
            except Exception:
                log.exception("tokenguard's on_event hook raised on a %s event of budget %r", kind, budget.name)

    def _store_failed(self, call: Call, exc: Exception, what: str) -> None:
        problem = f"{type(exc).__name__} during {what}: {_scrub(str(exc))}"
        if self.on_store_error == "closed":
            error = StoreUnavailable(
                f"tokenguard's store cannot be reached ({problem}) and this Guard fails closed "
                f"(on_store_error='closed'). The request was not sent. Check the store, or use "
                f"on_store_error='open' to let calls through during an outage."
            )
            call.decisions.append("store:unavailable")
            call.settle(None, "blocked")
            raise error from None
        log.warning("tokenguard's store failed (%s); the call goes on unchecked (on_store_error='open')", problem)
        call.decisions.append("store:unavailable")

    def _warn_unpriced(self, provider: str, model: str) -> None:
        key = f"{provider}:{model}"
        if key not in self._unpriced_warned:
            self._unpriced_warned.add(key)
            outcome = (
                "its calls are refused (on_unknown_price='block')"
                if self.on_unknown_price == "block"
                else "its calls are recorded with cost_usd=None"
            )
            log.warning(
                "tokenguard has no price for %s model %r: %s. "
                "Add one with Guard(prices={%r: tg.Price(input_mtok=..., output_mtok=...)}) "
                'or [prices."%s"] in tokenguard.toml.',
                provider,
                model,
                outcome,
                model,
                model,
            )

    # -- tasks ---------------------------------------------------------------------------------

    def _start_task(self, task: Task) -> None:
        with self._lock:
            self._running_tasks[task.id] = task

    def _finish_task(self, task: Task, *, duration_s: float) -> None:
        with self._lock:
            self._running_tasks.pop(task.id, None)
        if self.nudger is not None:
            self.nudger.task_finished(task.name, task.outcome, task.model_costs)
        assert task.started_at is not None
        record = TaskRecord(
            id=task.id,
            name=task.name,
            tags=dict(task.tags),
            outcome=task.outcome,
            failure_reason=task.failure_reason,
            started_at=task.started_at,
            duration_s=duration_s,
        )
        try:
            self.store.append_task(record)
        except Exception:
            log.exception("tokenguard could not write task record %s to its store: %r", record.id, record)

    def review(
        self,
        task_id: str,
        *,
        accepted: bool,
        edit_distance: float | None = None,
        reviewer: str | None = None,
    ) -> None:
        """Record a human review of a task's result: was it accepted, and how much was it edited.

        ``edit_distance`` is yours to define (e.g. a normalised Levenshtein distance in ``[0, 1]``);
        it must be a non-negative number. Raises ``KeyError`` for an unknown task id.
        """
        if not isinstance(accepted, bool):
            raise TypeError(f"accepted must be True or False, got {accepted!r}")
        if edit_distance is not None and (
            isinstance(edit_distance, bool) or not isinstance(edit_distance, (int, float)) or not edit_distance >= 0
        ):
            raise ValueError(f"edit_distance must be a number >= 0 or None, got {edit_distance!r}")
        with self._lock:
            running = task_id in self._running_tasks
        if not running and not self.store.has_task(task_id):
            raise KeyError(f"no task with id {task_id!r} was recorded by this guard's store")
        self.store.review_task(
            task_id,
            Review(
                accepted=accepted,
                edit_distance=None if edit_distance is None else float(edit_distance),
                reviewer=reviewer,
            ),
        )

    # -- reading the ledger --------------------------------------------------------------------

    def records(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        tags: Mapping[str, str] | None = None,
        model: str | None = None,
        task_id: str | None = None,
        status: str | None = None,
    ) -> Iterator[CallRecord]:
        """Iterate the ledger, oldest first: one :class:`CallRecord` per governed call.

        ``since`` is inclusive, ``until`` exclusive; ``tags`` matches records carrying at least those
        tags; ``model`` matches the requested or the responding model.
        """
        return self.store.calls(
            CallQuery(
                since=_aware(since, "since"),
                until=_aware(until, "until"),
                tags=tags,
                model=model,
                task_id=task_id,
                status=status,
            )
        )

    def tasks(
        self,
        *,
        since: datetime | None = None,
        until: datetime | None = None,
        name: str | None = None,
        tags: Mapping[str, str] | None = None,
        outcome: str | None = None,
    ) -> Iterator[TaskRecord]:
        """Iterate finished tasks, oldest first, with their calls, cost and review."""
        return self.store.tasks(
            TaskQuery(since=_aware(since, "since"), until=_aware(until, "until"), name=name, tags=tags, outcome=outcome)
        )

    def spend(self, scope: Mapping[str, str] | None = None, period: str = "month") -> Decimal:
        """Committed spend (sum of ``cost_usd``) of the calls matching ``scope`` in the current
        calendar ``period`` (UTC). ``scope`` holds tags, and ``model`` for the billing model."""
        scope = dict(scope or {})
        model = scope.pop("model", None)
        start, end = window(period, datetime.now(timezone.utc))
        total = Decimal(0)
        for record in self.records(since=start, until=end, tags=scope, model=model):
            if record.cost_usd is not None:
                total += record.cost_usd
        return total

    # -- budgets -------------------------------------------------------------------------------

    def _budget(self, name: str) -> Budget:
        for b in self.budgets:
            if b.name == name:
                return b
        known = ", ".join(b.name for b in self.budgets) or "none"
        raise KeyError(f"no budget named {name!r} (this Guard's budgets: {known})")

    def budget_status(self) -> list[BudgetStatus]:
        """Per budget, its current period: spent, reserved, limit, cap with grants, and state."""
        now = datetime.now(timezone.utc)
        self._apply_config_grants()
        out = []
        for b in self.budgets:
            start, end = b.window(now)
            st = self.store.standing((b.name, b.window_id(now)), now)
            cap = from_nano(to_nano(b.cap_usd) + st.grant_nano)
            spent, reserved = from_nano(st.spent_nano), from_nano(st.reserved_nano)
            out.append(
                BudgetStatus(
                    name=b.name,
                    period_start=start,
                    period_end=end,
                    limit_usd=b.limit_usd,
                    spent_usd=spent,
                    reserved_usd=reserved,
                    cap_usd=cap,
                    state=b.state(spent, cap, reserved, st.refused),
                )
            )
        return out

    def grant_exception(
        self,
        budget: str,
        extra_usd: Decimal | int | str,
        approved_by: str,
        reason: str,
        expires_at: datetime,
    ) -> Grant:
        """Raise ``budget``'s hard cap by ``extra_usd`` until ``expires_at``: an approved, audited,
        time-boxed exception, stored in the store so every process sees it."""
        self._budget(budget)
        amount = to_decimal(extra_usd, "extra_usd")
        if amount <= 0:
            raise ValueError(f"extra_usd must be > 0, got {extra_usd!r}")
        for what, value in (("approved_by", approved_by), ("reason", reason)):
            if not isinstance(value, str) or not value.strip():
                raise ValueError(f"{what} must say who approved the exception and why; got {value!r}")
        if not isinstance(expires_at, datetime) or expires_at.tzinfo is None:
            raise ValueError(f"expires_at must be a timezone-aware datetime, got {expires_at!r}")
        now = datetime.now(timezone.utc)
        if expires_at <= now:
            raise ValueError(f"expires_at {expires_at.isoformat()} is in the past: an exception must expire later")
        grant = Grant(
            id=_new_id()[:16],
            budget=budget,
            extra_usd=amount,
            approved_by=approved_by,
            reason=reason,
            created_at=now,
            expires_at=expires_at.astimezone(timezone.utc),
        )
        self.store.add_grant(grant)
        log.warning(
            "tokenguard budget %r: exception %s of $%s approved by %s until %s (%s)",
            budget,
            grant.id,
            amount,
            approved_by,
            grant.expires_at.isoformat(),
            reason,
        )
        return grant

    def revoke_exception(self, grant_id: str) -> Grant:
        """End an exception early. Raises ``KeyError`` for an unknown id."""
        grant = self.store.revoke_grant(grant_id)
        if grant is None:
            raise KeyError(f"no exception (grant) with id {grant_id!r}")
        return grant

    def exceptions(self, budget: str | None = None) -> list[Grant]:
        """Every exception granted (active, expired and revoked), oldest first."""
        self._apply_config_grants()
        return self.store.grants(budget)

    @property
    def reports(self) -> Reports:
        """Reports over this Guard's ledger: showback and chargeback, outcomes, budgets, the
        exceptions audit, governance (see :mod:`tokenguard.reports`)."""
        from .reports import Reports

        return Reports(self)

    def close(self) -> None:
        """Release the store's connections and files."""
        self.store.close()


_PROVIDERS = ("openai", "anthropic")


def _check_detectors(detectors: Sequence[Detector]) -> tuple[Detector, ...]:
    """The Guard's detectors: the built-in ones plus ``detectors`` (none: the built-ins, lazily)."""
    if not detectors:
        return ()
    from .sensitive import Scanner, builtin_detectors

    return Scanner([*builtin_detectors(), *detectors]).detectors  # validates them


def _kinds_of(detectors: Sequence[Detector]) -> tuple[str, ...]:
    from .sensitive import BUILTIN_KINDS

    return tuple(dict.fromkeys([*BUILTIN_KINDS, *(k for d in detectors for k in d.kinds)]))


def _nudger(nudges: NudgePolicy | Mapping[str, Any] | bool) -> Nudger | None:
    if nudges is False:
        return None
    if nudges is True:
        return Nudger(NudgePolicy())
    if isinstance(nudges, Mapping):
        known = NudgePolicy.__dataclass_fields__
        unknown = sorted(set(nudges) - set(known))
        if unknown:
            raise ConfigError(f"nudges: unknown key(s) {', '.join(unknown)} (known: {', '.join(known)})")
        nudges = NudgePolicy(**nudges)
    if not isinstance(nudges, NudgePolicy):
        raise ConfigError(f"nudges must be True, False, a tg.NudgePolicy or a mapping of its fields, got {nudges!r}")
    return Nudger(nudges) if nudges.enabled else None


_EPOCH = datetime.min.replace(tzinfo=timezone.utc)
_FOREVER = datetime.max.replace(tzinfo=timezone.utc)
_LADDER = ("alert", "review", "exceeded")
_LADDER_RANK = {"ok": 0, "alert": 1, "review": 2, "exceeded": 3}


_CREDENTIALS = re.compile(r"://[^/@\s]*@")


def _scrub(message: str) -> str:
    """A store's error message without any credentials of a URI it quotes."""
    return _CREDENTIALS.sub("://***@", message)


def _check_budgets(budgets: Sequence[Budget]) -> tuple[Budget, ...]:
    if isinstance(budgets, Budget) or not all(isinstance(b, Budget) for b in budgets):
        raise ConfigError("budgets must be a sequence of tg.Budget(...)")
    names = [b.name for b in budgets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"budget names must be unique; repeated: {', '.join(duplicates)}")
    return tuple(budgets)


def _aware(value: datetime | None, name: str) -> datetime | None:
    if value is not None and value.tzinfo is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc)), got naive {value!r}")
    return value


_default: Guard | None = None
_default_lock = threading.Lock()


def configure(guard: Guard | None = None, /, **kwargs: Any) -> Guard:
    """Set the process-wide default Guard and return it: ``guard`` itself (e.g. one built with
    :meth:`Guard.from_file`), or ``Guard(**kwargs)``."""
    global _default
    if guard is not None and kwargs:
        raise TypeError("configure() takes a Guard or Guard(...) keyword arguments, not both")
    if guard is not None and not isinstance(guard, Guard):
        raise TypeError(f"configure() takes a tg.Guard, got {type(guard).__name__}")
    guard = guard if guard is not None else Guard(**kwargs)
    with _default_lock:
        _default = guard
    return guard


def default_guard() -> Guard:
    """The process-wide default Guard: the one given to :func:`configure`, else one built on first
    use from the policy file named by the ``TOKENGUARD_CONFIG`` environment variable, else a
    Guard with defaults (``memory://``)."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                path = os.environ.get("TOKENGUARD_CONFIG")
                _default = Guard.from_file(path) if path else Guard()
    return _default


def wrap(client: ClientT) -> ClientT:
    """Govern ``client`` with the default Guard (see :meth:`Guard.wrap`)."""
    return default_guard().wrap(client)
