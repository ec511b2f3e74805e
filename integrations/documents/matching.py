"""The plain values `mappings.matching` decides on, read from the portal's rows.

The payment, the Sage Pro invoice its reference names, the connection's matching
rules, and the earlier payments that may make it a duplicate.
"""

from decimal import Decimal
from typing import Any

from integrations.batchcache import cached
from integrations.models import Connection, PaymentTransaction
from mappings import matching
from mappings.models import MatchingRule, PaymentStatus


def matching_payment(
    txn: PaymentTransaction, reference: str | None = None
) -> matching.Payment:
    return matching.Payment(
        transaction_id=txn.transaction_id,
        amount=txn.amount,
        reference=txn.invoice_reference.strip() if reference is None else reference,
        customer=txn.customer_reference.strip(),
        card_last4=txn.card_last4,
        channel=txn.channel,
        paid_on=txn.posting_date(),
    )


def matching_invoice(invoice: dict[str, Any]) -> matching.Invoice:
    return matching.Invoice(
        invno=str(invoice["invno"]).strip(),
        custno=str(invoice["custno"]).strip(),
        balance=Decimal(invoice["balance"]),
        invamt=Decimal(invoice.get("invamt") or 0),
        invdte=invoice.get("invdte"),
    )


def matching_rules(connection: Connection) -> list[matching.Rule]:
    return cached(
        ("matching_rules", connection.pk), lambda: MatchingRule.rules_for(connection)
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


def decide_match(
    txn: PaymentTransaction, invno: str, invoice: dict[str, Any] | None
) -> matching.Decision:
    """Which invoice the payment pays: the connection's matching rules decide."""
    return matching.decide(
        matching_payment(txn, invno),
        [matching_invoice(invoice)] if invoice else [],
        matching_rules(txn.connection),
        earlier=earlier_payments(txn),
    )
