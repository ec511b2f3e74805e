"""Matching a payment to open invoices: pure functions over plain values.

`decide` finds the invoice (or invoices) a payment pays the way a person would, and
applies it without one only when the evidence leaves no doubt:

1. the reference (or, when it names nothing, the description; or the PO number)
   names invoices, read by `mappings.references` (prefix words, punctuation, leading
   zeros, several numbers, ranges), by invoice, Sage Pro order or PO number: one clean
   number pays its invoice as a bare invoice number does; several pay together when
   their balances add up to the amount within the tolerance; a number picked out of
   longer text counts only when the amount agrees; an amount that is not what the
   named invoices owe but exactly another open invoice's balance goes to a person;
2. a reference one edit or one transposition away from an open invoice of the known
   customer pays it only when the amount is exactly that invoice's balance and no
   other invoice is as close;
3. with no number in the reference, a known customer's payment pays the one open invoice,
   or the one combination of a few open invoices, whose balances equal the amount.

The customer comes from `mappings.payers.identify` (links, customer id, e-mail,
billing name). Another customer's invoice is never paid; ties, conflicts and anything
else go to a reviewer with the candidates scored from their parts: reference (exact,
normalised, fuzzy; "991" never matches "INV-99910"), amount, customer, date proximity
and the card's payment history. Every decision carries its explanation: the rule, the
evidence and the alternatives it rejected.
"""

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from enum import StrEnum
from fnmatch import fnmatchcase
from itertools import combinations
from typing import Literal

from rapidfuzz import fuzz

from mappings.kinds import ReviewKind
from mappings.payers import Identity
from mappings.references import (
    DEFAULT_PREFIX_WORDS,
    Token,
    near_miss,
    parse_reference,
    reference_key,
)

CENT = Decimal("0.01")
ZERO = Decimal("0")
DEFAULT_PREFIXES = (*DEFAULT_PREFIX_WORDS, "#")
# How many of a customer's oldest open invoices a combination is looked for among.
COMBINATION_POOL = 12
MAX_COMBINATION = 5
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
    po: str = ""  # PayTrace customer_reference_id: the customer's PO number
    description: str = ""
    # Foreign-currency payments are applied to one named invoice at a time (the rate
    # is applied when the receipt is booked, so sums of balances do not compare).
    one_invoice_only: bool = False


@dataclass(frozen=True)
class Invoice:
    invno: str
    custno: str
    balance: Decimal
    invamt: Decimal = ZERO
    invdte: date | None = None
    ornum: str = ""
    ponum: str = ""

    def label(self) -> str:
        return f"{self.invno} ({self.custno}, balance {self.balance})"


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
    # What "normalized" reads besides one bare number (see the module docstring).
    multiple_invoices: bool = False
    order_numbers: bool = False  # Sage Pro ORNUM and PONUM
    near_misses: bool = False
    identify_payer: bool = False
    by_amount: bool = False
    max_combination: int = 1
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


# The standard rule, what a connection with no matching rules uses (and what a new
# rule starts from): every safe way of reading a reference, the payer identified,
# amounts within 3 % (card surcharges), partial payments applied with the invoice left
# open (Sage Pro allows partial payments).
STANDARD = {
    "reference_mode": "normalized",
    "tolerance_type": "percent",
    "tolerance_value": Decimal("3.00"),
    "allow_partial": True,
    "multiple_invoices": True,
    "order_numbers": True,
    "near_misses": True,
    "identify_payer": True,
    "by_amount": True,
    "max_combination": 3,
}
DEFAULT_RULE = Rule(name="built-in standard", **STANDARD)  # type: ignore[arg-type]


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
            # A word prefix is glued to a number, never to letters ("NOVA" keeps NO).
            glued = (
                prefix[-1].isalpha() and text[len(prefix) : len(prefix) + 1].isalpha()
            )
            if text.startswith(prefix) and len(text) > len(prefix) and not glued:
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
    # Every invoice it pays with the amount, oldest first (one line for one invoice).
    applications: list[tuple[Invoice, Decimal]] = field(default_factory=list)
    method: str = ""  # how the invoice was found; see METHODS
    customer: str = ""  # the payer's Sage Pro customer, when known
    link_id: int | None = None  # the customer mapping that identified the payer
    explanation: dict[str, object] = field(default_factory=dict)
    # Applied, though the amount is not exactly what the invoices owe (a part
    # payment, a surcharge): the customer's other open invoices must be known.
    approximate: bool = False


METHODS = {
    "exact": "invoice number as written",
    "normalized": "invoice number, normalised",
    "multiple": "several invoice numbers",
    "order": "Sage Pro order number",
    "po": "PO number",
    "near_miss": "invoice number one edit away",
    "amount": "the customer's one open invoice of that amount",
    "combination": "the customer's one combination of open invoices of that amount",
}


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
    identity: Identity | None = None,
) -> Decision:
    """Decide what to do with a payment, given the invoices it might pay.

    `invoices` are every invoice the caller found that the payment might mean: those
    its reference names (by invoice, order or PO number; even a paid one, so a second
    payment of a paid invoice is recognised), and the known customer's open invoices.
    `identity` is who paid (`mappings.payers.identify`); without it the payment's own
    customer number, when it names one, is the customer.
    """
    return _Matcher(payment, invoices, rules, history, identity).decide(earlier)


class _Matcher:
    """One decision: the evidence gathered on the way, and the outcome."""

    def __init__(
        self,
        payment: Payment,
        invoices: Sequence[Invoice],
        rules: Sequence[Rule],
        history: Mapping[str, int] | None,
        identity: Identity | None,
    ) -> None:
        self.identity = identity
        if identity is not None:
            self.customer = identity.custno.strip()
        else:
            self.customer = payment.customer.strip()
        # A customer number the payment names that nothing resolves (no Sage Pro
        # customer, no mapping) still rules out another customer's invoice.
        self.claimed = (
            payment.customer.strip().upper()
            if identity is not None and not identity.custno
            else ""
        )
        # Rules choose on the customer who paid, and candidates score against it.
        self.payment = replace(payment, customer=self.customer)
        self.rule = choose_rule(self.payment, rules)
        self.invoices = list({(i.invno, i.custno): i for i in invoices}.values())
        self.ranked = candidates(self.payment, self.invoices, self.rule, history)
        self.steps: list[tuple[str, str]] = [("Rule", self.rule.name)]
        self.rejected: list[tuple[str, str]] = []
        # Tokens that named only another customer's invoice, with the first such one.
        self.foreign: list[tuple[Token, Invoice]] = []
        self.method = ""

    # --- the outcome ----------------------------------------------------------------

    def decision(
        self,
        action: Action,
        reason: str,
        kind: ReviewKind | Literal[""] = "",
        *,
        lines: Sequence[tuple[Invoice, Decimal]] = (),
        invoice: Invoice | None = None,
        unapplied: Decimal = ZERO,
    ) -> Decision:
        lines = list(lines)
        first = lines[0][0] if lines else invoice
        applied = sum((amount for _, amount in lines), ZERO)
        outcome = {
            Action.APPLY: "applied without review"
            if not kind
            else f"applied, and a reviewer checks it ({kind})",
            Action.ON_ACCOUNT: f"kept as unapplied cash for a reviewer ({kind})",
            Action.REVIEW: f"sent to review ({kind})",
        }[action]
        explanation: dict[str, object] = {
            "rule": self.rule.name,
            "rule_id": self.rule.id,
            "method": self.method if action != Action.REVIEW else "",
            "method_label": METHODS.get(self.method, "")
            if action != Action.REVIEW
            else "",
            "customer": self.customer,
            "customer_from": self._customer_text(),
            "steps": [{"label": label, "text": text} for label, text in self.steps],
            "rejected": [{"invno": invno, "why": why} for invno, why in self.rejected],
            "outcome": outcome,
            "reason": reason,
            "applications": [[inv.invno, str(amount)] for inv, amount in lines],
        }
        return Decision(
            action,
            reason,
            kind,
            invoice=first,
            applied=applied,
            unapplied=unapplied,
            rule=self.rule,
            candidates=self.ranked,
            applications=lines,
            method=self.method if action != Action.REVIEW else "",
            customer=self.customer,
            link_id=self.identity.link_id if self.identity else None,
            explanation=explanation,
            approximate=action == Action.APPLY
            and (
                applied != self.payment.amount
                or any(amount != inv.balance for inv, amount in lines)
            ),
        )

    def note(self, label: str, text: str) -> None:
        """One step of the explanation: what the rule looked at, and what it found."""
        self.steps.append((label, text))

    def review(
        self, reason: str, kind: ReviewKind = ReviewKind.UNMATCHED, **kw: object
    ) -> Decision:
        return self.decision(Action.REVIEW, reason, kind, **kw)  # type: ignore[arg-type]

    def _customer_text(self) -> str:
        if self.identity is not None:
            return self.identity.describe()
        if self.customer:
            return f"customer {self.customer}, as the payment names it"
        return "the payment names no customer"

    # --- the steps ----------------------------------------------------------------------

    def decide(self, earlier: Iterable[Earlier]) -> Decision:
        payment, rule = self.payment, self.rule
        dupes = find_duplicates(payment, earlier, rule)
        self.note("Customer", self._customer_text())
        if dupes:
            ids = ", ".join(d.transaction_id for d in dupes)
            self.note("Duplicates", f"same card, amount and invoice as {ids}")
            key = reference_key(payment.reference)
            same = [i for i in self.invoices if key and reference_key(i.invno) == key]
            return self.decision(
                Action.ON_ACCOUNT,
                f"Same card •••• {payment.card_last4}, amount {payment.amount} and invoice {payment.reference} as transaction {ids}: kept as unapplied cash for a person to check.",
                ReviewKind.POSSIBLE_DUPLICATE,
                invoice=same[0] if len(same) == 1 else None,
                unapplied=payment.amount,
            )
        if self.identity is not None and self.identity.conflict:
            return self.review(
                f"The payer's details name different customers ({self.identity.describe()}): a person decides."
            )
        exact = [
            inv
            for inv in self.invoices
            if payment.reference.strip()
            and inv.invno.strip().upper() == payment.reference.strip().upper()
        ]
        if rule.reference_mode != "normalized":
            self.note("Reference", f"{payment.reference!r} compared as written")
            self.method = "exact"
            return self.named(exact, clean=True) if exact else self.unnamed([])
        if len(exact) == 1 and not self.anothers(exact[0]):
            self.method = "exact"
            self.note(
                "Reference",
                f"{payment.reference!r} is invoice {exact[0].invno} as written",
            )
            return self.named(exact, clean=True)
        parsed = parse_reference(
            payment.reference, rule.strip_prefixes, multiple=rule.multiple_invoices
        )
        self.note("Reference", parsed.describe())
        named, unresolved = self.resolve(parsed.tokens, only="")
        whole = self._whole(payment.reference, parsed.keys)
        if not named and whole is not None and rule.order_numbers:
            # An order or PO number written whole ("FAC-8250", "2025-0044").
            named, _ = self.resolve([whole], only="documents")
            if named:
                unresolved, parsed = [], replace(parsed, clean=True)
        if not named and payment.description.strip():
            # The description, when the reference names nothing ("", "1", "VT"): a
            # number found there counts only when the amount agrees.
            desc = parse_reference(
                payment.description,
                rule.strip_prefixes,
                multiple=rule.multiple_invoices,
            )
            if desc.tokens:
                self.note("Description", desc.describe())
                found, _ = self.resolve(desc.tokens, only="")
                if found or not parsed.tokens:
                    named, parsed = found, replace(desc, clean=False)
        if not named and payment.po.strip() and rule.order_numbers:
            po = parse_reference(payment.po, rule.strip_prefixes, multiple=False)
            whole = self._whole(payment.po, po.keys)
            tokens = [*po.tokens, *([whole] if whole else [])]
            if tokens:
                self.note("PO number", po.describe())
                named, _ = self.resolve(tokens, only="po")
                parsed = replace(parsed, clean=bool(named) and not parsed.tokens)
        if isinstance(named, Decision):
            return named
        if self.foreign:
            return self.foreign_or_near(named, list(parsed.tokens))
        if named:
            if unresolved:
                self.note(
                    "Not found",
                    ", ".join(t.key for t in unresolved) + " name no invoice",
                )
            clean = parsed.clean and not unresolved
            return self.named(named, clean=clean)
        return self.unnamed(list(parsed.tokens))

    def anothers(self, invoice: Invoice) -> bool:
        """Whether `invoice` belongs to another customer than the payer (when the
        rule requires the same customer and the payer is known or named)."""
        payer = self.customer or self.claimed
        return bool(
            self.rule.require_same_customer
            and payer
            and invoice.custno.strip().upper() != payer.upper()
        )

    def foreign_or_near(self, named: list[Invoice], tokens: list[Token]) -> Decision:
        """The reference names another customer's invoice: never paid. When it names
        nothing of the payer's own, the payer's invoice one edit away with exactly the
        amount is what was meant (dense invoice numbers make a transposition name
        somebody else's); otherwise a person decides."""
        _, first = self.foreign[0]
        if not named and self.rule.near_misses and self.customer:
            found = self.near(tokens)
            if found is not None and found.action == Action.APPLY:
                return found
        return self.review(
            f"Invoice {first.invno} belongs to customer {first.custno}, but the payment names customer {self.customer or self.claimed}.",
            invoice=first,
        )

    def resolve(
        self, tokens: Sequence[Token], *, only: str
    ) -> tuple[list[Invoice] | Decision, list[Token]]:
        """The invoices the tokens name (one per token, or one PO's several), and the
        tokens that name none; a Decision when a token names more than one."""
        named: list[Invoice] = []
        unresolved: list[Token] = []
        for token in tokens:
            hits: dict[tuple[str, str], tuple[Invoice, str]] = {}
            for inv in self.invoices:
                how = self._names(token.key, inv, only)
                if how and (inv.invno, inv.custno) not in hits:
                    hits[inv.invno, inv.custno] = (inv, how)
            if not hits:
                unresolved.append(token)
                continue
            kept = []
            for inv, how in hits.values():
                if self.anothers(inv):
                    self.rejected.append(
                        (
                            inv.invno,
                            f"{how} {token.key}, but it belongs to customer {inv.custno}, not the payer {self.customer or self.claimed}",
                        )
                    )
                else:
                    kept.append((inv, how))
            if not kept:
                # Another customer's: never paid. The payer's own invoice one edit
                # away may still be what was meant (`foreign_or_near`).
                self.foreign.append((token, next(iter(hits.values()))[0]))
                unresolved.append(token)
                continue
            ways = {how for _, how in kept}
            if len(kept) > 1 and ways != {"PO number"}:
                names = ", ".join(f"{i.invno} ({i.custno}, {how})" for i, how in kept)
                for inv, _ in kept:
                    self.rejected.append(
                        (inv.invno, f"{token.key} fits it and another invoice")
                    )
                return (
                    self.review(
                        f"Reference {token.key} fits more than one invoice: {names}. Choose one."
                    ),
                    unresolved,
                )
            for inv, how in kept:
                if how == "order number":
                    self.method = self.method or "order"
                elif how == "PO number":
                    self.method = self.method or "po"
                if inv not in named:
                    named.append(inv)
            self.note(
                "Found",
                "; ".join(
                    f"{token.key} is {how_label(how)} of invoice {inv.label()}"
                    for inv, how in kept
                ),
            )
        return named, unresolved

    def _names(self, key: str, inv: Invoice, only: str) -> str:
        """How `key` names `inv` ('' when it does not); `only` "documents": by order
        or PO number, "po": by PO number."""
        if not only and reference_key(inv.invno) == key:
            return "invoice number"
        if self.rule.order_numbers:
            if only != "po" and inv.ornum and reference_key(inv.ornum) == key:
                return "order number"
            if inv.ponum and reference_key(inv.ponum) == key:
                return "PO number"
        return ""

    def _whole(self, text: str, keys: Sequence[str]) -> Token | None:
        """The whole text as one key, when it is more than the numbers read in it."""
        key = reference_key(text, self.rule.strip_prefixes)
        if not key or key in keys or not any(ch.isdigit() for ch in key):
            return None
        return Token(key[:40], text.strip(), "the whole text")

    # --- the reference names invoices ---------------------------------------------------

    def named(self, invoices: list[Invoice], *, clean: bool) -> Decision:
        rule, payment = self.rule, self.payment
        if len(invoices) > 1:
            return self.several(invoices)
        invoice = invoices[0]
        self.method = self.method or "normalized"
        if self.anothers(invoice):
            return self.review(
                f"Invoice {invoice.invno} belongs to customer {invoice.custno}, but the payment names customer {self.customer or self.claimed}.",
                invoice=invoice,
            )
        if invoice.custno.strip() and not self.customer:
            self.customer = invoice.custno.strip()
            self.note("Customer", f"customer {invoice.custno}, the invoice's")
        if invoice.balance <= 0:
            return self.decision(
                Action.ON_ACCOUNT,
                f"Invoice {invoice.invno} is already paid: this payment is kept as unapplied cash on {invoice.custno}'s account.",
                ReviewKind.POSSIBLE_DUPLICATE,
                invoice=invoice,
                unapplied=payment.amount,
            )
        if not rule.auto_apply:
            return self.review(
                f"Rule {rule.name} sends matches to a person.", invoice=invoice
            )
        # A PO number is the customer's own, and two customers may use the same one:
        # like a number picked out of longer text, it counts when the amount agrees.
        if not clean or self.method == "po":
            tolerance = rule.tolerance_for(invoice.balance)
            if abs(payment.amount - invoice.balance) > tolerance:
                found = (
                    "names the PO number of"
                    if self.method == "po"
                    else "mentions among other text"
                )
                return self.review(
                    f"The payment {found} invoice {invoice.invno}, and the amount {payment.amount} is not its balance {invoice.balance} (tolerance {tolerance}): a person decides.",
                    invoice=invoice,
                )
        return self.amount_for(invoice)

    def amount_for(self, invoice: Invoice) -> Decision:
        """Apply a payment to its invoice: in full, with the excess on account, or partly."""
        payment, rule = self.payment, self.rule
        tolerance = rule.tolerance_for(invoice.balance)
        diff = payment.amount - invoice.balance
        if diff and (doubt := self.another_of_that_amount([invoice])) is not None:
            return doubt
        if diff > tolerance:
            self.note(
                "Amount",
                f"{payment.amount} is {diff} more than the balance {invoice.balance} (tolerance {tolerance})",
            )
            return self.decision(
                Action.APPLY,
                f"Paid {diff} more than invoice {invoice.invno}'s balance {invoice.balance}: the balance is applied and {diff} kept as unapplied cash.",
                ReviewKind.OVERPAYMENT,
                lines=[(invoice, invoice.balance)],
                unapplied=diff,
            )
        if diff >= 0:
            self.note(
                "Amount", _amount_text(payment.amount, invoice.balance, tolerance)
            )
            return self.decision(
                Action.APPLY,
                f"Applied to invoice {invoice.invno}.",
                lines=[(invoice, invoice.balance)],
                unapplied=diff,
            )
        if -diff <= tolerance or rule.allow_partial:
            why = (
                "within tolerance"
                if -diff <= tolerance
                else f"partial payments allowed by rule {rule.name}"
            )
            self.note(
                "Amount",
                f"{payment.amount} is {-diff} less than the balance {invoice.balance}: {why}",
            )
            return self.decision(
                Action.APPLY,
                f"Applied to invoice {invoice.invno}; {-diff} stays open ({why}).",
                lines=[(invoice, payment.amount)],
            )
        self.note(
            "Amount",
            f"{payment.amount} is {-diff} less than the balance {invoice.balance}, beyond the tolerance {tolerance}",
        )
        return self.review(
            f"Paid {-diff} less than invoice {invoice.invno}'s balance {invoice.balance}, beyond the tolerance of {tolerance}.",
            ReviewKind.UNDERPAYMENT,
            invoice=invoice,
        )

    def several(self, invoices: list[Invoice]) -> Decision:
        """Several invoices named together: paid together when the amounts add up."""
        payment, rule = self.payment, self.rule
        self.method = self.method if self.method == "po" else "multiple"
        names = ", ".join(i.invno for i in invoices)
        if payment.one_invoice_only:
            return self.review(
                f"A foreign-currency payment names invoices {names}: it is applied to one invoice at a time, by a person."
            )
        customers = sorted({i.custno.strip().upper() for i in invoices})
        if len(customers) > 1:
            return self.review(
                f"The reference names invoices {names} of different customers ({', '.join(customers)}): a receipt is for one customer."
            )
        credits = [i for i in invoices if i.balance < 0]
        if credits:
            memos = ", ".join(f"{i.invno} ({i.balance})" for i in credits)
            return self.review(
                f"The reference names invoices {names}, with credit memo {memos}: "
                "netting a credit memo against an invoice is done in Sage Pro (a cash "
                "receipt applies no credit memo), so a person decides."
            )
        closed = [i for i in invoices if i.balance == 0]
        if closed:
            return self.review(
                f"The reference names invoices {names}, and {', '.join(i.invno for i in closed)} is already paid: a person decides."
            )
        if not rule.auto_apply:
            return self.review(f"Rule {rule.name} sends matches to a person.")
        if not self.customer:
            self.customer = invoices[0].custno.strip()
        ordered = sorted(invoices, key=_age)
        total = sum((i.balance for i in ordered), ZERO)
        tolerance = rule.tolerance_for(total)
        diff = payment.amount - total
        if diff and (doubt := self.another_of_that_amount(ordered)) is not None:
            return doubt
        if -diff > tolerance:
            self.note(
                "Amount",
                f"{payment.amount} is {-diff} less than the balances' sum {total}, beyond the tolerance {tolerance}",
            )
            return self.review(
                f"Paid {payment.amount} for invoices {names}, whose balances add up to {total}: {-diff} short, beyond the tolerance of {tolerance}.",
                ReviewKind.UNDERPAYMENT,
            )
        self.note(
            "Amount",
            _amount_text(payment.amount, total, tolerance, "the balances' sum"),
        )
        lines = [(i, i.balance) for i in ordered]
        if diff < 0:  # short within tolerance: the newest invoice keeps the difference
            last, balance = lines[-1]
            lines[-1] = (last, balance + diff)
        if diff > tolerance:
            return self.decision(
                Action.APPLY,
                f"Paid {diff} more than invoices {names} add up to ({total}): their balances are applied and {diff} kept as unapplied cash.",
                ReviewKind.OVERPAYMENT,
                lines=lines,
                unapplied=diff,
            )
        return self.decision(
            Action.APPLY,
            f"Applied to invoices {', '.join(i.invno for i in ordered)}"
            + (
                f"; {-diff} stays open on {lines[-1][0].invno} (within tolerance)."
                if diff < 0
                else "."
            ),
            lines=lines,
            unapplied=max(diff, ZERO),
        )

    def another_of_that_amount(self, named: list[Invoice]) -> Decision | None:
        """A review when the amount is not what the named invoices owe but exactly what
        another open invoice of the customer does: a part payment of the one named, or
        the other paid under the wrong number? A person decides."""
        names = {i.invno for i in named}
        others = [
            i
            for i in self.own_open()
            if i.invno not in names and i.balance == self.payment.amount
        ]
        if not others:
            return None
        listed = ", ".join(i.invno for i in others)
        for other in others:
            self.rejected.append(
                (
                    other.invno,
                    f"its balance is exactly the amount {self.payment.amount}",
                )
            )
        self.note(
            "Amount",
            f"{self.payment.amount} is not what {', '.join(sorted(names))} owe"
            f" but exactly the balance of {listed}",
        )
        return self.review(
            f"The reference names {', '.join(sorted(names))}, but the amount "
            f"{self.payment.amount} is exactly the balance of customer {self.customer}'s "
            f"invoice {listed}: a part payment of the one named, or the other paid "
            "under the wrong number? A person decides."
        )

    # --- the reference names no invoice -------------------------------------------------

    def unnamed(self, tokens: list[Token]) -> Decision:
        payment, rule = self.payment, self.rule
        if tokens and rule.near_misses:
            found = self.near(tokens)
            if found is not None:
                return found
        if any(len(t.key) >= 3 for t in tokens):
            # It names a number Sage Pro does not have: a person reads it (a payment
            # is applied by its amount only when it names nothing at all).
            return self.review(self._no_match_reason(tokens))
        if (
            self.customer
            and rule.by_amount
            and rule.reference_mode == "normalized"
            and rule.auto_apply
        ):
            if payment.one_invoice_only:
                return self.review(
                    f"A foreign-currency payment without a usable reference: a person chooses the invoice of customer {self.customer}."
                )
            return self.by_amount(tokens)
        return self.review(self._no_match_reason(tokens))

    def _no_match_reason(self, tokens: list[Token]) -> str:
        reference = self.payment.reference.strip()
        unknown = "" if self.customer else " The payer is not known."
        if tokens or (reference and self.rule.reference_mode != "normalized"):
            return f"No open invoice matches reference {reference!r}.{unknown}"
        if reference:
            return f"The reference {reference!r} holds no invoice number.{unknown}"
        return f"The payment names no invoice.{unknown}"

    def own_open(self) -> list[Invoice]:
        return sorted(
            (
                i
                for i in self.invoices
                if i.balance > 0 and i.custno.strip().upper() == self.customer.upper()
            ),
            key=_age,
        )

    def near(self, tokens: list[Token]) -> Decision | None:
        """A reference one edit from an invoice of the known customer: applied when the
        amount is exactly its balance and no other of the customer's open invoices, one
        edit away or not, has that balance; None when no invoice is that close (the
        reference is then not usable). Invoice numbers are dense, so a typo is often
        one edit from several invoices: the exact amount says which."""
        if not self.customer:
            return None
        close = [
            (token, inv, how)
            for token in tokens
            for inv in self.own_open()
            if (how := near_miss(token.key, reference_key(inv.invno)))
        ]
        if not close:
            return None
        self.method = "near_miss"
        described = "; ".join(f"{t.key} vs {inv.invno}: {how}" for t, inv, how in close)
        self.note("Near misses", described)
        exact = [
            (t, inv, how) for t, inv, how in close if inv.balance == self.payment.amount
        ]
        same_amount = {
            inv.invno for inv in self.own_open() if inv.balance == self.payment.amount
        }
        if len({inv.invno for _, inv, _ in exact}) == 1 and len(same_amount) == 1:
            token, invoice, how = exact[0]
            for _, inv, other in close:
                if inv.invno != invoice.invno:
                    self.rejected.append(
                        (
                            inv.invno,
                            f"{token.key} is one edit from it too ({other}), but its balance {inv.balance} is not the amount",
                        )
                    )
            self.note(
                "Amount",
                f"{self.payment.amount} is exactly invoice {invoice.invno}'s balance, and no other open invoice of {self.customer} has it: {token.key} meant {invoice.invno}",
            )
            return self.decision(
                Action.APPLY,
                f"Applied to invoice {invoice.invno}: the reference {token.key} is {invoice.invno} with {how}, and the customer and the exact amount confirm it.",
                lines=[(invoice, invoice.balance)],
            )
        for token, inv, how in close:
            why = (
                f"{token.key} is one edit away ({how}), but the amount {self.payment.amount} is not its balance {inv.balance}"
                if inv.balance != self.payment.amount
                else f"{token.key} is one edit away ({how}), and another open invoice has the same balance"
            )
            self.rejected.append((inv.invno, why))
        return self.review(
            f"The reference {self.payment.reference!r} names no invoice; it is one edit away from {', '.join(inv.invno for _, inv, _ in close)} of customer {self.customer}, and the amount does not single one out: a person decides."
        )

    def by_amount(self, tokens: list[Token]) -> Decision:
        """A known customer, no usable reference: the one open invoice, or the one
        combination of a few, whose balances equal the amount."""
        payment, rule = self.payment, self.rule
        pool = self.own_open()
        why_ref = (
            "no reference"
            if not tokens
            else f"{', '.join(t.key for t in tokens)} name no invoice"
        )
        singles = [i for i in pool if i.balance == payment.amount]
        if len(singles) == 1:
            self.method = "amount"
            invoice = singles[0]
            self.note(
                "Amount",
                f"{why_ref}; of customer {self.customer}'s {len(pool)} open invoices, only {invoice.invno} has a balance of exactly {payment.amount}",
            )
            return self.decision(
                Action.APPLY,
                f"Applied to invoice {invoice.invno}: the only open invoice of customer {self.customer} with a balance of {payment.amount}.",
                lines=[(invoice, invoice.balance)],
            )
        if len(singles) > 1:
            for inv in singles:
                self.rejected.append(
                    (
                        inv.invno,
                        f"its balance equals the amount, as {len(singles) - 1} other(s) do",
                    )
                )
            return self.review(
                f"Customer {self.customer} has {len(singles)} open invoices of {payment.amount} ({', '.join(i.invno for i in singles)}) and the payment names none: choose one."
            )
        found = exact_combinations(
            payment.amount, pool[:COMBINATION_POOL], rule.max_combination
        )
        if len(found) == 1:
            self.method = "combination"
            lines = [(inv, inv.balance) for inv in found[0]]
            names = ", ".join(inv.invno for inv in found[0])
            self.note(
                "Amount",
                f"{why_ref}; of customer {self.customer}'s open invoices only {names} add up to exactly {payment.amount}",
            )
            return self.decision(
                Action.APPLY,
                f"Applied to invoices {names}: the only combination of customer {self.customer}'s open invoices adding up to {payment.amount}.",
                lines=lines,
            )
        if found:
            for combo in found:
                self.rejected.append(
                    (
                        " + ".join(i.invno for i in combo),
                        "adds up to the amount, as another combination does",
                    )
                )
            return self.review(
                f"More than one combination of customer {self.customer}'s open invoices adds up to {payment.amount}: choose."
            )
        self.note(
            "Amount",
            f"{why_ref}; no open invoice of customer {self.customer}, and no combination of up to {rule.max_combination}, comes to {payment.amount}",
        )
        return self.review(
            (
                self._no_match_reason(tokens)
                if tokens or payment.reference.strip()
                else "The payment names no invoice."
            )
            + f" No open invoice of customer {self.customer} comes to {payment.amount}."
        )


def how_label(how: str) -> str:
    return {
        "PO number": "the PO number",
        "order number": "the Sage Pro order number",
    }.get(how, "the invoice number")


def _age(invoice: Invoice) -> tuple[date, int, str]:
    return (invoice.invdte or date.max, len(invoice.invno), invoice.invno)


def _amount_text(
    amount: Decimal, balance: Decimal, tolerance: Decimal, what: str = "the balance"
) -> str:
    if amount == balance:
        return f"{amount} equals {what}"
    return f"{amount} is within {tolerance} of {what} {balance}"


def exact_combinations(
    amount: Decimal, pool: Sequence[Invoice], largest: int, *, stop_after: int = 2
) -> list[tuple[Invoice, ...]]:
    """Combinations of 2 to `largest` invoices (oldest first) whose balances add up to
    `amount` exactly; at most `stop_after` (two is enough to know it is ambiguous)."""
    found: list[tuple[Invoice, ...]] = []
    largest = min(largest, MAX_COMBINATION, len(pool))
    for size in range(2, largest + 1):
        for combo in combinations(pool, size):
            if sum((i.balance for i in combo), ZERO) == amount:
                found.append(combo)
                if len(found) >= stop_after:
                    return found
    return found
