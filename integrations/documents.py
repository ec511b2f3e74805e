"""The one place that builds a Sage Pro cash-receipt document for a transaction.

A thin loader around the pure functions in `mappings/`: it reads the PayTrace
connection's GL rules and field mappings, the exchange rates and (when asked) Sage
Pro's periods and chart of accounts, and returns a `ReceiptDocument` saying what would
be sent and why. It never writes to the database and never posts anything; the
pipeline (`integrations.processing`) and the admin's preview both call it.

Steps of `build_cash_receipt`:
1. Default values, exactly as before field mappings existed: `custno` from the invoice,
   `date` = the payment's creation day in BUSINESS_TIME_ZONE, `amount`, `method` from
   the connection, `reference` = the PayTrace transaction id, `invno` from the invoice.
2. `FieldMapping` rows of the PayTrace connection override those per target field.
3. The amount is booked in the Sage Pro company's base currency (`mappings.currency`).
4. The GL rules choose `gl_account` (`mappings.gl`); a connection with no rules and no
   suspense account sends none (Sage Pro's default cash account, as before).
5. A reviewer's overrides (`Posting.overrides`) are applied last: only `date`, `method`
   and `gl_account` (`CORRECTABLE_FIELDS`). An override of the amount, customer, invoice
   or reference is refused as a problem, so nothing is sent, whoever stored it.
6. Every field is validated against `mappings.fields.CASH_RECEIPT_SPECS`, and the amount
   must be the payment's (converted at the rate when the currencies differ).
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import normalize_record
from integrations.models import Connection, Event, PaymentTransaction, Posting
from integrations.redaction import redact_data
from mappings import currency as fx
from mappings import fields as fm
from mappings import gl
from mappings.models import CurrencyRate, FieldMapping, GlRule, StatusMap
from mappings.status import StatusFacts, StatusRule, map_status

SPECS = {spec.name: spec for spec in fm.CASH_RECEIPT_SPECS}
TARGET_FIELDS = tuple(SPECS)

# What a reviewer may correct on a receipt. Money and identity are not among them: the
# amount is what PayTrace collected, and the customer and invoice change only through
# the apply decisions (apply, split, on account), which check them against Sage Pro.
CORRECTABLE_FIELDS = ("date", "method", "gl_account")
PROTECTED_FIELDS = {
    "amount": "the receipt amount is always the amount PayTrace collected",
    "custno": "change the customer with “Post on account” or by applying the "
    "payment to that customer's invoice",
    "invno": "change the invoice with “Apply to an invoice” or “Split across invoices”",
    "reference": "the reference is the PayTrace transaction id that reconciliation "
    "matches the receipt by",
}
# A corrected date moves a receipt out of a closed or locked period, forwards only: not
# before the payment, not after today, and at most this many days after the payment (a
# quarter), so a reviewer cannot shift cash into an unrelated period or year.
DATE_CORRECTION_MAX_DAYS = 92


class OverrideError(ValueError):
    """A reviewer's correction the portal refuses; the message names the field."""


class SageFacts:
    """Sage Pro's periods and chart of accounts, each fetched at most once per build.

    Connector errors propagate: a transient one makes the caller retry later.
    """

    def __init__(self, gateway: Any) -> None:
        self.gateway = gateway
        self._periods: list[fm.Period] | None = None
        self._chart: dict[str, bool] | None = None

    def periods(self) -> list[fm.Period]:
        if self._periods is None:
            self._periods = [
                fm.Period(
                    yearprd=str(p["yearprd"]),
                    bdate=p["bdate"],
                    edate=p["edate"],
                    pclosed=bool(p.get("pclosed")),
                    plocked=bool(p.get("plocked")),
                    permlck=bool(p.get("permlck")),
                    current=bool(p.get("current")),
                )
                for p in self.gateway.list_periods()
            ]
        return self._periods

    def periods_for(self, day: object) -> list[fm.Period] | None:
        """The periods to check `day` against, or None when it need not be pre-checked.

        A date in the business calendar's current month is left to Sage Pro, which
        refuses a locked or closed period atomically (nothing is written) with a
        `PERIOD_*` code that the review item files under `date`. Skipping it saves a
        `GET /periods` round trip on nearly every receipt; older and later dates, the
        ones that hit locked, closed and future periods, are always pre-checked.
        """
        if not isinstance(day, date):
            return None
        today = fm.business_date(timezone.now(), settings.BUSINESS_TIME_ZONE)
        if (day.year, day.month) == (today.year, today.month):
            return None
        return self.periods()

    def chart(self) -> dict[str, bool]:
        if self._chart is None:
            self._chart = gl.chart_from(self.gateway.list_gl_accounts())
        return self._chart


@dataclass(frozen=True)
class MappingUse:
    """Where one target field's value came from (shown in the preview)."""

    target: str
    source: str
    transforms: tuple = ()
    row_id: int | None = None

    def describe(self) -> str:
        origin = f"FieldMapping #{self.row_id}" if self.row_id else "default"
        chain = fm.describe_transforms(self.transforms)
        return f"{origin}: {self.target} ← {self.source}" + (
            f" [{chain}]" if chain else ""
        )


@dataclass
class ReceiptDocument:
    """A cash receipt as it would be sent, with everything that produced it."""

    payload: dict[str, Any]
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


# --- loaders --------------------------------------------------------------------------


def load_gl_rules(connection: Connection) -> list[gl.GlRuleData]:
    return GlRule.rules_for(connection)


def load_field_mappings(
    connection: Connection, document: str = FieldMapping.Document.CASH_RECEIPT
) -> list[FieldMapping]:
    return list(
        FieldMapping.objects.filter(
            connection=connection, document=document, is_active=True
        )
    )


def load_rate(currency: str, base_currency: str, day: date) -> fx.Rate | None:
    rows = CurrencyRate.objects.filter(
        currency__iexact=currency,
        base_currency__iexact=base_currency,
        valid_on__lte=day,
        valid_on__gte=day - timedelta(days=fx.MAX_RATE_AGE_DAYS),
    )
    return fx.find_rate(
        currency,
        base_currency,
        day,
        [fx.Rate(r.currency, r.base_currency, r.rate, r.valid_on) for r in rows],
    )


def status_rule_for(txn: PaymentTransaction) -> StatusRule | None:
    """The status-map row that gives the transaction its status (latest event)."""
    event = (
        Event.objects.filter(
            connection_id=txn.connection_id, transaction_id=txn.transaction_id
        )
        .order_by("-occurred_at", "-pk")
        .first()
    )
    facts = StatusFacts(
        event_type=event.type if event else "",
        transaction_type=txn.transaction_type,
        status_code=txn.status_code,
        status_message=txn.status_message,
    )
    return map_status(facts, StatusMap.rules_for(txn.connection))


def transaction_from_record(
    connection: Connection, record: Mapping[str, Any]
) -> PaymentTransaction:
    """An unsaved transaction from a pasted PayTrace record (for the GL rule tester)."""
    parsed = normalize_record(record, connection.time_zone)
    source, _ = redact_data(dict(record))
    return PaymentTransaction(
        connection=connection,
        transaction_id=parsed.transaction_id or "(pasted)",
        transaction_type=parsed.transaction_type,
        amount=parsed.amount,
        currency=str(record.get("currency") or parsed.currency).upper(),
        invoice_reference=parsed.invoice_id,
        customer_reference=parsed.customer_id,
        customer_po=parsed.customer_reference_id,
        card_brand=parsed.card_brand,
        channel=parsed.channel,
        status_code=parsed.status_code,
        status_message=parsed.status_message,
        created_at=parsed.created_at,
        source_record=source,
    )


def invoice_number_for(txn: PaymentTransaction) -> str:
    """The Sage Pro invoice number to look up: `invoice_id`, through the connection's
    `invno` mapping when it has one (e.g. `INV-0010001` → `10001`)."""
    default = txn.invoice_reference.strip()
    row = next(
        (m for m in load_field_mappings(txn.connection) if m.target_field == "invno"),
        None,
    )
    if row is None:
        return default
    ctx = fm.TransformContext(
        gateway_zone=txn.connection.time_zone,
        business_zone=settings.BUSINESS_TIME_ZONE,
    )
    try:
        raw = fm.resolve_path(source_for(txn, None), row.source_path)
        value = fm.apply_transforms(raw, row.transforms, ctx)
    except (fm.TransformError, TypeError, ValueError):
        return default  # the document build reports the mapping's problem
    return str(value or "").strip() or default


def find_invoice(sage_conn: Connection | None, invno: str) -> tuple[dict | None, str]:
    """Look an invoice up for a preview; never raises (returns a note instead)."""
    if sage_conn is None or not invno.strip():
        return None, ""
    try:
        return sage_conn.sage().get_invoice(invno.strip()), ""
    except ConnectorError as exc:
        return None, f"Sage Pro could not be asked about invoice {invno}: {exc}"


def preview_cash_receipt(
    txn: PaymentTransaction, overrides: Mapping[str, Any] | None = None
) -> ReceiptDocument:
    """What would be sent for `txn` now, checked against Sage Pro when it answers.

    Reads only: no posting is created and nothing is posted.
    """
    sage_conn = txn.connection.sagepro
    invoice, note = find_invoice(sage_conn, invoice_number_for(txn))
    sage = SageFacts(sage_conn.sage()) if sage_conn else None
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


# --- building ---------------------------------------------------------------------------


def override_problems(
    overrides: Mapping[str, Any], payment_day: date, today: date
) -> list[fm.FieldProblem]:
    """Why each of a reviewer's overrides is refused (empty when all may be applied)."""
    problems = []
    for name, raw in overrides.items():
        if name in PROTECTED_FIELDS:
            message = f"cannot be corrected: {PROTECTED_FIELDS[name]}"
        elif name not in CORRECTABLE_FIELDS:
            message = (
                f"is not a field a reviewer can correct "
                f"({', '.join(CORRECTABLE_FIELDS)})"
            )
        else:
            continue
        problems.append(
            fm.FieldProblem(name, message, raw, "reviewer override", f"OVERRIDE:{name}")
        )
    raw_day = overrides.get("date")
    if raw_day in (None, ""):
        return problems
    try:
        day = fm.coerce(raw_day, SPECS["date"])
    except (fm.TransformError, TypeError) as exc:
        message = str(exc)
    else:
        latest = payment_day + timedelta(days=DATE_CORRECTION_MAX_DAYS)
        if day < payment_day:
            message = (
                f"is before the payment's date {payment_day.isoformat()}; "
                "a receipt cannot predate the money"
            )
        elif day > today:
            message = f"is after today ({today.isoformat()})"
        elif day > latest:
            message = (
                f"is more than {DATE_CORRECTION_MAX_DAYS} days after the payment's "
                f"date {payment_day.isoformat()}; book it in Sage Pro by hand"
            )
        else:
            return problems
    problems.append(
        fm.FieldProblem("date", message, raw_day, "reviewer override", "OVERRIDE:date")
    )
    return problems


def check_overrides(overrides: Mapping[str, Any], txn: PaymentTransaction) -> None:
    """Refuse a reviewer's corrections unless every one may be applied."""
    today = fm.business_date(timezone.now(), settings.BUSINESS_TIME_ZONE)
    problems = override_problems(overrides, txn.posting_date(), today)
    if problems:
        raise OverrideError("; ".join(p.describe() for p in problems))


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


def _applicable(overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    return {k: v for k, v in (overrides or {}).items() if k in CORRECTABLE_FIELDS}


def source_for(txn: PaymentTransaction, invoice: Mapping[str, Any] | None) -> dict:
    """What a mapping's `source_path` reads: the PayTrace record (card data masked),
    plus `transaction.*` (the portal's normalised view) and `invoice.*` (Sage Pro's)."""
    source = dict(txn.source_record or {})
    source["transaction"] = {
        "transaction_id": txn.transaction_id,
        "transaction_type": txn.transaction_type,
        "amount": txn.amount,
        "currency": txn.currency,
        "invoice_reference": txn.invoice_reference,
        "customer_reference": txn.customer_reference,
        "customer_po": txn.customer_po,
        "card_brand": txn.card_brand,
        "channel": txn.channel,
        "created_at": txn.created_at,
        "settled_at": txn.settled_at,
    }
    source["invoice"] = dict(invoice or {})
    return source


def build_cash_receipt(
    txn: PaymentTransaction,
    invoice: Mapping[str, Any] | None,
    *,
    sage_conn: Connection | None = None,
    sage: SageFacts | None = None,
    overrides: Mapping[str, Any] | None = None,
    explain: bool = False,
    on_account: bool = False,
) -> ReceiptDocument:
    """Build the transaction's cash receipt; see the module docstring for the steps.

    With `sage`, the date is checked against Sage Pro's periods and the GL account
    against its chart; without it only the local specs are checked. `explain` adds the
    status-map row (one more query, for the preview).
    """
    source_conn = txn.connection
    sage_conn = sage_conn or source_conn.sagepro
    base = (sage_conn.base_currency if sage_conn else "USD").upper() or "USD"
    day = txn.posting_date()
    problems: list[fm.FieldProblem] = []
    notes: list[str] = []
    origin: dict[str, str] = {}

    # 1. defaults
    invno_default = (
        str(invoice["invno"]).strip() if invoice else txn.invoice_reference.strip()
    )
    values: dict[str, Any] = {
        "custno": str(invoice["custno"]).strip()
        if invoice
        else txn.customer_reference.strip(),
        "date": day,
        "amount": txn.amount,
        "method": source_conn.payment_method,
        "reference": txn.transaction_id,
        "invno": invno_default,
    }
    uses = {
        "custno": MappingUse("custno", "invoice.custno" if invoice else "customer_id"),
        "date": MappingUse("date", "created.at → business date"),
        "amount": MappingUse("amount", "amount"),
        "method": MappingUse("method", "connection payment method"),
        "reference": MappingUse("reference", "transaction_id"),
        "invno": MappingUse("invno", "invoice.invno" if invoice else "invoice_id"),
    }
    if invoice is None:
        notes.append(
            f"Sage Pro has no invoice {txn.invoice_reference or '(none)'}; the receipt "
            "would not be applied."
        )

    # 3 (first, because a convert_currency transform needs the rate).
    rate: fx.Rate | None = None
    original_currency = (txn.currency or base).upper()
    if original_currency != base:
        rate = load_rate(original_currency, base, day)
        if rate is None:
            problems.append(
                fm.FieldProblem(
                    "amount",
                    f"no {original_currency}→{base} exchange rate for {day.isoformat()} "
                    f"or the {fx.MAX_RATE_AGE_DAYS} days before",
                    txn.amount,
                    f"currency {original_currency}, date {day.isoformat()}",
                    "VALIDATION:amount",
                )
            )
    ctx = fm.TransformContext(
        gateway_zone=source_conn.time_zone,
        business_zone=settings.BUSINESS_TIME_ZONE,
        rate=rate.rate if rate else None,
    )

    # 2. field mappings
    source = source_for(txn, invoice)
    converted_by_mapping = False
    for row in load_field_mappings(source_conn):
        target = row.target_field
        use = MappingUse(
            target, row.source_path or "(constant)", tuple(row.transforms), row.pk
        )
        if target not in SPECS:
            problems.append(
                fm.FieldProblem(
                    target,
                    f"is not a field of the cash receipt ({', '.join(TARGET_FIELDS)})",
                    rule=use.describe(),
                )
            )
            continue
        uses[target] = use
        try:
            raw = fm.resolve_path(source, row.source_path) if row.source_path else None
            values[target] = fm.apply_transforms(raw, row.transforms, ctx)
        except (fm.TransformError, TypeError, ValueError) as exc:
            problems.append(
                fm.FieldProblem(
                    target,
                    f"mapping failed: {exc}",
                    rule=use.describe(),
                )
            )
            values[target] = None
            continue
        if target == "amount" and any(
            t.get("op") == "convert_currency" for t in row.transforms
        ):
            converted_by_mapping = True

    # 3. currency
    original_amount = txn.amount
    if values.get("amount") is not None:
        try:
            amount = fm.to_decimal(values["amount"])
            original_amount = amount if not converted_by_mapping else txn.amount
            if rate is not None and not converted_by_mapping:
                amount = fm.convert_money(amount, rate.rate)
            values["amount"] = amount
        except (fm.TransformError, TypeError) as exc:
            problems.append(
                fm.FieldProblem(
                    "amount", str(exc), values["amount"], uses["amount"].describe()
                )
            )
            values["amount"] = None
    if rate is not None:
        notes.append(
            f"{original_amount} {original_currency} booked as {values.get('amount')} "
            f"{base} at {rate.rate} (rate of {rate.valid_on.isoformat()})"
        )

    # 4. GL account
    rules = load_gl_rules(source_conn)
    suspense = source_conn.suspense_account or (
        sage_conn.suspense_account if sage_conn else ""
    )
    choice: gl.GlChoice | None = None
    if rules or suspense:
        amount_for_rules = values.get("amount")
        choice = gl.choose_gl_account(
            gl.GlFacts(
                transaction_type=txn.transaction_type,
                card_brand=txn.card_brand,
                channel=txn.channel,
                amount=amount_for_rules
                if isinstance(amount_for_rules, Decimal)
                else txn.amount,
                currency=original_currency,
                customer=str(values.get("custno") or ""),
                invoice=txn.invoice_reference,
            ),
            rules,
            suspense,
        )
        values["gl_account"] = choice.account
        trace = choice.trace_dicts()
        if not choice.account:
            problems.append(
                fm.FieldProblem(
                    "gl_account",
                    "no GL rule matched and the connection has no suspense account",
                    "",
                    "GL rules of " + source_conn.slug,
                )
            )
        if choice.rule:
            origin["gl_account"] = f"GL rule {choice.rule.describe()}"
        elif choice.used_suspense:
            origin["gl_account"] = "the connection's suspense account"
    else:
        values["gl_account"] = None
        trace = [
            {
                "rule": None,
                "name": "no GL rules",
                "result": gl.SKIPPED,
                "reason": "the connection has no GL rules and no suspense account: "
                "the receipt carries no gl_account (Sage Pro's default)",
                "account": "",
            }
        ]

    # 5. overrides (only the correctable fields; the others are refused below)
    override_refusals = override_problems(
        overrides or {},
        day,
        fm.business_date(timezone.now(), settings.BUSINESS_TIME_ZONE),
    )
    for target, raw in _applicable(overrides).items():
        values[target] = raw if raw != "" else None
        origin[target] = f"corrected by a reviewer to {raw!r}"
        if target == "gl_account":
            trace.append(
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
        values["invno"] = None
        origin["invno"] = "payment on account: no invoice"

    # 6. types and validation
    for name, spec in SPECS.items():
        if name in uses:
            origin.setdefault(name, uses[name].describe())
        try:
            values[name] = fm.coerce(values.get(name), spec)
        except (fm.TransformError, TypeError) as exc:
            problems.append(
                fm.FieldProblem(name, str(exc), values.get(name), origin.get(name, ""))
            )
            values[name] = None
    known = {p.field for p in problems}
    check = fm.FieldCheck(
        periods=sage.periods_for(values.get("date")) if sage else None,
        chart=sage.chart() if sage and values.get("gl_account") else None,
        rules=origin,
    )
    problems += [
        p
        for p in fm.validate_fields(values, fm.CASH_RECEIPT_SPECS, check)
        if p.field not in known
    ]
    if "amount" not in {p.field for p in problems} and (
        rate is not None or original_currency == base
    ):
        wrong = amount_problem(values, txn, rate.rate if rate else None)
        problems += [wrong] if wrong else []
    problems = override_refusals + problems

    document = ReceiptDocument(
        payload=payload_from(values, invoice),
        values=values,
        gl_account=values.get("gl_account") or "",
        gl_rule_id=choice.rule.id if choice and choice.rule else None,
        gl_trace=trace,
        exchange_rate=rate.rate if rate else None,
        rate_on=rate.valid_on if rate else None,
        original_amount=original_amount,
        original_currency=original_currency,
        base_currency=base,
        mappings=[uses[name] for name in TARGET_FIELDS if name in uses],
        problems=problems,
        notes=notes,
    )
    if explain:
        document.status_rule = status_rule_for(txn)
    return document


def payload_from(
    values: Mapping[str, Any], invoice: Mapping[str, Any] | None
) -> dict[str, Any]:
    """The gateway body (docs/sagepro-gateway.md §4.3) from typed values.

    The application is capped at the invoice's live balance (in the base currency);
    the rest stays on the receipt as unapplied cash.
    """
    amount = values.get("amount")
    day = values.get("date")
    payload: dict[str, Any] = {
        "custno": str(values.get("custno") or "").strip(),
        "date": day.isoformat() if isinstance(day, date) else "",
        "amount": str(amount) if amount is not None else "",
        "method": str(values.get("method") or ""),
        "reference": str(values.get("reference") or ""),
        "applications": [],
    }
    invno = values.get("invno")
    if invno and isinstance(amount, Decimal):
        applied = amount
        if invoice is not None:
            applied = min(amount, fm.to_decimal(invoice["balance"]))
        payload["applications"] = [
            {"invno": str(invno).strip(), "amount": str(applied)}
        ]
    if values.get("gl_account"):
        payload["gl_account"] = str(values["gl_account"]).strip()
    return payload


# --- sending ----------------------------------------------------------------------------


def values_from_payload(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Typed values back from a stored payload (the inverse of `payload_from`)."""
    apps = payload.get("applications") or []
    values = {
        "custno": payload.get("custno"),
        "date": payload.get("date"),
        "amount": payload.get("amount"),
        "method": payload.get("method"),
        "reference": payload.get("reference"),
        "invno": apps[0].get("invno") if apps else None,
        "gl_account": payload.get("gl_account"),
    }
    out = {}
    for name, spec in SPECS.items():
        try:
            out[name] = fm.coerce(values[name], spec)
        except (fm.TransformError, TypeError):
            out[name] = values[name]
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
    value = values_from_payload(payload).get(name)
    return f" (field {name}: {fm.display_value(value)})"


# The problem summary of a document our own validation stopped (`Posting.not_sent`):
# nothing was sent, so it may be built again from the current rows.
NOT_SENT = "Not sent to Sage Pro: "


def needs_rebuild(posting: Posting) -> bool:
    return not posting.payload or posting.not_sent


def problem_summary(problems: list[fm.FieldProblem]) -> str:
    return NOT_SENT + "; ".join(p.describe() for p in problems)


def document_for_send(posting: Posting, gateway: Any) -> ReceiptDocument:
    """The document to send for `posting` now, validated against Sage Pro.

    While our own validation has stopped it (nothing reached Sage Pro: `not_sent`), the
    document is built again from the current rows (a fixed GL rule or a new rate takes
    effect);
    otherwise the stored payload is kept, so a retry after an unknown outcome sends the
    same body under the same idempotency key. Overrides are applied last either way.
    A rebuild keeps where the money was placed (on account, or split across invoices).
    """
    sage = SageFacts(gateway)
    txn = posting.transaction
    overrides = posting.overrides or {}
    if needs_rebuild(posting):
        stored = (posting.payload or {}).get("applications") or []
        if posting.payload and not stored:
            # On account: the customer it was placed on, not the invoice it names.
            account = {"invno": "", "custno": posting.payload.get("custno") or ""}
            return build_cash_receipt(
                txn,
                {**account, "balance": "0"},
                sage_conn=posting.sagepro,
                sage=sage,
                overrides=overrides,
                on_account=True,
            )
        invno = values_from_payload(posting.payload).get("invno") or (
            txn.invoice_reference.strip()
        )
        invoice = gateway.get_invoice(invno) if invno else None
        if invoice is not None:
            document = build_cash_receipt(
                txn, invoice, sage_conn=posting.sagepro, sage=sage, overrides=overrides
            )
            if len(stored) > 1:  # a reviewer's split (one currency, so no rate)
                document.payload["applications"] = stored
            return document
    values = values_from_payload(posting.payload)
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
    problems = refusals + fm.validate_fields(
        values,
        fm.CASH_RECEIPT_SPECS,
        fm.FieldCheck(
            periods=sage.periods_for(values.get("date")),
            chart=sage.chart() if values.get("gl_account") else None,
            rules=origin,
        ),
    )
    if not any(p.field == "amount" for p in problems):
        wrong = amount_problem(values, txn, posting.exchange_rate)
        problems += [wrong] if wrong else []
    # Only the correctable fields change; amount, customer and applications stay.
    payload = dict(posting.payload)
    corrected = payload_from(values, None)
    for name in _applicable(overrides):
        if corrected.get(name):
            payload[name] = corrected[name]
        elif name == "gl_account":
            payload.pop(name, None)  # blank: Sage Pro's default cash account
    return ReceiptDocument(
        payload=payload,
        values=values,
        gl_account=str(values.get("gl_account") or ""),
        gl_rule_id=posting.gl_rule_id,
        gl_trace=list(posting.gl_trace or []),
        exchange_rate=posting.exchange_rate,
        rate_on=posting.rate_on,
        problems=problems,
    )
