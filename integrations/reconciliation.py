"""Reconcile PayTrace against Sage Pro over a date range: one bucket per payment.

Which transactions: those of one PayTrace connection created on `date_from`..`date_to`
(both inclusive) in settings.BUSINESS_TIME_ZONE, by PayTrace's created time (the time
the portal first saw it when PayTrace gave none) — the same day rule that dates the
receipt (`PaymentTransaction.posting_date`).

Buckets. The rules are tried in this order and the first that matches wins, so every
transaction lands in exactly one bucket:

1. Its status calls for no receipt (mapped status other than Paid, or a type other than
   SALE/CAPTURE: declines, voids, uncaptured authorizations, refunds):
   `in_review` if Sage Pro still has a live receipt for it (voided or refunded after
   its receipt posted: someone has to reverse the receipt), else `no_receipt_needed`.
2. Its cash-receipt posting is posted: `posted` when Sage Pro has a live receipt with
   the transaction id as reference, `missing_in_sage` when it has none (deleted in
   Sage Pro, or never written). A receipt for another amount than PayTrace collected
   (same currency) is never `posted`: it is `in_review`, to be corrected in Sage Pro.
3. Its posting is dead: `dead`.
4. It has an open review item, or its posting waits for review: `in_review`.
5. Anything else — no posting yet, queued, being sent, failed and retrying: `pending`.

Orphans: Sage Pro receipts dated in the range whose reference looks like a PayTrace
transaction id (all digits) that no transaction of any PayTrace connection posting to
this Sage Pro company carries. Each is one `orphan_receipt` line.

Tie-out: the settlement batches in play are the connection's `SettlementBatch` rows
settled in the range plus any batch a transaction in the range names. For each,
PayTrace's figures (net amount, transaction count) are compared with the sum of the
portal's transactions carrying that batch number (refunds negative). `batch_totals`
keeps expected vs actual per batch; `ties_out` is true when every known batch agrees,
false when one does not, and null when no batch data is known yet.

Headline: the PayTrace total (what the range's payments that need a receipt collected),
the Sage Pro total (the live receipts dated in the range that belong to those payments,
plus receipts without a PayTrace transaction) and the difference, split into what
explains it (`EXPLANATIONS`: in review, pending, dead letters, missing in Sage Pro,
timing, amount differences, receipts to reverse, orphan receipts). Each payment adds
its amount less its listed receipt to exactly one explanation, so the explanations sum
to the difference by construction; `other` holds anything they do not (e.g. a receipt
in another currency). Unapplied cash on the receipts and payments settled but not yet
posted are shown for information: they are inside the totals, not differences.

Issue 14 adds buckets for the other money movements, tried before the rules above:

0. A REFUND transaction (not declined or voided) is filed by its credit-memo posting:
   `refund_posted` (the credit memo is in Sage Pro), `refund_waiting` (its sale is not
   known yet), `refund_in_review` (refused, dead, or an open review item),
   `refund_pending` (anything else). A sale whose receipt a `receipt_reversal`
   posting reversed is `receipt_reversed`. A payment with a chargeback whose receipt
   is posted and live is `chargeback` (the detail names the case, its state and
   amount); with any other receipt state the usual bucket wins and its detail names
   the chargeback.

Receipts Sage Pro lists as reversed are not live: they count in no total. The
headline's `net` block ties PayTrace's net (sales − refunds) to Sage Pro's (receipts −
credit memos; reversed receipts are already out), and lists the refunds without a
posted credit memo, which explain the net difference beyond `difference`.
`chargebacks` counts the range's chargeback state changes (opened, won, lost) and
their amounts: money the processor took back or returned, booked by GL batches, not
receipts, so never a difference.

Scale: Sage Pro's receipts for the range are read in one paginated listing, the
transactions in one query with their posting state and open review joined in SQL, each
row is classified with dict lookups, and lines are bulk-created in batches, so the time
grows linearly with the number of transactions. Only posted transactions whose receipt
is not in the listing are looked up one by one (at most `MAX_POINT_LOOKUPS`), to find a
receipt dated outside the range.
"""

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db.models import (
    Count,
    FilteredRelation,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from integrations.models import (
    Connection,
    GatewayStatus,
    PaymentTransaction,
    Posting,
    ReconciliationLine,
    ReconciliationRun,
    ReviewItem,
    SettlementBatch,
    saved_user,
)
from integrations.models.chargebacks import Chargeback, ChargebackEvent
from integrations.models.payments import is_receipt_wanted

logger = logging.getLogger(__name__)

Bucket = ReconciliationLine.Bucket
ZERO = Decimal("0.00")
BATCH_SIZE = 2000
PROGRESS_EVERY = 10_000
MAX_POINT_LOOKUPS = 50
MAX_IDS_LISTED = 20
PAYTRACE_ID = re.compile(r"^\d{1,20}$")
TIMING_DETAIL = "outside the range."

# Issue 14's buckets: listed on a run's page only when they hold something.
EXTRA_BUCKETS = {
    str(b): str(b.label)
    for b in (
        Bucket.CHARGEBACK,
        Bucket.REFUND_POSTED,
        Bucket.REFUND_PENDING,
        Bucket.REFUND_IN_REVIEW,
        Bucket.REFUND_WAITING,
        Bucket.RECEIPT_REVERSED,
    )
}
BUCKET_LABELS: dict[str, str] = {
    str(value): str(label) for value, label in Bucket.choices
}
CHARGEBACK = str(Bucket.CHARGEBACK)
REFUND_BUCKETS = (
    str(Bucket.REFUND_POSTED),
    str(Bucket.REFUND_PENDING),
    str(Bucket.REFUND_IN_REVIEW),
    str(Bucket.REFUND_WAITING),
)
REVERSED = str(Bucket.RECEIPT_REVERSED)
# Buckets that need nobody's attention.
SETTLED = (
    str(Bucket.POSTED),
    str(Bucket.NOT_NEEDED),
    CHARGEBACK,
    str(Bucket.REFUND_POSTED),
    REVERSED,
)
WRONG_AMOUNT_DETAIL = "correct the receipt in Sage Pro."
REVERSE_DETAIL = "is live: reverse it."

# What can explain a difference between the PayTrace and Sage Pro totals, in the order
# the report lists them: key -> label.
EXPLANATIONS = {
    "in_review": "Waiting in review",
    "pending": "Pending (not posted yet)",
    "dead": "Dead letters (posting gave up)",
    "missing": "Posted, but missing in Sage Pro",
    "timing": "Timing: receipt dated outside the period",
    "amount_differences": "Receipt for another amount",
    "reverse": "Receipts to reverse (payment voided or refunded)",
    "orphans": "Sage Pro receipts without a PayTrace transaction",
}

Progress = Callable[[str], None]


class ReconciliationError(Exception):
    """The reconciliation could not run (the message says what to fix)."""


def business_zone() -> ZoneInfo:
    return ZoneInfo(settings.BUSINESS_TIME_ZONE)


def business_today() -> date:
    return timezone.now().astimezone(business_zone()).date()


def day_bounds(date_from: date, date_to: date) -> tuple[datetime, datetime]:
    """The UTC instants where business day `date_from` starts and `date_to` ends."""
    zone = business_zone()
    start = datetime.combine(date_from, time.min, tzinfo=zone)
    end = datetime.combine(date_to + timedelta(days=1), time.min, tzinfo=zone)
    return start, end


def bucket_for(
    *,
    needs_receipt: bool,
    posting_state: str | None,
    has_open_review: bool,
    receipt_live: bool,
) -> str:
    """Pick the one bucket for a transaction (the rules in the module docstring)."""
    if not needs_receipt:
        return Bucket.IN_REVIEW if receipt_live else Bucket.NOT_NEEDED
    if posting_state == Posting.State.POSTED:
        return Bucket.POSTED if receipt_live else Bucket.MISSING
    if posting_state == Posting.State.DEAD:
        return Bucket.DEAD
    if has_open_review or posting_state == Posting.State.NEEDS_REVIEW:
        return Bucket.IN_REVIEW
    return Bucket.PENDING


# --- the run ---------------------------------------------------------------------------


def reconcile(
    connection: Connection,
    date_from: date,
    date_to: date,
    *,
    user: AbstractBaseUser | None = None,
    progress: Progress | None = None,
) -> ReconciliationRun:
    """Reconcile one PayTrace connection over a date range and store the run.

    The run row is written first (state running) and its lines in batches; a failure
    marks the run failed, removes its partial lines and raises again.
    """
    run = create_run(connection, date_from, date_to, user=user)
    return execute_run(run, progress=progress)


def create_run(
    connection: Connection,
    date_from: date,
    date_to: date,
    *,
    user: AbstractBaseUser | None = None,
    progress: str = "",
) -> ReconciliationRun:
    """The run row (state running), before any line is classified."""
    if date_to < date_from:
        raise ReconciliationError(
            f"The range ends ({date_to}) before it starts ({date_from})."
        )
    return ReconciliationRun.objects.create(
        connection=connection,
        date_from=date_from,
        date_to=date_to,
        created_by=saved_user(user),
        progress=progress,
    )


def execute_run(
    run: ReconciliationRun, *, progress: Progress | None = None
) -> ReconciliationRun:
    """Classify a created run's transactions and store its lines and totals."""
    try:
        _Reconciliation(run, progress or _quiet).execute()
    except Exception as exc:
        run.lines.all().delete()
        run.state = ReconciliationRun.State.FAILED
        run.error = f"{type(exc).__name__}: {exc}"[:2000]
        run.finished_at = timezone.now()
        run.save(update_fields=["state", "error", "finished_at"])
        raise
    return run


def reconcile_yesterday() -> str:
    """The nightly run: yesterday (business time zone) for every active PayTrace
    connection. One connection's failure does not stop the others; it raises at the
    end so the scheduler records the failure."""
    yesterday = business_today() - timedelta(days=1)
    done, failed = [], []
    connections = Connection.objects.filter(
        kind=Connection.Kind.PAYTRACE, is_active=True
    )
    for connection in connections:
        try:
            run = reconcile(connection, yesterday, yesterday)
        except Exception as exc:
            logger.exception("reconciliation of %s failed", connection.slug)
            failed.append(f"{connection.slug}: {exc}")
            continue
        done.append(f"{connection.slug}: {summarize(run)}")
    if failed:
        raise ReconciliationError("; ".join(failed + done))
    return "; ".join(done) or "no active PayTrace connection"


def summarize(run: ReconciliationRun) -> str:
    counts = ", ".join(
        f"{name} {data['count']}" for name, data in run.buckets.items() if data["count"]
    )
    tie = {True: "ties out", False: "does NOT tie out", None: "no batch data"}
    return f"run {run.pk} {run.date_from}…{run.date_to}: {counts or 'nothing'}; {tie[run.ties_out]}"


def _quiet(message: str) -> None:
    logger.info(message)


@dataclass
class _Reconciliation:
    run: ReconciliationRun
    say: Progress
    totals: dict[str, list] = field(
        default_factory=lambda: {b: [0, ZERO] for b in BUCKET_LABELS}
    )
    pending_lines: list[ReconciliationLine] = field(default_factory=list)
    base_currency: str = ""
    paytrace_total: Decimal = ZERO
    sage_total: Decimal = ZERO
    unapplied: Decimal = ZERO
    explained: dict[str, list] = field(
        default_factory=lambda: {key: [0, ZERO] for key in EXPLANATIONS}
    )
    settled_not_posted: list = field(default_factory=lambda: [0, ZERO])
    refunds: list = field(default_factory=lambda: [0, ZERO])
    memos: list = field(default_factory=lambda: [0, ZERO])
    unposted_refunds: list = field(default_factory=lambda: [0, ZERO])
    reversals: list = field(default_factory=lambda: [0, ZERO])

    def _explain(self, key: str, amount: Decimal) -> None:
        entry = self.explained[key]
        entry[0] += 1
        entry[1] += amount

    def execute(self) -> None:
        run = self.run
        connection = run.connection
        sage_conn = connection.sagepro
        if sage_conn is None:
            raise ReconciliationError(
                f"Connection {connection.slug} has no Sage Pro connection; set one on it first."
            )
        sage = sage_conn.sage()
        self.base_currency = (sage_conn.base_currency or "USD").upper()
        self.say(
            f"{connection.slug}: reading Sage Pro receipts dated {run.date_from}…{run.date_to}"
        )
        receipts = {
            r["reference"]: r
            for r in sage.list_cash_receipts(run.date_from, run.date_to)
            if not r.get("reversed")
        }
        self.say(f"{connection.slug}: {len(receipts)} receipts in Sage Pro")

        start, end = day_bounds(run.date_from, run.date_to)
        self.say(f"{connection.slug}: classifying the range's transactions")
        seen: set[str] = set()
        batch_numbers: set[str] = set()
        unlisted: list[tuple[ReconciliationLine, dict]] = []
        for n, row in enumerate(
            transactions_in_range(connection, start, end).iterator(
                chunk_size=BATCH_SIZE
            ),
            1,
        ):
            seen.add(row["transaction_id"])
            if row["batch_number"]:
                batch_numbers.add(row["batch_number"])
            receipt = receipts.get(row["transaction_id"])
            line = self._line(row, receipt)
            if line.bucket == Bucket.MISSING:
                unlisted.append((line, row))
            else:
                self._add(line)
            if n % PROGRESS_EVERY == 0:
                self.say(f"{connection.slug}: {n} transactions classified")
        if unlisted:
            self.say(
                f"{connection.slug}: asking Sage Pro for {len(unlisted)} receipts "
                "not in the listing"
            )
        self._look_up_unlisted(sage, unlisted)
        for line in self._orphans(sage_conn, receipts, seen):
            self.sage_total += line.amount
            self._explain("orphans", -line.amount)
            self._add(line)
        self._flush()

        self.say(f"{connection.slug}: tying out settlement batches")
        run.batch_totals, run.ties_out = tie_out(connection, start, end, batch_numbers)
        run.headline = self._headline()
        run.buckets = {
            name: {"count": count, "amount": f"{amount:.2f}"}
            for name, (count, amount) in self.totals.items()
        }
        run.state = ReconciliationRun.State.DONE
        run.finished_at = timezone.now()
        run.progress = "Done."
        run.save()
        self.say(f"{connection.slug}: {summarize(run)}")

    def _headline(self) -> dict[str, Any]:
        difference = self.paytrace_total - self.sage_total
        explained = sum((amount for _, amount in self.explained.values()), ZERO)
        return {
            "currency": self.base_currency,
            "paytrace_total": f"{self.paytrace_total:.2f}",
            "sage_total": f"{self.sage_total:.2f}",
            "difference": f"{difference:.2f}",
            "explained": {
                key: {"count": count, "amount": f"{amount:.2f}"}
                for key, (count, amount) in self.explained.items()
            },
            "other": f"{difference - explained:.2f}",
            "unapplied": f"{self.unapplied:.2f}",
            "settled_not_posted": {
                "count": self.settled_not_posted[0],
                "amount": f"{self.settled_not_posted[1]:.2f}",
            },
            "net": self._net(),
            "chargebacks": chargeback_totals(
                self.run.connection, self.run.date_from, self.run.date_to
            ),
        }

    def _net(self) -> dict[str, Any]:
        """PayTrace's net (sales − refunds) against Sage Pro's (receipts − credit
        memos; reversed receipts are out of both). Refunds without a posted credit
        memo explain the part of the net difference that `difference` does not."""
        paytrace_net = self.paytrace_total - self.refunds[1]
        sage_net = self.sage_total - self.memos[1]
        return {
            "paytrace_sales": f"{self.paytrace_total:.2f}",
            "paytrace_refunds": {
                "count": self.refunds[0],
                "amount": f"{self.refunds[1]:.2f}",
            },
            "paytrace_net": f"{paytrace_net:.2f}",
            "sage_receipts": f"{self.sage_total:.2f}",
            "sage_credit_memos": {
                "count": self.memos[0],
                "amount": f"{self.memos[1]:.2f}",
            },
            "sage_reversals": {
                "count": self.reversals[0],
                "amount": f"{self.reversals[1]:.2f}",
            },
            "sage_net": f"{sage_net:.2f}",
            "difference": f"{paytrace_net - sage_net:.2f}",
            "refunds_not_posted": {
                "count": self.unposted_refunds[0],
                "amount": f"{-self.unposted_refunds[1]:.2f}",
            },
        }

    def _line(self, row: dict, receipt: dict | None) -> ReconciliationLine:
        special = self._money_movement(row, receipt)
        if special is not None:
            return special
        needs = is_receipt_wanted(row["mapped_status"], row["transaction_type"])
        state = row["receipt__state"]
        bucket = bucket_for(
            needs_receipt=needs,
            posting_state=state,
            has_open_review=bool(row["review_kind"]),
            receipt_live=receipt is not None,
        )
        receipt_no = (
            receipt["receipt_no"]
            if receipt
            else (row["receipt__document_number"] or "")
        )
        detail = _detail(bucket, row, receipt)
        wrong_amount = (
            bucket == Bucket.POSTED
            and receipt is not None
            and self._wrong_amount(row, receipt)
        )
        if wrong_amount and receipt is not None:
            bucket, detail = Bucket.IN_REVIEW, _wrong_amount_detail(row, receipt)
        self._count_headline(row, receipt, needs, bucket, wrong_amount)
        if row["chargeback_case"]:
            if bucket == Bucket.POSTED and not wrong_amount:
                bucket = CHARGEBACK
                detail = _chargeback_detail(row)
            else:
                detail = f"{detail} {_chargeback_detail(row)}".strip()
        return ReconciliationLine(
            run=self.run,
            bucket=bucket,
            payment_id=row["pk"],
            transaction_id=row["transaction_id"],
            receipt_no=receipt_no,
            amount=row["amount"],
            currency=row["currency"],
            detail=detail[:300],
        )

    def _money_movement(
        self, row: dict, receipt: dict | None
    ) -> ReconciliationLine | None:
        """A refund's line, or a reversed sale's (issue 14); None for the others."""
        kind = (row["transaction_type"] or "").upper()
        amount = row["amount"]
        if kind == "REFUND" and row["gateway_status"] not in (
            GatewayStatus.DECLINED,
            GatewayStatus.VOIDED,
        ):
            state = row["memo__state"]
            self.refunds[0] += 1
            self.refunds[1] += amount
            if state == Posting.State.POSTED:
                bucket = "refund_posted"
                detail = f"Credit memo {row['memo__document_number'] or '?'} posted."
                self.memos[0] += 1
                self.memos[1] += amount
            else:
                self.unposted_refunds[0] += 1
                self.unposted_refunds[1] += amount
                if row["original_id"] is None:
                    bucket = "refund_waiting"
                    detail = "The sale it refunds is not known to the portal yet."
                elif (
                    state in (Posting.State.DEAD, Posting.State.NEEDS_REVIEW)
                    or row["review_kind"]
                ):
                    bucket = "refund_in_review"
                    detail = f"Credit memo waits for review: {row['memo__last_error'] or 'open review item'}"
                else:
                    bucket = "refund_pending"
                    detail = (
                        "No credit memo posting yet."
                        if state is None
                        else f"Credit memo {Posting.State(state).label.lower()}."
                    )
            return self._movement_line(
                row, bucket, detail, row["memo__document_number"]
            )
        if row["reversal__state"] == Posting.State.POSTED and receipt is None:
            self.reversals[0] += 1
            self.reversals[1] += amount
            number = row["receipt__document_number"] or "?"
            return self._movement_line(
                row,
                REVERSED,
                f"Receipt {number} reversed in Sage Pro after the payment was voided.",
                row["receipt__document_number"],
            )
        return None

    def _movement_line(
        self, row: dict, bucket: str, detail: str, number: str | None
    ) -> ReconciliationLine:
        return ReconciliationLine(
            run=self.run,
            bucket=bucket,
            payment_id=row["pk"],
            transaction_id=row["transaction_id"],
            receipt_no=number or "",
            amount=row["amount"],
            currency=row["currency"],
            detail=detail[:300],
        )

    def _count_headline(
        self,
        row: dict,
        receipt: dict | None,
        needs: bool,
        bucket: str,
        wrong_amount: bool,
    ) -> None:
        """Add a payment to the headline: its amount (if it needs a receipt), its
        listed receipt, and the difference between them to one explanation. A
        payment posted but not in the listing is explained in `_look_up_unlisted`."""
        listed = ZERO
        if receipt is not None:
            listed = receipt["amount"]
            self.sage_total += listed
            self.unapplied += receipt.get("unapplied_amount") or ZERO
        if not needs:
            if receipt is not None:
                self._explain("reverse", -listed)
            return
        amount = row["amount"]
        self.paytrace_total += amount
        if row["gateway_status"] == GatewayStatus.SETTLED and bucket != Bucket.POSTED:
            self.settled_not_posted[0] += 1
            self.settled_not_posted[1] += amount
        key = {
            str(Bucket.DEAD): "dead",
            str(Bucket.IN_REVIEW): "in_review",
            str(Bucket.PENDING): "pending",
        }.get(str(bucket))
        if wrong_amount:
            key = "amount_differences"
        if key is not None:
            self._explain(key, amount - listed)

    def _wrong_amount(self, row: dict, receipt: dict | None) -> bool:
        """A live receipt in the payment's currency for another amount."""
        return (
            receipt is not None
            and (row["currency"] or "").upper() == self.base_currency
            and receipt["amount"] != row["amount"]
        )

    def _look_up_unlisted(
        self, sage: Any, unlisted: list[tuple[ReconciliationLine, dict]]
    ) -> None:
        """A posted payment whose receipt is not in the listing: ask Sage Pro by
        reference (its receipt may be dated outside the range); past the cap, report it
        missing without asking."""
        for i, (line, row) in enumerate(unlisted):
            found = (
                sage.find_cash_receipts(reference=row["transaction_id"])
                if i < MAX_POINT_LOOKUPS
                else []
            )
            key = "missing"
            if found:
                receipt = found[0]
                key = "timing"
                line.bucket = Bucket.POSTED
                line.receipt_no = receipt["receipt_no"]
                line.detail = f"Receipt {receipt['receipt_no']} is dated {receipt['date']}, outside the range."
                if self._wrong_amount(row, receipt):
                    key = "amount_differences"
                    line.bucket = Bucket.IN_REVIEW
                    line.detail = _wrong_amount_detail(row, receipt)[:300]
            elif i >= MAX_POINT_LOOKUPS:
                line.detail = (line.detail + " (not looked up by reference)")[:300]
            # Not in the listing: none of its amount is in the Sage Pro total.
            self._explain(key, line.amount)
            self._add(line)

    def _orphans(
        self, sage_conn: Connection, receipts: dict[str, dict], seen: set[str]
    ) -> Iterator[ReconciliationLine]:
        candidates = [
            ref for ref in receipts if ref not in seen and PAYTRACE_ID.match(ref)
        ]
        known: set[str] = set()
        for chunk in _chunks(candidates, 500):
            known.update(
                PaymentTransaction.objects.filter(
                    connection__sagepro=sage_conn, transaction_id__in=chunk
                ).values_list("transaction_id", flat=True)
            )
        for ref in candidates:
            if ref in known:
                continue  # a payment created outside the range; its own run covers it
            receipt = receipts[ref]
            yield ReconciliationLine(
                run=self.run,
                bucket=Bucket.ORPHAN,
                transaction_id=ref,
                receipt_no=receipt["receipt_no"],
                amount=receipt["amount"],
                currency=self.run.connection.base_currency,
                detail=f"Sage Pro receipt {receipt['receipt_no']} ({receipt['custno']}, {receipt['date']}) names PayTrace transaction {ref}, which the portal does not know."[
                    :300
                ],
            )

    def _add(self, line: ReconciliationLine) -> None:
        total = self.totals[line.bucket]
        total[0] += 1
        total[1] += line.amount
        self.pending_lines.append(line)
        if len(self.pending_lines) >= BATCH_SIZE:
            self._flush()

    def _flush(self) -> None:
        ReconciliationLine.objects.bulk_create(
            self.pending_lines, batch_size=BATCH_SIZE
        )
        self.pending_lines = []


def transactions_in_range(
    connection: Connection, start: datetime, end: datetime
) -> QuerySet:
    """The connection's transactions created in [start, end), as dicts, with their
    cash-receipt posting (a LEFT JOIN) and the kind of an open review item."""
    open_review = (
        ReviewItem.objects.filter(
            transaction=OuterRef("pk"), state=ReviewItem.State.OPEN
        )
        .order_by("created_at")
        .values("kind")[:1]
    )
    latest_chargeback = Chargeback.objects.filter(transaction=OuterRef("pk")).order_by(
        "-opened_on", "-id"
    )
    return (
        PaymentTransaction.objects.filter(connection=connection)
        .annotate(
            created_on_at=Coalesce("created_at", "first_seen_at"),
            receipt=FilteredRelation(
                "postings", condition=Q(postings__kind=Posting.Kind.CASH_RECEIPT)
            ),
            memo=FilteredRelation(
                "postings", condition=Q(postings__kind=Posting.Kind.CREDIT_MEMO)
            ),
            reversal=FilteredRelation(
                "postings", condition=Q(postings__kind=Posting.Kind.RECEIPT_REVERSAL)
            ),
            review_kind=Subquery(open_review),
            chargeback_case=Subquery(latest_chargeback.values("case_number")[:1]),
            chargeback_state=Subquery(latest_chargeback.values("state")[:1]),
            chargeback_amount=Subquery(latest_chargeback.values("amount")[:1]),
        )
        .filter(created_on_at__gte=start, created_on_at__lt=end)
        .order_by()
        .values(
            "pk",
            "transaction_id",
            "transaction_type",
            "gateway_status",
            "mapped_status",
            "amount",
            "currency",
            "batch_number",
            "receipt__state",
            "receipt__document_number",
            "receipt__last_error",
            "review_kind",
            "original_id",
            "memo__state",
            "memo__document_number",
            "memo__last_error",
            "reversal__state",
            "chargeback_case",
            "chargeback_state",
            "chargeback_amount",
        )
    )


def _wrong_amount_detail(row: dict, receipt: dict) -> str:
    return (
        f"Sage Pro receipt {receipt['receipt_no']} is for {receipt['amount']}, but "
        f"PayTrace collected {row['amount']}: correct the receipt in Sage Pro."
    )


def _detail(bucket: str, row: dict, receipt: dict | None) -> str:
    status = f"{row['gateway_status']}/{row['mapped_status'] or '-'} {row['transaction_type'] or '-'}"
    state = row["receipt__state"]
    if bucket == Bucket.POSTED:
        if receipt and receipt["amount"] != row["amount"]:
            return f"Sage Pro receipt is for {receipt['amount']}, PayTrace says {row['amount']}."
        return ""
    if bucket == Bucket.MISSING:
        number = row["receipt__document_number"] or "?"
        return f"Posted as receipt {number}, but Sage Pro has no live receipt with reference {row['transaction_id']} (deleted?)."
    if bucket == Bucket.DEAD:
        return f"Posting gave up: {row['receipt__last_error'] or 'no error recorded'}"
    if bucket == Bucket.IN_REVIEW:
        if receipt and not is_receipt_wanted(
            row["mapped_status"], row["transaction_type"]
        ):
            return f"PayTrace says {status}, but Sage Pro receipt {receipt['receipt_no']} is live: reverse it."
        if row["review_kind"]:
            return f"Open review item: {ReviewItem.Kind(row['review_kind']).label}."
        return f"Posting needs review: {row['receipt__last_error']}"
    if bucket == Bucket.PENDING:
        if state is None:
            return "No receipt posting yet."
        return f"Posting {Posting.State(state).label.lower()}."
    return status


def _chargeback_detail(row: dict) -> str:
    amount = row["chargeback_amount"]
    shown = f"{amount:.2f}" if amount is not None else "?"
    return (
        f"Chargeback {row['chargeback_case']} {row['chargeback_state']}, {shown} "
        f"{row['currency']}."
    )


def chargeback_totals(
    connection: Connection, date_from: date, date_to: date
) -> dict[str, dict[str, Any]]:
    """The connection's chargeback state changes dated in the range, by state."""
    rows = (
        ChargebackEvent.objects.filter(
            chargeback__connection=connection, on__gte=date_from, on__lte=date_to
        )
        .values("state")
        .annotate(count=Count("id"), amount=Sum("amount"))
    )
    out: dict[str, dict[str, Any]] = {
        state: {"count": 0, "amount": "0.00"} for state in Chargeback.State.values
    }
    for row in rows:
        out[row["state"]] = {
            "count": row["count"],
            "amount": f"{row['amount'] or ZERO:.2f}",
        }
    return out


def _chunks(items: list[str], size: int) -> Iterator[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# --- tie-out ---------------------------------------------------------------------------


def signed_amount(amount: Decimal, transaction_type: str) -> Decimal:
    """A refund takes money out of a batch."""
    return -amount if (transaction_type or "").upper() == "REFUND" else amount


def tie_out(
    connection: Connection, start: datetime, end: datetime, batch_numbers: Iterable[str]
) -> tuple[dict[str, dict], bool | None]:
    """Compare PayTrace's batch totals with the portal's transactions, per batch."""
    numbers = set(batch_numbers)
    batches = {
        b.batch_number: b
        for b in SettlementBatch.objects.filter(connection=connection).filter(
            Q(settled_at__gte=start, settled_at__lt=end) | Q(batch_number__in=numbers)
        )
    }
    numbers |= set(batches)
    actual: dict[str, list] = {n: [0, ZERO, set()] for n in numbers}
    rows = PaymentTransaction.objects.filter(
        connection=connection, batch_number__in=numbers
    ).values_list("batch_number", "transaction_id", "transaction_type", "amount")
    for number, transaction_id, kind, amount in rows.iterator(chunk_size=BATCH_SIZE):
        tally = actual[number]
        tally[0] += 1
        tally[1] += signed_amount(amount, kind)
        tally[2].add(transaction_id)

    totals: dict[str, dict] = {}
    verdicts = []
    zone = business_zone()
    for number in sorted(numbers, key=lambda n: (len(n), n)):
        count, amount, ids = actual[number]
        batch = batches.get(number)
        entry: dict[str, Any] = {
            "settled_on": None,
            "expected_count": None,
            "expected_amount": None,
            "actual_count": count,
            "actual_amount": f"{amount:.2f}",
            "difference": None,
            "ties_out": None,
        }
        if batch is not None:
            difference = amount - batch.net_amount
            agrees = difference == 0 and count == batch.transaction_count
            listed = set(map(str, batch.transaction_ids))
            # The storage's card-number net can mask a run of ids it takes for a
            # card number; a masked id names no transaction, so it is only counted.
            masked = {i for i in listed if "*" in i}
            unknown = sorted(listed - masked - ids)
            entry.update(
                settled_on=batch.settled_at.astimezone(zone).date().isoformat()
                if batch.settled_at
                else None,
                expected_count=batch.transaction_count,
                expected_amount=f"{batch.net_amount:.2f}",
                difference=f"{difference:.2f}",
                ties_out=agrees,
                not_in_portal=unknown[:MAX_IDS_LISTED],
                not_in_portal_count=len(unknown),
                masked_ids=len(masked),
            )
            verdicts.append(agrees)
        totals[number] = entry
    return totals, (all(verdicts) if verdicts else None)


# --- output ----------------------------------------------------------------------------


def line_rows(runs: Iterable[ReconciliationRun]) -> Iterator[dict[str, Any]]:
    """Every line of the runs as plain values, in one query per run."""
    for run in runs:
        rows = (
            ReconciliationLine.objects.filter(run=run)
            .order_by("bucket", "transaction_id", "pk")
            .values_list(
                "transaction_id", "bucket", "amount", "currency", "receipt_no", "detail"
            )
        )
        for (
            transaction_id,
            bucket,
            amount,
            currency,
            receipt_no,
            detail,
        ) in rows.iterator(chunk_size=BATCH_SIZE):
            yield {
                "connection": run.connection.slug,
                "transaction_id": transaction_id,
                "bucket": bucket,
                "amount": f"{amount:.2f}",
                "currency": currency,
                "receipt_no": receipt_no,
                "detail": detail,
            }


def as_json(runs: list[ReconciliationRun]) -> dict[str, Any]:
    """One object for `reconcile --json`: bucket totals across the runs, and the lines."""
    buckets: dict[str, dict[str, Any]] = {
        name: {"count": 0, "amount": ZERO} for name in BUCKET_LABELS
    }
    for run in runs:
        for name, data in run.buckets.items():
            buckets.setdefault(name, {"count": 0, "amount": ZERO})
            buckets[name]["count"] += data["count"]
            buckets[name]["amount"] += Decimal(data["amount"])
    verdicts = [run.ties_out for run in runs if run.ties_out is not None]
    return {
        "date_from": runs[0].date_from.isoformat() if runs else None,
        "date_to": runs[0].date_to.isoformat() if runs else None,
        "ties_out": all(verdicts) if verdicts else None,
        "buckets": {
            name: {"count": data["count"], "amount": f"{data['amount']:.2f}"}
            for name, data in buckets.items()
        },
        "runs": [
            {
                "id": run.pk,
                "connection": run.connection.slug,
                "ties_out": run.ties_out,
                "headline": run.headline,
                "batch_totals": run.batch_totals,
            }
            for run in runs
        ],
        "lines": list(line_rows(runs)),
    }
