"""Queries that more than one page of the portal asks the same way."""

from typing import Protocol

from django.db.models import OuterRef, QuerySet, Subquery

from integrations.models import PaymentTransaction, Posting


def cash_receipt_value(field: str) -> Subquery:
    """One field of the transaction's cash-receipt posting, for `annotate` (None if
    it has none)."""
    postings = Posting.objects.filter(
        transaction=OuterRef("pk"), kind=Posting.Kind.CASH_RECEIPT
    ).values(field)
    return Subquery(postings[:1])


class WithCashReceipt(Protocol):
    """A transaction from `with_cash_receipt`: its receipt's state and number."""

    receipt_state: str | None
    receipt_number: str | None


def with_cash_receipt(
    transactions: QuerySet[PaymentTransaction],
) -> QuerySet[PaymentTransaction]:
    """The transactions annotated with their cash receipt's `receipt_state` and
    `receipt_number`, so a list page costs one query."""
    return transactions.annotate(
        receipt_state=cash_receipt_value("state"),
        receipt_number=cash_receipt_value("document_number"),
    )
