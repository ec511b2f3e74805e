"""The plain values `mappings.matching` decides on, read from the portal's rows.

`place` gathers, for one payment: the payment itself, who paid
(`mappings.payers.identify` over the customer mapping table and the mirrored
customers), every Sage Pro invoice its reference, description or PO number may name
(by invoice, order or PO number, from the mirror; the gateway is asked for a number
the mirror does not hold while it has never been fully synced), and, when the
reference does not settle it, the known customer's open invoices. Then the
connection's matching rules decide. `fresh=True` reads every one of those invoices
from Sage Pro first (a decision that is not a clean application is always made on
fresh data: `integrations.posting.decide_placement`).
"""

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db.models import Q

from integrations import mirror
from integrations.batchcache import cached
from integrations.connectors.base import NotFoundError
from integrations.documents.sources import invoice_number_for
from integrations.models import Connection, PaymentTransaction
from integrations.models.mirror import MirroredCustomer, MirroredInvoice, MirrorState
from mappings import matching, payers
from mappings.models import MatchingRule, PayerLink, PaymentStatus
from mappings.references import parse_reference, reference_key

# At most this many numbers of one reference are looked up (a reference naming more
# goes to a person anyway).
MAX_LOOKUPS = 6
MAX_CUSTOMERS = 50
_INVOICE_KEY = re.compile(r"[A-Z0-9][A-Z0-9 \-]{0,19}")


def matching_payment(
    txn: PaymentTransaction, reference: str | None = None
) -> matching.Payment:
    base = (
        (txn.connection.sagepro.base_currency if txn.connection.sagepro else "")
        or "USD"
    ).upper()
    return matching.Payment(
        transaction_id=txn.transaction_id,
        amount=txn.amount,
        reference=txn.invoice_reference.strip() if reference is None else reference,
        customer=txn.customer_reference.strip(),
        card_last4=txn.card_last4,
        channel=txn.channel,
        paid_on=txn.posting_date(),
        po=txn.customer_po.strip(),
        description=str((txn.source_record or {}).get("description") or "")[:200],
        one_invoice_only=txn.currency.upper() != base,
    )


def matching_invoice(invoice: dict[str, Any]) -> matching.Invoice:
    return matching.Invoice(
        invno=str(invoice["invno"]).strip(),
        custno=str(invoice["custno"]).strip(),
        balance=Decimal(invoice["balance"]),
        invamt=Decimal(invoice.get("invamt") or 0),
        invdte=invoice.get("invdte"),
        ornum=str(invoice.get("ornum") or "").strip(),
        ponum=str(invoice.get("ponum") or "").strip(),
    )


def matching_rules(connection: Connection) -> list[matching.Rule]:
    return cached(
        ("matching_rules", connection.pk), lambda: MatchingRule.rules_for(connection)
    )


def payer_of(txn: PaymentTransaction) -> payers.Payer:
    """What the payment says about its payer, as normalised keys."""
    record = txn.source_record if isinstance(txn.source_record, dict) else {}
    billing = record.get("billing_address")
    billing = billing if isinstance(billing, dict) else {}
    card = record.get("credit_card")
    card = card if isinstance(card, dict) else {}
    email = next(
        (
            record.get(name)
            for name in ("receipt_emailed_to", "email", "billing_email", "EMAIL")
            if record.get(name)
        ),
        "",
    )
    return payers.Payer(
        customer_id=payers.customer_id_key(txn.customer_reference),
        name=payers.name_key(billing.get("name") or record.get("billing_name") or ""),
        email=payers.email_key(email),
        card=payers.card_key(
            txn.card_brand,
            txn.card_last4,
            card.get("expiration_month"),
            card.get("expiration_year"),
        ),
    )


def earlier_payments(txn: PaymentTransaction) -> list[matching.Earlier]:
    """Paid transactions with the same card and amount, for duplicate detection."""
    if not txn.card_last4:
        return []
    others = (
        PaymentTransaction.objects.filter(
            connection=txn.connection,
            card_last4=txn.card_last4,
            amount=txn.amount,
            mapped_status=PaymentStatus.PAID,
        )
        .exclude(pk=txn.pk)
        .only(
            "transaction_id",
            "card_last4",
            "amount",
            "invoice_reference",
            "created_at",
            "first_seen_at",
        )
        .order_by("-created_at")[:50]
    )
    return [
        matching.Earlier(
            o.transaction_id,
            o.card_last4,
            o.amount,
            o.invoice_reference,
            o.posting_date(),
        )
        for o in others
    ]


def invoice_problem(invoice: dict[str, Any] | None, invno: str, customer: str) -> str:
    """Why this invoice cannot take the payment, or '' when it can."""
    if invoice is None:
        return f"Invoice {invno} was not found in Sage Pro."
    if Decimal(invoice["balance"]) <= 0:
        return f"Invoice {invno} is not open (balance {invoice['balance']})."
    if customer and customer.strip().upper() != str(invoice["custno"]).strip().upper():
        return f"Invoice {invno} belongs to customer {invoice['custno']}, but the payment names customer {customer}."
    return ""


# --- gathering ----------------------------------------------------------------------------


@dataclass
class Placement:
    """A decision and the Sage Pro invoices (gateway-shaped) it was made on."""

    decision: matching.Decision
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)

    def invoice(self, invno: str) -> dict[str, Any] | None:
        return self.invoices.get(invno.strip().upper())

    @property
    def first_invoice(self) -> dict[str, Any] | None:
        inv = self.decision.invoice
        return self.invoice(inv.invno) if inv is not None else None


class _Gatherer:
    def __init__(
        self, txn: PaymentTransaction, sage_conn: Connection, fresh: bool
    ) -> None:
        self.txn = txn
        self.sage_conn = sage_conn
        self.fresh = fresh
        self.reader = sage_conn.mirror()
        self.invoices: dict[str, dict[str, Any]] = {}
        # Whether the mirror was ever fully synced (it only ever becomes so).
        self.synced = cached(
            ("mirror_synced", sage_conn.pk),
            lambda: MirrorState.objects.filter(
                connection=sage_conn, full_synced_at__isnull=False
            ).exists(),
        )

    def add(self, invoices: Iterable[dict[str, Any] | None]) -> None:
        for invoice in invoices:
            if invoice is not None:
                self.invoices[str(invoice["invno"]).strip().upper()] = invoice

    def named(
        self, reference: str, payment: matching.Payment, prefixes: set[str]
    ) -> None:
        """Every invoice the reference, the description or the PO number may name.

        The mirror answers for all of them in one query (by invoice, order and PO
        key, each number and each whole text). The gateway is asked (when the mirror
        was never fully synced, or `fresh`) in the order the decision reads them,
        stopping at the first group that names something: the reference as written,
        the numbers in it, the description's, the PO number's."""
        raw = reference.strip().upper()
        ref_keys = parse_reference(reference, prefixes).keys
        desc_keys = parse_reference(payment.description, prefixes).keys
        po_keys = parse_reference(payment.po, prefixes).keys
        groups = [[raw] if raw else [], ref_keys, desc_keys, po_keys]
        keys = list(dict.fromkeys(k for group in groups[1:] for k in group))
        keys = keys[: MAX_LOOKUPS * 2]
        # A PO or order number written whole ("FAC-8250", "2025-0044").
        whole = [k for k in (reference_key(reference), reference_key(payment.po)) if k]
        if self.fresh or not self.synced:
            asked = 0
            for group in groups:
                found = False
                for key in group:
                    if not is_invoice_key(key) or asked >= MAX_LOOKUPS:
                        continue
                    asked += 1
                    invoice = (
                        mirror.refresh_invoice(self.sage_conn, key)
                        if self.fresh
                        else self.reader.get_invoice(key)
                    )
                    self.add([invoice])
                    found = found or invoice is not None
                if found:
                    break
        rows = MirroredInvoice.objects.filter(
            connection=self.sage_conn, deleted=False
        ).filter(
            Q(invno=raw[:20])
            | Q(invno_key__in=keys)
            | Q(ornum_key__in=keys + whole)
            | Q(ponum_key__in=keys + whole)
        )[:50]
        self.add(mirror.invoice_answer(row) for row in rows)

    def identity(self, payer: payers.Payer) -> payers.Identity:
        conditions = Q()
        if payer.customer_id:
            conditions |= Q(custno=payer.customer_id[:20])
        if payer.name:
            names = {payer.name, payers.without_department(payer.name)} - {""}
            conditions |= Q(name_key__in=names)
        if payer.email:
            conditions |= Q(emails__contains=f";{payer.email};")
            if domain := payers.email_domain(payer.email):
                conditions |= Q(emails__contains=f"@{domain};")
        rows = (
            list(
                MirroredCustomer.objects.filter(
                    conditions, connection=self.sage_conn, deleted=False
                ).only("custno", "name_key", "emails")[:MAX_CUSTOMERS]
            )
            if conditions
            else []
        )
        customers = [
            payers.Customer(
                row.custno, row.name_key, tuple(filter(None, row.emails.split(";")))
            )
            for row in rows
        ]
        if (
            payer.customer_id
            and not self.synced
            and not any(c.custno == payer.customer_id for c in customers)
        ):
            try:
                found = self.reader.get_customer(payer.customer_id)
            except NotFoundError:
                pass
            else:
                customers.append(payers.Customer(str(found["custno"]).strip()))
        keys = payer.keys()
        links = PayerLink.links_for(self.txn.connection, keys) if keys else []
        return payers.identify(payer, links, customers)

    def open_invoices(self, custno: str) -> None:
        if self.fresh:
            self.add(mirror.refresh_open_invoices(self.sage_conn, custno))
        else:
            self.add(self.reader.list_open_invoices(custno))


def is_invoice_key(key: str) -> bool:
    """Whether `key` can be an invoice number to ask Sage Pro for: 1 to 20 letters,
    digits, spaces or dashes (anything else is no invoice, and some characters, '/'
    among them, cannot even be put in the URL path)."""
    return bool(_INVOICE_KEY.fullmatch(key))


def place(
    txn: PaymentTransaction,
    sage_conn: Connection,
    *,
    fresh: bool = False,
    reference: str | None = None,
) -> Placement:
    """Which invoice(s) the payment pays: the connection's matching rules decide on
    everything `_Gatherer` finds (see the module docstring)."""
    reference = invoice_number_for(txn) if reference is None else reference
    payment = matching_payment(txn, reference)
    rules = matching_rules(txn.connection)
    rule = matching.choose_rule(payment, rules)
    prefixes = {p for r in [*rules, matching.DEFAULT_RULE] for p in r.strip_prefixes}
    gatherer = _Gatherer(txn, sage_conn, fresh)
    gatherer.named(reference, payment, prefixes)
    payer = payer_of(txn)
    identity = gatherer.identity(payer) if rule.identify_payer else None
    earlier = earlier_payments(txn)

    def decide() -> matching.Decision:
        return matching.decide(
            payment,
            [matching_invoice(i) for i in gatherer.invoices.values()],
            rules,
            earlier=earlier,
            identity=identity,
        )

    decision = decide()
    customer = decision.customer  # the payer's, or the invoice's when it is not known
    if customer and (not _is_clean(decision) or decision.approximate):
        # Near misses, amounts, part payments and the ranked candidates need the
        # customer's other open invoices.
        gatherer.open_invoices(customer)
        decision = decide()
    return Placement(decision, gatherer.invoices)


def _is_clean(decision: matching.Decision) -> bool:
    return decision.action == matching.Action.APPLY and not decision.review_kind
