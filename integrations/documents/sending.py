"""The cash receipt a posting sends now: the stored one, or one built again.

Also how a refusal is described: the field a gateway error code is about, and the
summary of a document our own validation stopped (nothing was sent).
"""

import dataclasses
from collections.abc import Mapping
from datetime import date
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.connectors.sagepro import CashReceipt
from integrations.documents.build import (
    ReceiptDocument,
    amount_problem,
    build_cash_receipt,
)
from integrations.documents.overrides import SPECS, _applicable, override_problems
from integrations.documents.sources import SageFacts
from integrations.models import Posting
from mappings import fields as fm
from mappings import gl


def stored_values(receipt: CashReceipt) -> dict[str, Any]:
    """A receipt's typed field values, as validation and the correction form read them."""
    raw = {
        "custno": receipt.custno,
        "date": receipt.date,
        "amount": receipt.amount,
        "method": receipt.method,
        "reference": receipt.reference,
        "invno": receipt.invno or None,
        "gl_account": receipt.gl_account,
    }
    out = {}
    for name, spec in SPECS.items():
        try:
            out[name] = fm.coerce(raw[name], spec)
        except (fm.TransformError, TypeError):
            out[name] = raw[name]
    return out


# The field a gateway refusal is about, so its review item can name it.
FIELD_FOR_CODE = {
    "PERIOD_LOCKED": "date",
    "PERIOD_CLOSED": "date",
    "PERIOD_NOT_DEFINED": "date",
    "FUTURE_PERIOD": "date",
    "ACCOUNT_NOT_FOUND": "gl_account",
    "ACCOUNT_INACTIVE": "gl_account",
    "CUSTOMER_NOT_FOUND": "custno",
    "INVOICE_NOT_FOUND": "invno",
    "INVOICE_NOT_OPEN": "invno",
    "DUPLICATE_RECEIPT": "reference",
}


def refused_field(code: str, payload: Mapping[str, Any]) -> str:
    """` (field date: 2025-03-14)` for a refusal about one field, else ""."""
    name = FIELD_FOR_CODE.get(code)
    if name is None:
        return ""
    value = stored_values(CashReceipt.from_payload(payload)).get(name)
    return f" (field {name}: {fm.display_value(value)})"


# The problem summary of a document our own validation stopped (`Posting.not_sent`):
# nothing was sent, so it may be built again from the current rows.
NOT_SENT = "Not sent to Sage Pro: "


def refusal_reason(exc: BaseException, plain: str, payload: Mapping[str, Any]) -> str:
    """What a review item says about a send no retry will fix."""
    if isinstance(exc, ConnectorError):
        return f"Sage Pro refused the receipt: {plain}" + refused_field(
            exc.code, payload
        )
    return (
        f"The receipt could not be built or sent: {plain}. No retry will "
        "fix this by itself: correct the cause, then retry."
    )


def needs_rebuild(posting: Posting) -> bool:
    return not posting.payload or posting.not_sent


def problem_summary(problems: list[fm.FieldProblem]) -> str:
    return NOT_SENT + "; ".join(p.describe() for p in problems)


def document_for_send(posting: Posting, reader: Any) -> ReceiptDocument:
    """The document to send for `posting` now, validated against Sage Pro's periods and
    chart as `reader` answers them (`Connection.mirror()`, or the connector itself).

    While our own validation has stopped it (nothing reached Sage Pro: `not_sent`), the
    document is built again from the current rows (a fixed GL rule or a new rate takes
    effect); otherwise the stored receipt is kept, so a retry after an unknown outcome
    sends the same body under the same idempotency key. Overrides are applied last
    either way. A rebuild keeps where the money was placed (on account, or split
    across invoices).
    """
    sage = SageFacts(reader)
    if needs_rebuild(posting):
        document = _rebuilt(posting, sage)
        if document is not None:
            return document
    return _stored(posting, sage)


def _rebuilt(posting: Posting, sage: SageFacts) -> ReceiptDocument | None:
    """The document built again from the current rows, or None when the invoice it
    names is gone (the stored receipt is then validated as it is)."""
    txn = posting.transaction
    overrides = posting.overrides or {}
    stored = CashReceipt.from_payload(posting.payload or {})
    if posting.payload and not stored.applications:
        # On account: the customer it was placed on, not the invoice it names.
        return build_cash_receipt(
            txn,
            None,
            sage_conn=posting.sagepro,
            sage=sage,
            overrides=overrides,
            applications=(),
            customer=stored.custno,
        )
    invno = stored_values(stored).get("invno") or txn.invoice_reference.strip()
    invoice = sage.reader.get_invoice(invno) if invno else None
    if invoice is None:
        return None
    split = len(stored.applications) > 1  # a reviewer's split (one currency, no rate)
    return build_cash_receipt(
        txn,
        invoice,
        sage_conn=posting.sagepro,
        sage=sage,
        overrides=overrides,
        applications=stored.applications if split else None,
    )


def _stored(posting: Posting, sage: SageFacts) -> ReceiptDocument:
    """The stored receipt with the reviewer's corrections, validated again."""
    txn = posting.transaction
    overrides = posting.overrides or {}
    receipt = CashReceipt.from_payload(posting.payload or {})
    values = stored_values(receipt)
    origin = dict.fromkeys(values, "as stored on the posting")
    chosen = next(
        (s for s in posting.gl_trace or [] if s.get("result") == gl.MATCHED), None
    )
    if chosen and values.get("gl_account"):
        who = f"GL rule #{chosen['rule']}" if chosen.get("rule") else "the"
        origin["gl_account"] = f"{who} {chosen.get('name', '')}".strip()
    refusals = override_problems(
        overrides,
        txn.posting_date(),
        fm.business_date(timezone.now(), settings.BUSINESS_TIME_ZONE),
    )
    for target, raw in _applicable(overrides).items():
        origin[target] = f"corrected by a reviewer to {raw!r}"
        try:
            values[target] = fm.coerce(raw, SPECS[target])
        except (fm.TransformError, TypeError):
            values[target] = raw

    def checked() -> list[fm.FieldProblem]:
        return fm.validate_fields(
            values,
            fm.CASH_RECEIPT_SPECS,
            fm.FieldCheck(
                periods=sage.periods_for(values.get("date")),
                chart=sage.chart() if values.get("gl_account") else None,
                rules=origin,
            ),
        )

    found = checked()
    if sage.confirm(found):
        found = checked()  # the mirror's periods or chart were behind Sage Pro
    problems = refusals + found
    if not any(p.field == "amount" for p in problems):
        wrong = amount_problem(values, txn, posting.exchange_rate)
        problems += [wrong] if wrong else []
    return ReceiptDocument(
        receipt=_corrected(receipt, values, overrides),
        values=values,
        gl_account=str(values.get("gl_account") or ""),
        gl_rule_id=posting.gl_rule_id,
        gl_trace=list(posting.gl_trace or []),
        exchange_rate=posting.exchange_rate,
        rate_on=posting.rate_on,
        problems=problems,
    )


def _corrected(
    receipt: CashReceipt, values: Mapping[str, Any], overrides: Mapping[str, Any]
) -> CashReceipt:
    """Only the correctable fields change; amount, customer and applications stay.
    A value that does not read as its type keeps the stored one (it is refused)."""
    changes: dict[str, Any] = {}
    for name in _applicable(overrides):
        value = values.get(name)
        if name == "date":
            if isinstance(value, date):
                changes["date"] = value
        elif name == "method":
            if str(value or ""):
                changes["method"] = str(value)
        elif name == "gl_account":
            changes["gl_account"] = str(value or "").strip()  # blank: Sage's default
    return dataclasses.replace(receipt, **changes)
