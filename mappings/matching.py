"""Matching a payment to open invoices: pure functions over plain values.

A payment is applied without a person only when its reference matches an invoice
exactly (or exactly after normalising, when the rule says so), the amount is within
the rule's tolerance and the customer is consistent. Anything else is a candidate list
for a reviewer, scored from its parts: reference (exact, then normalised, then fuzzy;
fuzzy never applies by itself, and "991" never matches "INV-99910"), amount, customer,
date proximity and the card's payment history.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Literal

from rapidfuzz import fuzz

from mappings.kinds import ReviewKind

CENT = Decimal("0.01")
ZERO = Decimal("0")
DEFAULT_PREFIXES = ("INV-", "INV", "SO-", "#")
WEIGHTS = {
    "reference": 0.45,
    "amount": 0.25,
    "customer": 0.15,
    "date": 0.05,
    "history": 0.10,
}
FUZZY_THRESHOLD = 0.8


@dataclass(frozen=True)
class Payment:
    transaction_id: str
    amount: Decimal
    reference: str = ""
    customer: str = ""
    card_last4: str = ""
    channel: str = ""
    paid_on: date | None = None


@dataclass(frozen=True)
class Invoice:
    invno: str
    custno: str
    balance: Decimal
    invamt: Decimal = ZERO
    invdte: date | None = None


@dataclass(frozen=True)
class Rule:
    name: str = "default"
    reference_mode: str = "exact"  # or "normalized"
    strip_prefixes: tuple[str, ...] = DEFAULT_PREFIXES
    tolerance_type: str = "none"  # "percent" or "fixed"
    tolerance_value: Decimal = ZERO
    require_same_customer: bool = True
    auto_apply: bool = True
    allow_partial: bool = False  # apply any underpayment and leave the invoice open
    customer_pattern: str = ""
    channels: tuple[str, ...] = ()
    amount_min: Decimal | None = None
    amount_max: Decimal | None = None
    duplicate_window_days: int = 7
    priority: int = 100
    id: int | None = None

    def applies_to(self, payment: Payment) -> bool:
        if self.customer_pattern and not fnmatchcase(
            payment.customer.upper(), self.customer_pattern.upper()
        ):
            return False
        if self.channels and payment.channel.upper() not in {
            c.upper() for c in self.channels
        }:
            return False
        if self.amount_min is not None and payment.amount < self.amount_min:
            return False
        return self.amount_max is None or payment.amount <= self.amount_max

    def tolerance_for(self, balance: Decimal) -> Decimal:
        """The allowed difference from `balance`; zero means exact."""
        if self.tolerance_type == "percent":
            return (abs(balance) * self.tolerance_value / 100).quantize(
                CENT, ROUND_HALF_UP
            )
        if self.tolerance_type == "fixed":
            return self.tolerance_value.quantize(CENT, ROUND_HALF_UP)
        return ZERO


# With no matching rules configured: exact references, and a partial payment is
# applied with the invoice left open (Sage Pro allows partial payments).
DEFAULT_RULE = Rule(name="built-in default", allow_partial=True)


def choose_rule(payment: Payment, rules: Sequence[Rule]) -> Rule:
    for rule in sorted(rules, key=lambda r: (r.priority, r.id or 0)):
        if rule.applies_to(payment):
            return rule
    return DEFAULT_RULE


def normalize_reference(value: str, prefixes: Iterable[str] = DEFAULT_PREFIXES) -> str:
    """Upper-case, drop spaces, configured prefixes and leading zeros, to a fixpoint.

    Idempotent: normalising a normalised reference changes nothing.
    """
    ordered = sorted(
        (p.strip().upper() for p in prefixes if p.strip()), key=len, reverse=True
    )
    text = "".join(value.split()).upper()
    while True:
        before = text
        for prefix in ordered:
            if text.startswith(prefix) and len(text) > len(prefix):
                text = text[len(prefix) :]
                break
        text = text.lstrip("-")
        if text.strip("0"):
            text = text.lstrip("0")
        if text == before:
            return text


def match_reference(
    reference: str, invno: str, prefixes: Iterable[str] = DEFAULT_PREFIXES
) -> tuple[str, float]:
    """How a payment's reference matches an invoice number: (kind, score)."""
    a, b = reference.strip().upper(), invno.strip().upper()
    if not a or not b:
        return "none", 0.0
    if a == b:
        return "exact", 1.0
    na, nb = normalize_reference(a, prefixes), normalize_reference(b, prefixes)
    if na and na == nb:
        return "normalized", 0.9
    if min(len(na), len(nb)) >= 3:
        ratio = fuzz.ratio(na, nb) / 100
        if ratio >= FUZZY_THRESHOLD:
            return "fuzzy", round(0.6 * ratio, 4)
    return "none", 0.0


def match_amount(
    amount: Decimal, balance: Decimal, tolerance: Decimal
) -> tuple[str, float]:
    diff = amount - balance
    if diff == 0:
        return "equal", 1.0
    if abs(diff) <= tolerance:
        return "within", 0.8
    if balance <= 0:
        return "paid", 0.0
    closeness = max(ZERO, 1 - abs(diff) / balance)
    return ("over" if diff > 0 else "under"), round(float(closeness) * 0.5, 4)


@dataclass(frozen=True)
class Candidate:
    invoice: Invoice
    score: float
    parts: Mapping[str, float]
    reference_match: str
    amount_match: str
    reasons: tuple[str, ...]


def score(
    payment: Payment,
    invoice: Invoice,
    rule: Rule,
    history: Mapping[str, int] | None = None,
) -> Candidate:
    """Score one invoice for one payment; `history` counts earlier payments per customer
    made with the same card."""
    reasons = []
    ref_kind, ref = match_reference(
        payment.reference, invoice.invno, rule.strip_prefixes
    )
    reasons.append(
        f"reference {payment.reference or '(none)'} vs {invoice.invno}: {ref_kind}"
    )
    amt_kind, amt = match_amount(
        payment.amount, invoice.balance, rule.tolerance_for(invoice.balance)
    )
    reasons.append(f"amount {payment.amount} vs balance {invoice.balance}: {amt_kind}")
    if not payment.customer:
        cust = 0.5
    elif payment.customer.strip().upper() == invoice.custno.strip().upper():
        cust = 1.0
        reasons.append(f"customer {invoice.custno} matches")
    else:
        cust = 0.0
        reasons.append(f"customer {payment.customer} ≠ {invoice.custno}")
    days = (
        (payment.paid_on - invoice.invdte).days
        if payment.paid_on and invoice.invdte
        else None
    )
    when = 0.5 if days is None else (0.3 if days < 0 else max(0.0, 1 - days / 120))
    paid_before = (history or {}).get(invoice.custno.strip().upper(), 0)
    hist = 1.0 if paid_before else 0.0
    if paid_before:
        reasons.append(f"this card paid {invoice.custno} {paid_before} time(s) before")
    parts = {
        "reference": ref,
        "amount": amt,
        "customer": cust,
        "date": round(when, 4),
        "history": hist,
    }
    total = round(sum(WEIGHTS[k] * v for k, v in parts.items()), 4)
    return Candidate(invoice, total, parts, ref_kind, amt_kind, tuple(reasons))


def candidates(
    payment: Payment,
    invoices: Iterable[Invoice],
    rule: Rule,
    history: Mapping[str, int] | None = None,
    limit: int = 3,
) -> list[Candidate]:
    """The best open invoices for a payment, best first (ties by invoice number)."""
    scored = [score(payment, inv, rule, history) for inv in invoices if inv.balance > 0]
    scored.sort(key=lambda c: (-c.score, c.invoice.invno))
    return scored[:limit]


@dataclass(frozen=True)
class Earlier:
    """A payment the portal already holds, for duplicate detection."""

    transaction_id: str
    card_last4: str
    amount: Decimal
    reference: str
    paid_on: date | None


class Action(StrEnum):
    """What the pipeline does with a payment."""

    APPLY = "apply"
    ON_ACCOUNT = "on_account"  # kept as unapplied cash
    REVIEW = "review"


@dataclass
class Decision:
    action: Action
    reason: str
    review_kind: ReviewKind | Literal[""] = ""
    invoice: Invoice | None = None
    applied: Decimal = ZERO
    unapplied: Decimal = ZERO
    rule: Rule = field(default_factory=Rule)
    candidates: list[Candidate] = field(default_factory=list)


def find_duplicates(
    payment: Payment, earlier: Iterable[Earlier], rule: Rule
) -> list[Earlier]:
    """Other transactions with the same card, amount and invoice within the window."""
    found = []
    for other in earlier:
        if other.transaction_id == payment.transaction_id or not payment.card_last4:
            continue
        same = (
            other.card_last4 == payment.card_last4
            and other.amount == payment.amount
            and normalize_reference(other.reference, rule.strip_prefixes)
            == normalize_reference(payment.reference, rule.strip_prefixes)
        )
        close = (
            payment.paid_on is None
            or other.paid_on is None
            or abs((payment.paid_on - other.paid_on).days) <= rule.duplicate_window_days
        )
        if same and close:
            found.append(other)
    return found


def decide(
    payment: Payment,
    invoices: Sequence[Invoice],
    rules: Sequence[Rule] = (),
    *,
    history: Mapping[str, int] | None = None,
    earlier: Iterable[Earlier] = (),
) -> Decision:
    """Decide what to do with a payment, given the invoices it might pay.

    `invoices` includes the invoice its reference names when Sage Pro has it, even a
    paid one (balance 0), so a second payment of a paid invoice is recognised.
    """
    rule = choose_rule(payment, rules)
    ranked = candidates(payment, invoices, rule, history)
    dupes = find_duplicates(payment, earlier, rule)
    if dupes:
        ids = ", ".join(d.transaction_id for d in dupes)
        return Decision(
            Action.ON_ACCOUNT,
            f"Same card •••• {payment.card_last4}, amount {payment.amount} and invoice {payment.reference} as transaction {ids}: kept as unapplied cash for a person to check.",
            ReviewKind.POSSIBLE_DUPLICATE,
            rule=rule,
            unapplied=payment.amount,
            candidates=ranked,
        )
    found = _find_invoice(payment, invoices, rule, ranked)
    if isinstance(found, Decision):
        return found
    return _decide_amount(payment, found, rule, ranked)


def _find_invoice(
    payment: Payment,
    invoices: Sequence[Invoice],
    rule: Rule,
    ranked: list[Candidate],
) -> Invoice | Decision:
    """The one invoice the reference names and the payment may pay, or why not."""
    wanted = {"exact"} | (
        {"normalized"} if rule.reference_mode == "normalized" else set()
    )
    matches = [
        inv
        for inv in invoices
        if match_reference(payment.reference, inv.invno, rule.strip_prefixes)[0]
        in wanted
    ]
    if not matches:
        why = (
            f"No open invoice matches reference {payment.reference!r}."
            if payment.reference
            else "The payment names no invoice."
        )
        return Decision(
            Action.REVIEW, why, ReviewKind.UNMATCHED, rule=rule, candidates=ranked
        )
    if len(matches) > 1:
        names = ", ".join(f"{m.invno} ({m.custno})" for m in matches)
        return Decision(
            Action.REVIEW,
            f"Reference {payment.reference} fits more than one invoice: {names}. Choose one.",
            ReviewKind.UNMATCHED,
            rule=rule,
            candidates=ranked,
        )
    invoice = matches[0]
    if (
        rule.require_same_customer
        and payment.customer
        and payment.customer.strip().upper() != invoice.custno.strip().upper()
    ):
        return Decision(
            Action.REVIEW,
            f"Invoice {invoice.invno} belongs to customer {invoice.custno}, but the payment names customer {payment.customer}.",
            ReviewKind.UNMATCHED,
            invoice=invoice,
            rule=rule,
            candidates=ranked,
        )
    if invoice.balance <= 0:
        return Decision(
            Action.ON_ACCOUNT,
            f"Invoice {invoice.invno} is already paid: this payment is kept as unapplied cash on {invoice.custno}'s account.",
            ReviewKind.POSSIBLE_DUPLICATE,
            invoice=invoice,
            unapplied=payment.amount,
            rule=rule,
            candidates=ranked,
        )
    if not rule.auto_apply:
        return Decision(
            Action.REVIEW,
            f"Rule {rule.name} sends matches to a person.",
            ReviewKind.UNMATCHED,
            invoice=invoice,
            rule=rule,
            candidates=ranked,
        )
    return invoice


def _decide_amount(
    payment: Payment, invoice: Invoice, rule: Rule, ranked: list[Candidate]
) -> Decision:
    """Apply a payment to its invoice: in full, with the excess on account, or partly."""
    tolerance = rule.tolerance_for(invoice.balance)
    diff = payment.amount - invoice.balance
    if diff > tolerance:
        return Decision(
            Action.APPLY,
            f"Paid {diff} more than invoice {invoice.invno}'s balance {invoice.balance}: the balance is applied and {diff} kept as unapplied cash.",
            ReviewKind.OVERPAYMENT,
            invoice=invoice,
            applied=invoice.balance,
            unapplied=diff,
            rule=rule,
            candidates=ranked,
        )
    if diff >= 0:
        return Decision(
            Action.APPLY,
            f"Applied to invoice {invoice.invno}.",
            invoice=invoice,
            applied=invoice.balance,
            unapplied=diff,
            rule=rule,
            candidates=ranked,
        )
    if -diff <= tolerance or rule.allow_partial:
        why = (
            "within tolerance"
            if -diff <= tolerance
            else f"partial payments allowed by rule {rule.name}"
        )
        return Decision(
            Action.APPLY,
            f"Applied to invoice {invoice.invno}; {-diff} stays open ({why}).",
            invoice=invoice,
            applied=payment.amount,
            rule=rule,
            candidates=ranked,
        )
    return Decision(
        Action.REVIEW,
        f"Paid {-diff} less than invoice {invoice.invno}'s balance {invoice.balance}, beyond the tolerance of {tolerance}.",
        ReviewKind.UNDERPAYMENT,
        invoice=invoice,
        rule=rule,
        candidates=ranked,
    )
