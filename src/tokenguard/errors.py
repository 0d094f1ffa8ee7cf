"""The exceptions tokenguard raises. None of them subclasses a vendor SDK's error."""

from __future__ import annotations

from decimal import Decimal

__all__ = [
    "BudgetExceeded",
    "ConfigError",
    "PolicyViolation",
    "StoreError",
    "StoreUnavailable",
    "TokenguardError",
]


class TokenguardError(Exception):
    """The base of every error tokenguard raises on its own account."""


class ConfigError(TokenguardError, ValueError):
    """A policy file, argument or store URI is invalid.

    Raised when a :class:`~tokenguard.Guard` (or another policy object) is built, never at call time.
    It is also a :class:`ValueError`, so code that validates arguments the usual way catches it.
    """


class PolicyViolation(TokenguardError):
    """A policy refused a call before it was sent (for example a model with no known price
    under a hard budget, a blocked use case or sensitive data)."""


class StoreError(TokenguardError):
    """A store backend failed (file, connection, credentials, timeout). The Guard applies its
    ``on_store_error`` policy to these during calls; reading the ledger raises them as they are."""


class StoreUnavailable(TokenguardError):
    """The store cannot be reached and the Guard was built with ``on_store_error="closed"``."""


class BudgetExceeded(TokenguardError):
    """A call would take a budget past its hard cap; raised before the request is sent.

    The attributes carry the facts the message states, so code can react without parsing text.
    """

    def __init__(
        self,
        *,
        budget: str,
        spent_usd: Decimal,
        reserved_usd: Decimal,
        estimate_usd: Decimal,
        cap_usd: Decimal,
    ) -> None:
        self.budget = budget
        self.spent_usd = spent_usd
        self.reserved_usd = reserved_usd
        self.estimate_usd = estimate_usd
        self.cap_usd = cap_usd
        super().__init__(
            f"budget {budget!r} would exceed its hard cap: spent ${spent_usd}, reserved ${reserved_usd} "
            f"by calls in flight, this call's estimate ${estimate_usd}, cap ${cap_usd}. "
            f"The request was not sent. To go on, ask an approver for an exception "
            f"(guard.grant_exception({budget!r}, extra_usd=..., approved_by=..., reason=..., expires_at=...)), "
            f"lower the call's max output tokens, or wait for the next budget period."
        )
