"""The one place that builds a Sage Pro cash receipt for a transaction.

A thin layer over the pure functions in `mappings/`: it reads the PayTrace connection's
field mappings and GL rules, the exchange rates and (when asked) Sage Pro's periods and
chart of accounts, and returns a `ReceiptDocument` saying what would be sent and why.
It never writes to the database and never posts anything; the pipeline
(`integrations.processing`), the review decisions and the admin's preview call it.

`build_cash_receipt` runs these steps, in this order, one function each:
1. `_defaults`: the values as they were before field mappings existed: `custno` from the
   invoice, `date` = the payment's creation day in BUSINESS_TIME_ZONE, `amount`,
   `method` from the connection, `reference` = the PayTrace transaction id, `invno`
   from the invoice.
2. `_apply_mappings`: `FieldMapping` rows of the PayTrace connection override those per
   target field (the exchange rate is looked up first, for `convert_currency`).
3. `_convert_currency`: the amount is booked in the Sage Pro company's base currency.
4. `_choose_gl_account`: the GL rules choose `gl_account` (`mappings.gl`); a connection
   with no rules and no suspense account sends none (Sage Pro's default cash account).
5. `_apply_overrides`: a reviewer's overrides (`Posting.overrides`), only `date`,
   `method` and `gl_account` (`CORRECTABLE_FIELDS`). An override of the amount,
   customer, invoice or reference is refused as a problem, so nothing is sent.
6. `_validate`: every field against `mappings.fields.CASH_RECEIPT_SPECS`, and the amount
   must be the payment's (converted at the rate when the currencies differ).
Then `_receipt` makes the `CashReceipt`: applied to the invoice up to its live balance,
to the `applications` a reviewer chose, or to none (on account).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.connectors.sagepro import Application, CashReceipt
from integrations.documents.overrides import (
    SPECS,
    TARGET_FIELDS,
    _applicable,
    override_problems,
)
from integrations.documents.sources import (
    SageFacts,
    find_invoice,
    invoice_number_for,
    load_field_mappings,
    load_gl_rules,
    load_rate,
    source_for,
    status_rule_for,
)
from integrations.models import Connection, PaymentTransaction
from mappings import currency as fx
from mappings import fields as fm
from mappings import gl
from mappings.status import StatusRule


@dataclass(frozen=True)
class MappingUse:
    """Where one target field's value came from (shown in the preview)."""

    target: str
    source: str
    transforms: tuple[dict[str, Any], ...] = ()
    row_id: int | None = None

    def describe(self) -> str:
        origin = f"FieldMapping #{self.row_id}" if self.row_id else "default"
        chain = fm.describe_transforms(self.transforms)
        return f"{origin}: {self.target} ← {self.source}" + (
            f" [{chain}]" if chain else ""
        )


@dataclass
class ReceiptDocument:
    """A cash receipt as it would be sent, with everything that produced it.

    `receipt` is what is stored and sent; `values` are the typed field values it was
    made from (what the preview shows, including a value validation refused).
    """

    receipt: CashReceipt
    values: dict[str, Any]
    gl_account: str = ""
    gl_rule_id: int | None = None
    gl_trace: list[dict[str, Any]] = field(default_factory=list)
    exchange_rate: Decimal | None = None
    rate_on: date | None = None
    original_amount: Decimal | None = None
    original_currency: str = ""
    base_currency: str = ""
    mappings: list[MappingUse] = field(default_factory=list)
    problems: list[fm.FieldProblem] = field(default_factory=list)
    status_rule: StatusRule | None = None
    notes: list[str] = field(default_factory=list)
    # The invoice reference Sage Pro has no invoice for ("" when it has, or none given).
    missing_invoice: str = ""

    @property
    def payload(self) -> dict[str, Any]:
        return self.receipt.as_payload()

    @property
    def is_valid(self) -> bool:
        return not self.problems

    def posting_fields(self) -> dict[str, Any]:
        """The Posting columns this document fills."""
        return {
            "payload": self.payload,
            "gl_account": self.gl_account,
            "gl_rule_id": self.gl_rule_id,
            "gl_trace": self.gl_trace,
            "exchange_rate": self.exchange_rate,
            "rate_on": self.rate_on,
        }


def preview_cash_receipt(
    txn: PaymentTransaction, overrides: Mapping[str, Any] | None = None
) -> ReceiptDocument:
    """What would be sent for `txn` now, checked against the mirror of Sage Pro (and
    Sage Pro itself for what the mirror lacks, or when the mirror would refuse it).

    Reads only: no posting is created and nothing is posted.
    """
    sage_conn = txn.connection.sagepro
    invoice, note = find_invoice(sage_conn, invoice_number_for(txn))
    sage = SageFacts(sage_conn.mirror()) if sage_conn else None
    try:
        if sage is not None:
            sage.periods()
    except ConnectorError as exc:
        sage = None
        note = (
            note or f"Sage Pro did not answer ({exc}); periods and accounts unchecked"
        )
    document = build_cash_receipt(
        txn, invoice, sage_conn=sage_conn, sage=sage, overrides=overrides, explain=True
    )
    if note:
        document.notes.insert(0, note)
    return document


def payment_amount(txn: PaymentTransaction, rate: Decimal | None) -> Decimal:
    """What the receipt must be for: the payment, in the booking currency."""
    return txn.amount if rate is None else fm.convert_money(txn.amount, rate)


def amount_problem(
    values: Mapping[str, Any], txn: PaymentTransaction, rate: Decimal | None
) -> fm.FieldProblem | None:
    """A problem when the document's amount is not the payment's, else None."""
    amount = values.get("amount")
    if not isinstance(amount, Decimal) or not isinstance(txn.amount, Decimal):
        return None  # a missing amount is refused as required
    expected = payment_amount(txn, rate)
    if amount == expected:
        return None
    return fm.FieldProblem(
        "amount",
        f"is not the payment's amount {expected}; the receipt is always for what "
        "PayTrace collected",
        amount,
        f"transaction {txn.transaction_id}",
    )


@dataclass
class _Draft:
    """The receipt while it is being built: values, where each came from, problems."""

    txn: PaymentTransaction
    source_conn: Connection
    sage_conn: Connection | None
    invoice: Mapping[str, Any] | None
    base: str
    day: date
    values: dict[str, Any] = field(default_factory=dict)
    uses: dict[str, MappingUse] = field(default_factory=dict)
    origin: dict[str, str] = field(default_factory=dict)
    problems: list[fm.FieldProblem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    missing_invoice: str = ""
    rate: fx.Rate | None = None
    original_currency: str = ""
    original_amount: Decimal | None = None
    converted_by_mapping: bool = False
    choice: gl.GlChoice | None = None
    trace: list[dict[str, Any]] = field(default_factory=list)

    @property
    def rate_value(self) -> Decimal | None:
        return self.rate.rate if self.rate else None


def build_cash_receipt(
    txn: PaymentTransaction,
    invoice: Mapping[str, Any] | None,
    *,
    sage_conn: Connection | None = None,
    sage: SageFacts | None = None,
    overrides: Mapping[str, Any] | None = None,
    explain: bool = False,
    applications: tuple[Application, ...] | None = None,
    customer: str = "",
) -> ReceiptDocument:
    """Build the transaction's cash receipt; see the module docstring for the steps.

    `applications` None applies the receipt to `invoice` up to its balance; a tuple
    is where a reviewer placed the money (a split), and an empty one posts it on
    account, all of it unapplied, for `customer` (default: the invoice's customer). With `sage`, the date is checked
    against Sage Pro's periods and the GL account against its chart; without it only
    the local specs are checked. `explain` adds the status-map row (for the preview).
    """
    source_conn = txn.connection
    sage_conn = sage_conn or source_conn.sagepro
    draft = _Draft(
        txn=txn,
        source_conn=source_conn,
        sage_conn=sage_conn,
        invoice=invoice,
        base=(sage_conn.base_currency if sage_conn else "USD").upper() or "USD",
        day=txn.posting_date(),
    )
    on_account = applications == ()
    _defaults(draft, customer.strip() if on_account else "")
    _find_rate(draft)
    _apply_mappings(draft)
    _convert_currency(draft)
    _choose_gl_account(draft)
    refusals = _apply_overrides(draft, overrides, on_account)
    _validate(draft, sage)
    document = ReceiptDocument(
        receipt=_receipt(draft.values, invoice, applications),
        values=draft.values,
        gl_account=draft.values.get("gl_account") or "",
        gl_rule_id=draft.choice.rule.id if draft.choice and draft.choice.rule else None,
        gl_trace=draft.trace,
        exchange_rate=draft.rate_value,
        rate_on=draft.rate.valid_on if draft.rate else None,
        original_amount=draft.original_amount,
        original_currency=draft.original_currency,
        base_currency=draft.base,
        mappings=[draft.uses[name] for name in TARGET_FIELDS if name in draft.uses],
        problems=refusals + draft.problems,
        notes=draft.notes,
        missing_invoice=draft.missing_invoice,
    )
    if explain:
        document.status_rule = status_rule_for(txn)
    return document


def _defaults(draft: _Draft, account_of: str) -> None:
    """Step 1: the values before any field mapping (`account_of`: the customer a
    reviewer posts the payment on account of)."""
    txn, invoice = draft.txn, draft.invoice
    if account_of:
        custno, custno_source = account_of, "the customer chosen (on account)"
        invno, invno_source = "", "payment on account"
    elif invoice:
        custno, custno_source = str(invoice["custno"]).strip(), "invoice.custno"
        invno, invno_source = str(invoice["invno"]).strip(), "invoice.invno"
    else:
        custno, custno_source = txn.customer_reference.strip(), "customer_id"
        invno, invno_source = txn.invoice_reference.strip(), "invoice_id"
    draft.values = {
        "custno": custno,
        "date": draft.day,
        "amount": txn.amount,
        "method": draft.source_conn.payment_method,
        "reference": txn.transaction_id,
        "invno": invno,
    }
    draft.uses = {
        "custno": MappingUse("custno", custno_source),
        "date": MappingUse("date", "created.at → business date"),
        "amount": MappingUse("amount", "amount"),
        "method": MappingUse("method", "connection payment method"),
        "reference": MappingUse("reference", "transaction_id"),
        "invno": MappingUse("invno", invno_source),
    }
    if invoice is None and not account_of:
        draft.missing_invoice = txn.invoice_reference.strip()
        draft.notes.append(
            f"Sage Pro has no invoice {txn.invoice_reference or '(none)'}; the receipt "
            "would not be applied."
        )


def _find_rate(draft: _Draft) -> None:
    """The exchange rate, looked up before the mappings (`convert_currency` uses it)."""
    txn, base, day = draft.txn, draft.base, draft.day
    draft.original_currency = (txn.currency or base).upper()
    if draft.original_currency == base:
        return
    draft.rate = load_rate(draft.original_currency, base, day)
    if draft.rate is None:
        draft.problems.append(
            fm.FieldProblem(
                "amount",
                f"no {draft.original_currency}→{base} exchange rate for "
                f"{day.isoformat()} or the {fx.MAX_RATE_AGE_DAYS} days before",
                txn.amount,
                f"currency {draft.original_currency}, date {day.isoformat()}",
                "VALIDATION:amount",
            )
        )


def _apply_mappings(draft: _Draft) -> None:
    """Step 2: the connection's field mappings, each overriding one target field."""
    ctx = fm.TransformContext(
        gateway_zone=draft.source_conn.time_zone,
        business_zone=settings.BUSINESS_TIME_ZONE,
        rate=draft.rate_value,
    )
    source = source_for(draft.txn, draft.invoice)
    for row in load_field_mappings(draft.source_conn):
        target = row.target_field
        use = MappingUse(
            target, row.source_path or "(constant)", tuple(row.transforms), row.pk
        )
        if target not in SPECS:
            draft.problems.append(
                fm.FieldProblem(
                    target,
                    f"is not a field of the cash receipt ({', '.join(TARGET_FIELDS)})",
                    rule=use.describe(),
                )
            )
            continue
        draft.uses[target] = use
        try:
            raw = fm.resolve_path(source, row.source_path) if row.source_path else None
            draft.values[target] = fm.apply_transforms(raw, row.transforms, ctx)
        except (fm.TransformError, TypeError, ValueError) as exc:
            draft.problems.append(
                fm.FieldProblem(target, f"mapping failed: {exc}", rule=use.describe())
            )
            draft.values[target] = None
            continue
        if target == "amount" and any(
            t.get("op") == "convert_currency" for t in row.transforms
        ):
            draft.converted_by_mapping = True


def _convert_currency(draft: _Draft) -> None:
    """Step 3: the amount in the Sage Pro company's base currency."""
    values, txn, rate = draft.values, draft.txn, draft.rate
    draft.original_amount = txn.amount
    if values.get("amount") is not None:
        try:
            amount = fm.to_decimal(values["amount"])
            if not draft.converted_by_mapping:
                draft.original_amount = amount
            if rate is not None and not draft.converted_by_mapping:
                amount = fm.convert_money(amount, rate.rate)
            values["amount"] = amount
        except (fm.TransformError, TypeError) as exc:
            draft.problems.append(
                fm.FieldProblem(
                    "amount",
                    str(exc),
                    values["amount"],
                    draft.uses["amount"].describe(),
                )
            )
            values["amount"] = None
    if rate is not None:
        draft.notes.append(
            f"{draft.original_amount} {draft.original_currency} booked as "
            f"{values.get('amount')} {draft.base} at {rate.rate} "
            f"(rate of {rate.valid_on.isoformat()})"
        )


def _choose_gl_account(draft: _Draft) -> None:
    """Step 4: the GL rules (or the suspense account) choose the account."""
    source_conn, values, txn = draft.source_conn, draft.values, draft.txn
    rules = load_gl_rules(source_conn)
    suspense = source_conn.suspense_account or (
        draft.sage_conn.suspense_account if draft.sage_conn else ""
    )
    if not rules and not suspense:
        values["gl_account"] = None
        draft.trace = [
            {
                "rule": None,
                "name": "no GL rules",
                "result": gl.SKIPPED,
                "reason": "the connection has no GL rules and no suspense account: "
                "the receipt carries no gl_account (Sage Pro's default)",
                "account": "",
            }
        ]
        return
    amount = values.get("amount")
    choice = gl.choose_gl_account(
        gl.GlFacts(
            transaction_type=txn.transaction_type,
            card_brand=txn.card_brand,
            channel=txn.channel,
            amount=amount if isinstance(amount, Decimal) else txn.amount,
            currency=draft.original_currency,
            customer=str(values.get("custno") or ""),
            invoice=txn.invoice_reference,
        ),
        rules,
        suspense,
    )
    draft.choice = choice
    values["gl_account"] = choice.account
    draft.trace = choice.trace_dicts()
    if not choice.account:
        draft.problems.append(
            fm.FieldProblem(
                "gl_account",
                "no GL rule matched and the connection has no suspense account",
                "",
                "GL rules of " + source_conn.slug,
            )
        )
    if choice.rule:
        draft.origin["gl_account"] = f"GL rule {choice.rule.describe()}"
    elif choice.used_suspense:
        draft.origin["gl_account"] = "the connection's suspense account"


def _apply_overrides(
    draft: _Draft, overrides: Mapping[str, Any] | None, on_account: bool
) -> list[fm.FieldProblem]:
    """Step 5: a reviewer's corrections of the correctable fields; returns the
    refusals of the others (reported first)."""
    refusals = override_problems(
        overrides or {},
        draft.day,
        fm.business_date(timezone.now(), settings.BUSINESS_TIME_ZONE),
    )
    for target, raw in _applicable(overrides).items():
        draft.values[target] = raw if raw != "" else None
        draft.origin[target] = f"corrected by a reviewer to {raw!r}"
        if target == "gl_account":
            draft.trace.append(
                {
                    "rule": None,
                    "name": "reviewer override",
                    "result": gl.MATCHED,
                    "reason": "a reviewer set the account",
                    "account": str(raw),
                }
            )
    # A payment on account (unapplied cash) names the customer but no invoice.
    if on_account:
        draft.values["invno"] = None
        draft.origin["invno"] = "payment on account: no invoice"
    return refusals


def _validate(draft: _Draft, sage: SageFacts | None) -> None:
    """Step 6: types, the field specs, Sage Pro's periods and chart, and the amount."""
    values, problems = draft.values, draft.problems
    for name, spec in SPECS.items():
        if name in draft.uses:
            draft.origin.setdefault(name, draft.uses[name].describe())
        try:
            values[name] = fm.coerce(values.get(name), spec)
        except (fm.TransformError, TypeError) as exc:
            problems.append(
                fm.FieldProblem(
                    name, str(exc), values.get(name), draft.origin.get(name, "")
                )
            )
            values[name] = None
    known = {p.field for p in problems}

    def checked() -> list[fm.FieldProblem]:
        check = fm.FieldCheck(
            periods=sage.periods_for(values.get("date")) if sage else None,
            chart=sage.chart() if sage and values.get("gl_account") else None,
            rules=draft.origin,
        )
        return [
            p
            for p in fm.validate_fields(values, fm.CASH_RECEIPT_SPECS, check)
            if p.field not in known
        ]

    found = checked()
    if sage is not None and sage.confirm(found):
        found = checked()  # the mirror's periods or chart were behind Sage Pro
    problems += found
    if "amount" not in {p.field for p in problems} and (
        draft.rate is not None or draft.original_currency == draft.base
    ):
        wrong = amount_problem(values, draft.txn, draft.rate_value)
        problems += [wrong] if wrong else []


def _receipt(
    values: Mapping[str, Any],
    invoice: Mapping[str, Any] | None,
    applications: tuple[Application, ...] | None,
) -> CashReceipt:
    """The receipt from typed values. Unless the applications are given, it is applied
    to the invoice up to its live balance (in the base currency); the rest stays on
    the receipt as unapplied cash."""
    amount = values.get("amount")
    day = values.get("date")
    invno = values.get("invno")
    if applications is None:
        applications = ()
        if invno and isinstance(amount, Decimal):
            applied = amount
            if invoice is not None:
                applied = min(amount, fm.to_decimal(invoice["balance"]))
            applications = (Application(str(invno).strip(), applied),)
    return CashReceipt(
        custno=str(values.get("custno") or "").strip(),
        date=day if isinstance(day, date) else None,
        amount=amount,
        method=str(values.get("method") or ""),
        reference=str(values.get("reference") or ""),
        applications=applications,
        gl_account=str(values.get("gl_account") or "").strip(),
    )
