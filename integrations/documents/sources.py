"""What a cash receipt is built from: the connection's rules, rates and Sage Pro's facts.

Loaders only: they read the database (and, through `SageFacts` and `find_invoice`,
the mirror of Sage Pro, which asks Sage Pro for what it lacks) and write nothing but
what the mirror stores.
"""

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from integrations.batchcache import cached
from integrations.connectors.base import ConnectorError
from integrations.connectors.paytrace import normalize_record
from integrations.models import Connection, Event, PaymentTransaction
from integrations.redaction import redact_data
from mappings import currency as fx
from mappings import fields as fm
from mappings import gl
from mappings.models import CurrencyRate, FieldMapping, GlRule, StatusMap
from mappings.status import StatusFacts, StatusRule, map_status

# Refusals that rest on Sage Pro's periods or chart: worth one fresh read before a
# document is stopped, since the mirror may be behind Sage Pro.
PERIOD_CODES = frozenset(
    {"PERIOD_LOCKED", "PERIOD_CLOSED", "PERIOD_NOT_DEFINED", "FUTURE_PERIOD"}
)
ACCOUNT_CODES = frozenset({"ACCOUNT_NOT_FOUND", "ACCOUNT_INACTIVE"})


class SageFacts:
    """Sage Pro's periods and chart of accounts, each read at most once per build.

    `reader` is what answers: a `MirrorReader` (`Connection.mirror()`, the local
    mirror) or the `SageProConnector` itself. Connector errors propagate: a transient
    one makes the caller retry later. When a check refuses a document on the mirror's
    periods or chart, `confirm` reads them fresh from the gateway once, so stale copies
    never stop a document by themselves.
    """

    def __init__(self, reader: Any) -> None:
        self.reader = reader
        self._periods: list[fm.Period] | None = None
        self._chart: dict[str, bool] | None = None
        self._fresh: set[str] = set()

    def periods(self) -> list[fm.Period]:
        if self._periods is None:
            self._periods = periods_from(self.reader.list_periods())
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
            self._chart = gl.chart_from(self.reader.list_gl_accounts())
        return self._chart

    def confirm(self, problems: list[fm.FieldProblem]) -> bool:
        """Re-read from the gateway the periods or chart that `problems` rest on, when
        they came from the mirror and were not re-read yet. True when something was
        re-read: validate again."""
        codes = {p.code for p in problems}
        again = False
        if (
            codes & PERIOD_CODES
            and self._periods is not None
            and "periods" not in self._fresh
            and hasattr(self.reader, "refresh_periods")
        ):
            self._periods = periods_from(self.reader.refresh_periods())
            self._fresh.add("periods")
            again = True
        if (
            codes & ACCOUNT_CODES
            and self._chart is not None
            and "chart" not in self._fresh
            and hasattr(self.reader, "refresh_gl_accounts")
        ):
            self._chart = gl.chart_from(self.reader.refresh_gl_accounts())
            self._fresh.add("chart")
            again = True
        return again


def periods_from(periods: list[dict[str, Any]]) -> list[fm.Period]:
    return [
        fm.Period(
            yearprd=str(p["yearprd"]),
            bdate=p["bdate"],
            edate=p["edate"],
            pclosed=bool(p.get("pclosed")),
            plocked=bool(p.get("plocked")),
            permlck=bool(p.get("permlck")),
            current=bool(p.get("current")),
        )
        for p in periods
    ]


def load_gl_rules(connection: Connection) -> list[gl.GlRuleData]:
    return cached(("gl_rules", connection.pk), lambda: GlRule.rules_for(connection))


def load_field_mappings(
    connection: Connection, document: str = FieldMapping.Document.CASH_RECEIPT
) -> list[FieldMapping]:
    return cached(
        ("field_mappings", connection.pk, document),
        lambda: list(
            FieldMapping.objects.filter(
                connection=connection, document=document, is_active=True
            )
        ),
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


def find_invoice(
    sage_conn: Connection | None, invno: str
) -> tuple[dict[str, Any] | None, str]:
    """Look an invoice up in the mirror for a preview (Sage Pro is asked when the
    mirror does not have it); never raises (returns a note instead)."""
    if sage_conn is None or not invno.strip():
        return None, ""
    try:
        return sage_conn.mirror().get_invoice(invno.strip()), ""
    except ConnectorError as exc:
        return None, f"Sage Pro could not be asked about invoice {invno}: {exc}"


def source_for(
    txn: PaymentTransaction, invoice: Mapping[str, Any] | None
) -> dict[str, Any]:
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
