"""GL-account rules: which Sage Pro account a payment is booked to, and why.

Pure functions over plain values. `GlRule` rows become `GlRuleData` through
`GlRule.as_rule()`; a transaction is described by `GlFacts`. Rules are tried in
order (priority, then id); the first that matches wins, and every rule gets a line in
the trace saying whether it matched and, if not, why it was skipped. When no rule
matches, the connection's suspense account is used and the trace says so.
"""

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from fnmatch import fnmatchcase
from typing import Any

MATCHED = "matched"
SKIPPED = "skipped"

# PayTrace names brands in full ("American Express"); rules use short upper-case names.
BRAND_ALIASES = {
    "AMERICANEXPRESS": "AMEX",
    "AMEX": "AMEX",
    "MASTERCARD": "MASTERCARD",
    "MC": "MASTERCARD",
    "VISA": "VISA",
    "DISCOVER": "DISCOVER",
}


def normalize_card_brand(value: str) -> str:
    """`American Express` → `AMEX`, `MasterCard` → `MASTERCARD`; others upper-cased."""
    key = "".join(str(value or "").split()).upper()
    return BRAND_ALIASES.get(key, key)


def account_key(value: str) -> str:
    """Compare accounts the way Sage does: trimmed, upper case, without the mask's `-`."""
    return str(value or "").strip().upper().replace("-", "")


class Purpose:
    """What a GL rule chooses the account for. Receipts (the cash account a payment is
    booked to) are the default; the other documents of issue 14 have their own rules."""

    RECEIPT = "receipt"
    REFUND = "refund"  # the returns/refunds account a credit memo debits
    REFUND_FEE = "refund_fee"  # the fee a refund costs, when the processor charges one
    CHARGEBACK = "chargeback"  # the account an opened chargeback debits
    CHARGEBACK_LOSS = "chargeback_loss"  # the expense a lost chargeback ends in
    CHARGEBACK_FEE = "chargeback_fee"  # the processor's dispute fee

    CHOICES = (
        (RECEIPT, "Cash receipt (the account the payment is booked to)"),
        (REFUND, "Refund / credit memo (returns account)"),
        (REFUND_FEE, "Refund fee"),
        (CHARGEBACK, "Chargeback opened (chargeback account)"),
        (CHARGEBACK_LOSS, "Chargeback lost (expense)"),
        (CHARGEBACK_FEE, "Chargeback fee"),
    )


@dataclass(frozen=True)
class GlFacts:
    """What the rules may look at. `categories` is None when the order lines are unknown."""

    transaction_type: str = ""
    card_brand: str = ""
    channel: str = ""
    amount: Decimal = Decimal("0.00")
    currency: str = ""
    customer: str = ""
    invoice: str = ""
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class GlRuleData:
    account: str
    name: str = ""
    id: int | None = None
    priority: int = 100
    transaction_types: tuple[str, ...] = ()
    card_brands: tuple[str, ...] = ()
    channels: tuple[str, ...] = ()
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    currency: str = ""
    customer_pattern: str = ""
    invoice_pattern: str = ""
    product_category: str = ""
    purpose: str = Purpose.RECEIPT

    def skip_reason(self, facts: GlFacts) -> str:
        """Why this rule does not match `facts`, or "" when it does."""
        kind = (facts.transaction_type or "").upper()
        if self.transaction_types and kind not in self.transaction_types:
            return f"transaction type {kind or '(none)'} not in {','.join(self.transaction_types)}"
        brands = tuple(normalize_card_brand(b) for b in self.card_brands)
        brand = normalize_card_brand(facts.card_brand)
        if brands and brand not in brands:
            return f"card brand {brand or '(none)'} not in {','.join(brands)}"
        channel = (facts.channel or "").upper()
        if self.channels and channel not in self.channels:
            return f"channel {channel or '(none)'} not in {','.join(self.channels)}"
        if self.amount_min is not None and facts.amount < self.amount_min:
            return f"amount {facts.amount} below {self.amount_min}"
        if self.amount_max is not None and facts.amount > self.amount_max:
            return f"amount {facts.amount} above {self.amount_max}"
        currency = (facts.currency or "").upper()
        if self.currency and currency != self.currency.upper():
            return f"currency {currency or '(none)'} is not {self.currency.upper()}"
        if self.customer_pattern and not _glob(facts.customer, self.customer_pattern):
            return f"customer {facts.customer or '(none)'} does not match {self.customer_pattern}"
        if self.invoice_pattern and not _glob(facts.invoice, self.invoice_pattern):
            return f"invoice {facts.invoice or '(none)'} does not match {self.invoice_pattern}"
        if self.product_category:
            if facts.categories is None:
                return f"order lines unknown, cannot check category {self.product_category}"
            wanted = self.product_category.strip().upper()
            if wanted not in {c.strip().upper() for c in facts.categories}:
                return f"no order line in category {self.product_category}"
        return ""

    def describe(self) -> str:
        return f"#{self.id or '-'} {self.name or '(unnamed)'} → {self.account}"


@dataclass(frozen=True)
class GlStep:
    """One line of the trace: a rule, what happened to it, and why."""

    rule: int | None
    name: str
    result: str
    reason: str
    account: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "result": self.result,
            "reason": self.reason,
            "account": self.account,
        }


@dataclass(frozen=True)
class GlChoice:
    """The account chosen ("" when none), the winning rule, and the full trace."""

    account: str
    rule: GlRuleData | None
    trace: tuple[GlStep, ...]
    used_suspense: bool = False

    def trace_dicts(self) -> list[dict[str, Any]]:
        return [step.as_dict() for step in self.trace]


def _glob(value: str, pattern: str) -> bool:
    return fnmatchcase(str(value or "").strip().upper(), pattern.strip().upper())


def sort_rules(rules: Iterable[GlRuleData]) -> list[GlRuleData]:
    return sorted(rules, key=lambda r: (r.priority, r.id or 0))


def choose_gl_account(
    facts: GlFacts, rules: Sequence[GlRuleData], suspense_account: str = ""
) -> GlChoice:
    """Return the first matching rule's account (by priority, then id), with a trace.

    Rules after the winner are still checked so the trace can say whether they would
    have matched ("rule #3 matched first") or not (their own reason). With no match the
    suspense account is used, recorded as a trace line with `rule: None`.
    """
    steps: list[GlStep] = []
    winner: GlRuleData | None = None
    for rule in sort_rules(rules):
        reason = rule.skip_reason(facts)
        if winner is None and not reason:
            winner = rule
            steps.append(
                GlStep(
                    rule.id, rule.name, MATCHED, "all conditions match", rule.account
                )
            )
            continue
        if not reason:
            assert winner is not None  # a rule that matches is the winner when first
            reason = f"would match, but rule #{winner.id} {winner.name} matched first"
        steps.append(GlStep(rule.id, rule.name, SKIPPED, reason, rule.account))
    if winner is not None:
        return GlChoice(winner.account, winner, tuple(steps))
    if suspense_account.strip():
        steps.append(
            GlStep(
                None,
                "suspense account",
                MATCHED,
                "no rule matched: the connection's suspense account",
                suspense_account.strip(),
            )
        )
        return GlChoice(suspense_account.strip(), None, tuple(steps), True)
    steps.append(
        GlStep(
            None,
            "suspense account",
            SKIPPED,
            "no rule matched and the connection has no suspense account",
        )
    )
    return GlChoice("", None, tuple(steps))


def account_problem(account: str, chart: dict[str, bool]) -> tuple[str, str] | None:
    """Why Sage Pro would refuse `account` (its error code and a message), or None.

    `chart` maps `account_key(glacnt)` to whether the account is active (deleted
    accounts are not in it at all, as `GET /gl-accounts` omits them).
    """
    key = account_key(account)
    if key not in chart:
        return (
            "ACCOUNT_NOT_FOUND",
            f"account {account.strip()} is not in Sage Pro's chart of accounts",
        )
    if not chart[key]:
        return (
            "ACCOUNT_INACTIVE",
            f"account {account.strip()} is inactive in Sage Pro (GLSTAT 'I')",
        )
    return None


# What a Sage Pro GL account code may hold: `GLACNT.GLACNT` is C(24), upper case,
# letters and digits with the mask's dashes.
ACCOUNT_WIDTH = 24
_ACCOUNT_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-")


def account_format_problem(account: str) -> str | None:
    """Why `account` cannot be a Sage Pro GL account code at all, or None."""
    text = str(account or "").strip()
    if not text:
        return None
    if len(text) > ACCOUNT_WIDTH:
        return (
            f"{text} is {len(text)} characters; a Sage Pro GL account has at most "
            f"{ACCOUNT_WIDTH}"
        )
    bad = sorted({c for c in text.upper() if c not in _ACCOUNT_CHARS})
    if bad:
        return (
            f"{text} has {' '.join(repr(c) for c in bad)}; a Sage Pro GL account is "
            "letters, digits and dashes, e.g. 1100-00"
        )
    return None


def chart_from(accounts: Iterable[dict[str, Any]]) -> dict[str, bool]:
    """Build the `account_problem` chart from `GET /gl-accounts` results."""
    return {
        account_key(a.get("glacnt", "")): bool(a.get("active", True)) for a in accounts
    }
