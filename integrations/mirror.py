"""The local mirror of each Sage Pro company's reference data, and its reader.

Matching, the review queue's candidates and the document checks ask Sage Pro about
invoices, customers, GL accounts and periods many times per payment. Across a WAN each
question costs tens of milliseconds, so the portal keeps a copy per Sage Pro
connection (`integrations.models.mirror`) and reads that instead:

- `sync(connection)` follows the gateway's change feeds (`GET /invoices?changed_since=`
  and the same for customers) from the stored cursors, page by page, upserting each
  page and saving the cursor with it, so a crash or restart resumes where it stopped.
  GL accounts and periods are small: every sync replaces them. `full=True` lists
  everything from the start and then removes the rows the listing no longer has (a
  full resync interrupted by a restart resumes as a full resync). `sync_all` is the
  schedule (every MIRROR_SYNC_MINUTES).
- `refresh_invoice`, `refresh_customer`, `refresh_gl_accounts`, `refresh_periods` read
  one thing from the gateway and store it; `apply_receipt` brings the mirrored
  invoices up to date from a posted receipt without asking the gateway.
- `MirrorReader` (`Connection.mirror()`) has the connector's read methods with the same
  answers: a mirrored row answers without a gateway call; an invoice or customer the
  mirror lacks is read from the gateway once and stored; GL accounts and periods are
  fetched once when never fetched; open-invoice lists come from the gateway until the
  mirror has had one full sync. `reader.gateway` is the connector itself, for callers
  that must ask the authority (posting, refusals).

The gateway stays the authority: Sage Pro applies at most an invoice's live balance and
refuses what its own rules refuse, whatever the mirror said.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

from django.conf import settings
from django.db import DatabaseError, models, transaction
from django.db.models import F
from django.utils import timezone

from integrations.connectors.base import NotFoundError
from integrations.connectors.sagepro import SageProConnector
from integrations.models import (
    Connection,
    InvalidAmountError,
    Lease,
    MirroredCustomer,
    MirroredGlAccount,
    MirroredInvoice,
    MirroredPeriod,
    MirrorState,
)
from integrations.models.failures import describe_failure
from mappings.payers import customer_emails, name_key
from mappings.references import reference_key

logger = logging.getLogger(__name__)

# Rows asked for per page of a change feed.
PAGE_SIZE = 500
ZERO = Decimal("0.00")

# Customer fields with a column of their own; the rest of the gateway's answer
# (contact, address, phone…) is kept in `MirroredCustomer.details`.
_CUSTOMER_COLUMNS = {
    "custno": "custno",
    "company": "name",
    "currency": "currency",
    "status": "status",
    "credit_status": "credit_status",
    "balance": "balance",
    "credit_limit": "credit_limit",
    "terms": "terms",
    "ar_account": "ar_account",
    "last_payment_date": "last_payment_date",
    "last_payment_amount": "last_payment_amount",
}
# The order of `GET /customers/{custno}`'s fields, which the reader answers in.
_CUSTOMER_ORDER = (
    "custno",
    "company",
    "company_id",
    "contact",
    "address1",
    "address2",
    "city",
    "state",
    "zip",
    "country",
    "phone",
    "email",
    "terms",
    "balance",
    "credit_limit",
    "currency",
    "credit_status",
    "status",
    "ar_account",
    "last_payment_date",
    "last_payment_amount",
)

_INVOICE_FIELDS = [
    "custno",
    "invamt",
    "paidamt",
    "balance",
    "invdte",
    "artype",
    "ornum",
    "ponum",
    "invno_key",
    "ornum_key",
    "ponum_key",
    "deleted",
    "synced_at",
]
_CUSTOMER_FIELDS = [
    "name",
    "currency",
    "status",
    "credit_status",
    "balance",
    "credit_limit",
    "terms",
    "ar_account",
    "last_payment_date",
    "last_payment_amount",
    "details",
    "name_key",
    "emails",
    "deleted",
    "synced_at",
]

Row = TypeVar("Row", bound=models.Model)
Progress = Callable[[str], None]


def mirror_key(value: object) -> str:
    """A key as the mirror stores it: trimmed and upper case, as the gateway answers
    (docs/sagepro-gateway.md §2: `" acme"` and `"ACME  "` are one customer)."""
    return str(value if value is not None else "").strip().upper()


@dataclass
class SyncResult:
    """What one sync of one connection's mirror did."""

    connection: str
    full: bool = False
    skipped: bool = False
    invoices: int = 0
    customers: int = 0
    deleted: int = 0
    removed: int = 0
    gl_accounts: int = 0
    periods: int = 0
    pages: int = 0
    rejected: list[str] = field(default_factory=list)
    elapsed: float = 0.0

    def describe(self) -> str:
        if self.skipped:
            return (
                f"{self.connection}: skipped (another sync of this mirror is running)"
            )
        kind = "full resync" if self.full else "sync"
        text = (
            f"{self.connection}: {kind} stored {self.invoices} invoice(s) and "
            f"{self.customers} customer(s) ({self.deleted} deleted in Sage Pro"
            + (f", {self.removed} no longer listed, removed" if self.full else "")
            + f"), {self.gl_accounts} GL account(s), {self.periods} period(s) "
            f"in {self.elapsed:.1f} s"
        )
        if self.rejected:
            text += f"; {len(self.rejected)} row(s) refused: " + "; ".join(
                self.rejected[:5]
            )
        return text + "."


# --- sync -----------------------------------------------------------------------------


def sync(
    connection: Connection,
    *,
    full: bool = False,
    progress: Progress | None = None,
    gateway: SageProConnector | None = None,
) -> SyncResult:
    """Bring the connection's mirror up to date from the gateway's change feeds.

    Incremental from the stored cursors (the first sync of a mirror lists everything,
    as a full one); `full=True` starts from the beginning and removes the rows the
    listing no longer has. The cursor is saved with each page. An error is recorded on
    the mirror's state and raised; what earlier pages stored stays. Returns a skipped
    result when another sync of the same mirror holds its lease.
    """
    if connection.kind != Connection.Kind.SAGEPRO:
        raise ValueError(f"{connection.slug} is not a Sage Pro connection")
    started = time.monotonic()
    result = SyncResult(connection.slug)
    lease_name = f"sagepro-mirror:{connection.pk}"
    holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"[:100]
    if not Lease.acquire(lease_name, holder, _lease_seconds()):
        result.skipped = True
        return result
    state: MirrorState | None = None
    try:
        state = MirrorState.for_connection(connection)
        gateway = gateway or connection.sage()
        result.full = _begin(state, full)
        result.gl_accounts = len(refresh_gl_accounts(connection, gateway=gateway))
        result.periods = len(refresh_periods(connection, gateway=gateway))
        _say(progress, f"{result.gl_accounts} GL accounts, {result.periods} periods")

        def renew() -> None:
            Lease.objects.filter(name=lease_name, holder=holder).update(
                expires_at=timezone.now() + timedelta(seconds=_lease_seconds())
            )

        _follow(state, "invoice", gateway, result, progress, renew)
        _follow(state, "customer", gateway, result, progress, renew)
        now = timezone.now()
        if state.full_started_at is not None:
            result.removed = _remove_unlisted(connection, state.full_started_at)
            state.full_synced_at = now
            state.full_started_at = None
        state.synced_at = now
        state.last_error = ""
        state.last_error_at = None
        state.save(
            update_fields=[
                "synced_at",
                "full_synced_at",
                "full_started_at",
                "last_error",
                "last_error_at",
            ]
        )
    except Exception as exc:
        if state is not None:
            MirrorState.objects.filter(pk=state.pk).update(
                last_error=describe_failure(exc)[:2000], last_error_at=timezone.now()
            )
        raise
    finally:
        Lease.release(lease_name, holder)
        result.elapsed = time.monotonic() - started
    return result


def sync_all() -> dict[str, str]:
    """Sync every active Sage Pro connection's mirror (the schedule); one failing
    connection does not stop the others. Returns each connection's outcome."""
    outcomes: dict[str, str] = {}
    for connection in Connection.objects.filter(
        kind=Connection.Kind.SAGEPRO, is_active=True
    ):
        try:
            outcomes[connection.slug] = sync(connection).describe()
        except Exception as exc:
            logger.warning(
                "the Sage Pro mirror of %s could not sync: %s",
                connection.slug,
                describe_failure(exc),
            )
            outcomes[connection.slug] = f"failed: {describe_failure(exc)}"
    return outcomes


def sync_connection(connection_id: int, full: bool = False) -> str:
    """One connection's sync, as a queued task (the admin's actions)."""
    connection = Connection.objects.get(pk=connection_id)
    return sync(connection, full=full).describe()


def _lease_seconds() -> int:
    return max(int(settings.WORK_LEASE_SECONDS), 60)


def _say(progress: Progress | None, text: str) -> None:
    if progress is not None:
        progress(text)


def _begin(state: MirrorState, full: bool) -> bool:
    """Start a full resync when asked, or for a mirror that never synced; say
    whether this sync is (or resumes) a full one."""
    never = (
        state.full_synced_at is None
        and state.full_started_at is None
        and not state.invoice_cursor
        and not state.customer_cursor
    )
    if full or never:
        state.full_started_at = timezone.now()
        state.invoice_cursor = ""
        state.customer_cursor = ""
        state.save(
            update_fields=["full_started_at", "invoice_cursor", "customer_cursor"]
        )
    return state.full_started_at is not None


def _follow(
    state: MirrorState,
    kind: str,
    gateway: SageProConnector,
    result: SyncResult,
    progress: Progress | None,
    renew: Callable[[], None],
) -> None:
    """Read one change feed to its end, storing each page with its cursor."""
    cursor_field = f"{kind}_cursor"
    read = (
        gateway.list_invoice_changes
        if kind == "invoice"
        else gateway.list_customer_changes
    )
    connection = state.connection
    page_number = 0
    while True:
        cursor = getattr(state, cursor_field) or None
        fetched_at = timezone.now()
        page = read(cursor, limit=PAGE_SIZE)
        page_number += 1
        with transaction.atomic():
            stored, deleted, refused = _store_page(
                kind, connection, page.results, fetched_at
            )
            if page.next_cursor:
                setattr(state, cursor_field, str(page.next_cursor))
                MirrorState.objects.filter(pk=state.pk).update(
                    **{cursor_field: str(page.next_cursor)}
                )
        if kind == "invoice":
            result.invoices += stored
        else:
            result.customers += stored
        result.deleted += deleted
        result.rejected += refused
        result.pages += 1
        renew()
        _say(
            progress,
            f"{kind}s page {page_number}: {len(page.results)} change(s), "
            f"{stored} stored",
        )
        if not page.has_more or not page.next_cursor or page.next_cursor == cursor:
            return


def _store_page(
    kind: str,
    connection: Connection,
    items: list[dict[str, Any]],
    fetched_at: datetime,
) -> tuple[int, int, list[str]]:
    """Upsert one page of a feed: (rows written, rows deleted in Sage Pro, refusals)."""
    if kind == "invoice":
        invoices, refused = _invoice_rows(connection, items, fetched_at)
        known = set(
            MirroredInvoice.objects.filter(
                connection=connection,
                deleted=False,
                invno__in=[row.invno for row in invoices],
            ).values_list("invno", flat=True)
        )
        stored = _upsert(MirroredInvoice, "invno", _INVOICE_FIELDS, invoices)
        new = [row for row in invoices if row.invno not in known and not row.deleted]
        if new:
            # Cash waiting for these customers may now have an invoice (after commit,
            # on a task: never inside this transaction).
            from integrations.unapplied import after_new_invoices

            after_new_invoices(connection, new)
        return stored, sum(1 for row in invoices if row.deleted), refused
    customers, refused = _customer_rows(connection, items, fetched_at)
    stored = _upsert(MirroredCustomer, "custno", _CUSTOMER_FIELDS, customers)
    return stored, sum(1 for row in customers if row.deleted), refused


def _remove_unlisted(connection: Connection, since: datetime) -> int:
    """After a full listing: remove the invoices and customers it did not have."""
    removed = 0
    for model in (MirroredInvoice, MirroredCustomer):
        count, _ = model.objects.filter(
            connection=connection, synced_at__lt=since
        ).delete()
        removed += count
    return removed


# --- rows -----------------------------------------------------------------------------


def _money(value: Any, name: str) -> Decimal:
    if value is None or value == "":
        return ZERO
    try:
        amount = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as exc:
        raise InvalidAmountError(f"{name} is not a number") from exc
    return amount


def _date(value: Any) -> date | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    return date.fromisoformat(str(value))


def _text(value: Any) -> str:
    return str(value if value is not None else "").strip()


def _checked(row: Row) -> Row:
    """Refuse a row its columns cannot hold (an amount out of range, text too long)."""
    check = getattr(row, "check_storable", None)
    if check is not None:
        check()
    for column in row._meta.concrete_fields:
        if isinstance(column, models.CharField) and column.max_length:
            value = getattr(row, column.attname)
            if isinstance(value, str) and len(value) > column.max_length:
                raise ValueError(
                    f"{column.name} is {len(value)} characters, the mirror keeps "
                    f"at most {column.max_length}"
                )
    return row


def _invoice_row(
    connection: Connection, data: dict[str, Any], fetched_at: datetime
) -> MirroredInvoice:
    invno = mirror_key(data.get("invno"))
    if not invno:
        raise ValueError("the invoice has no invno")
    return _checked(
        MirroredInvoice(
            connection=connection,
            invno=invno,
            custno=mirror_key(data.get("custno")),
            invamt=_money(data.get("invamt"), "invamt"),
            paidamt=_money(data.get("paidamt"), "paidamt"),
            balance=_money(data.get("balance"), "balance"),
            invdte=_date(data.get("invdte")),
            artype=_text(data.get("artype")).upper(),
            ornum=_text(data.get("ornum")),
            ponum=_text(data.get("ponum")),
            invno_key=reference_key(invno)[:40],
            ornum_key=reference_key(data.get("ornum"))[:40],
            ponum_key=reference_key(data.get("ponum"))[:40],
            deleted=bool(data.get("deleted")),
            synced_at=fetched_at,
        )
    )


def _customer_row(
    connection: Connection, data: dict[str, Any], fetched_at: datetime
) -> MirroredCustomer:
    custno = mirror_key(data.get("custno"))
    if not custno:
        raise ValueError("the customer has no custno")
    details = {
        name: (None if value is None else str(value))
        for name, value in data.items()
        if name not in _CUSTOMER_COLUMNS and name != "deleted"
    }
    return _checked(
        MirroredCustomer(
            connection=connection,
            custno=custno,
            name=_text(data.get("company")),
            currency=_text(data.get("currency")).upper(),
            status=_text(data.get("status")),
            credit_status=_text(data.get("credit_status")),
            balance=_money(data.get("balance"), "balance"),
            credit_limit=_money(data.get("credit_limit"), "credit_limit"),
            terms=_text(data.get("terms")),
            ar_account=_text(data.get("ar_account")),
            last_payment_date=_date(data.get("last_payment_date")),
            last_payment_amount=_money(
                data.get("last_payment_amount"), "last_payment_amount"
            ),
            details=details,
            name_key=name_key(data.get("company")),
            emails=customer_emails(data.get("email")),
            deleted=bool(data.get("deleted")),
            synced_at=fetched_at,
        )
    )


def _rows(
    build: Callable[[Connection, dict[str, Any], datetime], Row],
    what: str,
    key: str,
    connection: Connection,
    items: Iterable[dict[str, Any]],
    fetched_at: datetime,
) -> tuple[list[Row], list[str]]:
    """Rows for the items that can be stored, and why the others cannot."""
    rows: list[Row] = []
    refused: list[str] = []
    for item in items:
        try:
            rows.append(build(connection, item, fetched_at))
        except (ValueError, TypeError, ArithmeticError) as exc:
            name = mirror_key(item.get(key)) if isinstance(item, dict) else "?"
            refused.append(f"{what} {name or '?'}: {describe_failure(exc)}")
    for reason in refused:
        logger.warning("Sage Pro mirror of %s: %s", connection.slug, reason)
    return rows, refused


def _invoice_rows(
    connection: Connection, items: Iterable[dict[str, Any]], fetched_at: datetime
) -> tuple[list[MirroredInvoice], list[str]]:
    return _rows(_invoice_row, "invoice", "invno", connection, items, fetched_at)


def _customer_rows(
    connection: Connection, items: Iterable[dict[str, Any]], fetched_at: datetime
) -> tuple[list[MirroredCustomer], list[str]]:
    return _rows(_customer_row, "customer", "custno", connection, items, fetched_at)


def _upsert(model: type[Row], key: str, fields: list[str], rows: list[Row]) -> int:
    """Insert or update rows by (connection, key) in one statement. A row the mirror
    already holds from a later gateway read is left as it is. Returns rows written."""
    if not rows:
        return 0
    by_key = {getattr(row, key): row for row in rows}  # the last of a key wins
    connection_id = rows[0].connection_id  # type: ignore[attr-defined]
    fetched_at = min(row.synced_at for row in rows)  # type: ignore[attr-defined]
    with transaction.atomic():
        newer = set(
            model._default_manager.filter(
                connection_id=connection_id,
                synced_at__gt=fetched_at,
                **{f"{key}__in": list(by_key)},
            ).values_list(key, flat=True)
        )
        todo = [row for name, row in by_key.items() if name not in newer]
        model._default_manager.bulk_create(
            todo,
            update_conflicts=True,
            unique_fields=["connection", key],
            update_fields=fields,
        )
    return len(todo)


def _store_invoices(
    connection: Connection, invoices: Iterable[dict[str, Any]], fetched_at: datetime
) -> None:
    """Keep what a gateway read answered; a row that cannot be stored is only logged
    (the caller still gets the gateway's answer)."""
    rows, _ = _invoice_rows(connection, invoices, fetched_at)
    _store(connection, MirroredInvoice, "invno", _INVOICE_FIELDS, rows)


def _store(
    connection: Connection,
    model: type[Row],
    key: str,
    fields: list[str],
    rows: list[Row],
) -> None:
    try:
        _upsert(model, key, fields, rows)
    except DatabaseError as exc:
        logger.warning(
            "Sage Pro mirror of %s: could not store what the gateway answered: %s",
            connection.slug,
            describe_failure(exc),
        )


def _replace(
    connection: Connection,
    model: type[Row],
    key: str,
    fields: list[str],
    rows: list[Row],
) -> None:
    """Make the connection's rows of `model` exactly `rows`."""
    by_key = {getattr(row, key): row for row in rows}
    with transaction.atomic():
        model._default_manager.filter(connection=connection).exclude(
            **{f"{key}__in": list(by_key)}
        ).delete()
        model._default_manager.bulk_create(
            list(by_key.values()),
            update_conflicts=True,
            unique_fields=["connection", key],
            update_fields=fields,
        )


# --- point refreshes ----------------------------------------------------------------


def refresh_invoice(
    connection: Connection, invno: str, *, gateway: SageProConnector | None = None
) -> dict[str, Any] | None:
    """Read one invoice from the gateway and store it; None (and the mirrored row
    marked deleted) when Sage Pro has no such live invoice."""
    gateway = gateway or connection.sage()
    fetched_at = timezone.now()
    invoice = gateway.get_invoice(invno)
    if invoice is None:
        key = mirror_key(invno)
        if key:
            MirroredInvoice.objects.filter(
                connection=connection, invno=key, synced_at__lte=fetched_at
            ).update(deleted=True, synced_at=fetched_at)
        return None
    _store_invoices(connection, [invoice], fetched_at)
    return invoice


def refresh_open_invoices(
    connection: Connection, custno: str, *, gateway: SageProConnector | None = None
) -> list[dict[str, Any]]:
    """Read one customer's open invoices from the gateway and store them."""
    gateway = gateway or connection.sage()
    fetched_at = timezone.now()
    invoices = gateway.list_open_invoices(custno)
    _store_invoices(connection, invoices, fetched_at)
    return invoices


def refresh_customer(
    connection: Connection, custno: str, *, gateway: SageProConnector | None = None
) -> dict[str, Any]:
    """Read one customer from the gateway and store it. Raises NotFoundError as the
    connector does (and marks the mirrored row deleted)."""
    gateway = gateway or connection.sage()
    fetched_at = timezone.now()
    try:
        customer = gateway.get_customer(custno)
    except NotFoundError as exc:
        key = mirror_key(custno)
        if exc.code == "CUSTOMER_NOT_FOUND" and key:
            MirroredCustomer.objects.filter(
                connection=connection, custno=key, synced_at__lte=fetched_at
            ).update(deleted=True, synced_at=fetched_at)
        raise
    rows, _ = _customer_rows(connection, [customer], fetched_at)
    _store(connection, MirroredCustomer, "custno", _CUSTOMER_FIELDS, rows)
    return customer


def refresh_gl_accounts(
    connection: Connection, *, gateway: SageProConnector | None = None
) -> list[dict[str, Any]]:
    """Read the chart of accounts from the gateway and replace the mirrored one."""
    gateway = gateway or connection.sage()
    accounts = gateway.list_gl_accounts()
    rows = []
    for account in accounts:
        glacnt = mirror_key(account.get("glacnt"))
        if not glacnt or len(glacnt) > 24:
            logger.warning(
                "Sage Pro mirror of %s: GL account %r not kept (1 to 24 characters)",
                connection.slug,
                glacnt[:40],
            )
            continue
        rows.append(
            MirroredGlAccount(
                connection=connection,
                glacnt=glacnt,
                gldesc=_text(account.get("gldesc"))[:100],
                glstat=_text(account.get("glstat"))[:10],
                active=bool(account.get("active", True)),
            )
        )
    _replace(
        connection, MirroredGlAccount, "glacnt", ["gldesc", "glstat", "active"], rows
    )
    _state_fetched(connection, "gl_accounts_fetched_at")
    return accounts


def refresh_periods(
    connection: Connection, *, gateway: SageProConnector | None = None
) -> list[dict[str, Any]]:
    """Read the fiscal periods from the gateway and replace the mirrored ones."""
    gateway = gateway or connection.sage()
    periods = gateway.list_periods()
    rows = []
    for period in periods:
        yearprd = _text(period.get("yearprd"))
        try:
            bdate, edate = _date(period.get("bdate")), _date(period.get("edate"))
        except ValueError:
            bdate = edate = None
        if not yearprd or len(yearprd) > 10 or bdate is None or edate is None:
            logger.warning(
                "Sage Pro mirror of %s: period %r not kept (no dates)",
                connection.slug,
                yearprd[:20],
            )
            continue
        rows.append(
            MirroredPeriod(
                connection=connection,
                yearprd=yearprd,
                bdate=bdate,
                edate=edate,
                pclosed=bool(period.get("pclosed")),
                plocked=bool(period.get("plocked")),
                permlck=bool(period.get("permlck")),
                current=bool(period.get("current")),
            )
        )
    _replace(
        connection,
        MirroredPeriod,
        "yearprd",
        ["bdate", "edate", "pclosed", "plocked", "permlck", "current"],
        rows,
    )
    _state_fetched(connection, "periods_fetched_at")
    return periods


def _state_fetched(connection: Connection, column: str) -> None:
    state = MirrorState.for_connection(connection)
    MirrorState.objects.filter(pk=state.pk).update(**{column: timezone.now()})


# --- after a posting ------------------------------------------------------------------


def apply_receipt(
    connection: Connection, receipt: dict[str, Any], *, sent_at: datetime | None = None
) -> int:
    """Bring the mirrored invoices and customer up to date from a posted receipt, as
    Sage Pro applied it (`applications[].amount`), without asking the gateway.

    Only rows read from the gateway no later than the receipt was written change: a
    row a sync read afterwards already includes it (and a replayed or recovered
    receipt, whose first answer never reached the mirror, is applied like a new one).
    `sent_at` is when the receipt was sent (the portal's clock, the safer choice);
    by default the receipt's `created_at`. Returns the number of mirrored invoices
    updated (invoices the mirror does not hold are read when needed).
    """
    written = sent_at or _moment(receipt.get("created_at")) or timezone.now()
    total = ZERO
    updated = 0
    with transaction.atomic(savepoint=False):  # a batch keeps one per posting
        for line in receipt.get("applications") or []:
            amount = _money(line.get("amount"), "amount")
            key = mirror_key(line.get("invno"))
            if not key or not amount:
                continue
            total += amount
            updated += MirroredInvoice.objects.filter(
                connection=connection, invno=key, synced_at__lte=written
            ).update(paidamt=F("paidamt") + amount, balance=F("balance") - amount)
        custno = mirror_key(receipt.get("custno"))
        if custno:
            changes: dict[str, Any] = {"balance": F("balance") - total}
            paid_on = _date_or_none(receipt.get("date"))
            if paid_on is not None:
                changes["last_payment_date"] = paid_on
                changes["last_payment_amount"] = _money(receipt.get("amount"), "amount")
            MirroredCustomer.objects.filter(
                connection=connection, custno=custno, synced_at__lte=written
            ).update(**changes)
    return updated


def _moment(value: Any) -> datetime | None:
    if isinstance(value, datetime):
        return value
    if isinstance(value, str) and value:
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            return None
    return None


def _date_or_none(value: Any) -> date | None:
    try:
        return _date(value)
    except ValueError:
        return None


# --- the reader -----------------------------------------------------------------------


def invoice_answer(row: MirroredInvoice) -> dict[str, Any]:
    """A mirrored invoice as `SageProConnector.get_invoice` answers it."""
    return {
        "invno": row.invno,
        "custno": row.custno,
        "invamt": row.invamt,
        "paidamt": row.paidamt,
        "balance": row.balance,
        "invdte": row.invdte,
        "artype": row.artype,
        "status": "open" if row.balance != 0 else "closed",
        "ornum": row.ornum,
        "ponum": row.ponum,
    }


def customer_answer(row: MirroredCustomer) -> dict[str, Any]:
    """A mirrored customer as `SageProConnector.get_customer` answers it."""
    values: dict[str, Any] = dict(row.details or {})
    values.update(
        {name: getattr(row, column) for name, column in _CUSTOMER_COLUMNS.items()}
    )
    ordered = {name: values.pop(name, "") for name in _CUSTOMER_ORDER}
    return {**ordered, **values}


def _invno_order(row: MirroredInvoice) -> tuple[int, str]:
    """Sage Pro's order of right-justified invoice numbers (shorter ones first)."""
    return (len(row.invno), row.invno)


class MirrorReader:
    """The connector's read interface, answered from the connection's mirror.

    Same methods, same answers (Decimal money, `date` dates, trimmed keys) as
    `SageProConnector`; see the module docstring for when the gateway is asked.
    `fresh` says whether the last answer came from the gateway itself.
    """

    def __init__(
        self, connection: Connection, gateway: SageProConnector | None = None
    ) -> None:
        self.connection = connection
        self._gateway = gateway
        # Whether the last answer came from the gateway itself (not the mirror).
        self.fresh = False

    def __repr__(self) -> str:
        return f"MirrorReader({self.connection.slug!r})"

    @property
    def gateway(self) -> SageProConnector:
        """The Sage Pro connector itself: the authority."""
        if self._gateway is None:
            self._gateway = self.connection.sage()
        return self._gateway

    def _state(self) -> MirrorState | None:
        return MirrorState.objects.filter(connection=self.connection).first()

    def get_invoice(self, invno: str) -> dict[str, Any] | None:
        key = mirror_key(invno)
        row = (
            MirroredInvoice.objects.filter(
                connection=self.connection, invno=key
            ).first()
            if key
            else None
        )
        self.fresh = row is None
        if row is not None:
            return None if row.deleted else invoice_answer(row)
        return refresh_invoice(self.connection, invno, gateway=self.gateway)

    def get_customer(self, custno: str) -> dict[str, Any]:
        key = mirror_key(custno)
        row = (
            MirroredCustomer.objects.filter(
                connection=self.connection, custno=key
            ).first()
            if key
            else None
        )
        self.fresh = row is None
        if row is None:
            return refresh_customer(self.connection, custno, gateway=self.gateway)
        if row.deleted:
            raise NotFoundError(
                f"{SageProConnector.system} has no customer {key}",
                code="CUSTOMER_NOT_FOUND",
            )
        return customer_answer(row)

    def list_open_invoices(self, custno: str) -> list[dict[str, Any]]:
        """Open invoices and credit memos (balance ≠ 0) of one customer, or of every
        customer when `custno` is blank, as the gateway lists them."""
        key = mirror_key(custno)
        state = self._state()
        if state is not None and state.full_synced_at is not None:
            live = MirroredInvoice.objects.filter(
                connection=self.connection, deleted=False
            ).exclude(balance=0)
            known = (
                not key
                or MirroredCustomer.objects.filter(
                    connection=self.connection, custno=key, deleted=False
                ).exists()
            )
            if known:
                self.fresh = False
                rows = live.filter(custno=key) if key else live
                return [invoice_answer(row) for row in sorted(rows, key=_invno_order)]
        self.fresh = True
        return refresh_open_invoices(self.connection, custno, gateway=self.gateway)

    def list_gl_accounts(self) -> list[dict[str, Any]]:
        state = self._state()
        self.fresh = state is None or state.gl_accounts_fetched_at is None
        if self.fresh:
            return refresh_gl_accounts(self.connection, gateway=self.gateway)
        rows: Any = MirroredGlAccount.objects.filter(connection=self.connection)
        return list(rows.values("glacnt", "gldesc", "glstat", "active"))

    def list_periods(self) -> list[dict[str, Any]]:
        state = self._state()
        self.fresh = state is None or state.periods_fetched_at is None
        if self.fresh:
            return refresh_periods(self.connection, gateway=self.gateway)
        rows: Any = MirroredPeriod.objects.filter(connection=self.connection)
        return list(
            rows.values(
                "yearprd", "bdate", "edate", "pclosed", "plocked", "permlck", "current"
            )
        )

    def refresh_gl_accounts(self) -> list[dict[str, Any]]:
        """The chart read from the gateway now (and stored)."""
        self.fresh = True
        return refresh_gl_accounts(self.connection, gateway=self.gateway)

    def refresh_periods(self) -> list[dict[str, Any]]:
        """The periods read from the gateway now (and stored)."""
        self.fresh = True
        return refresh_periods(self.connection, gateway=self.gateway)
