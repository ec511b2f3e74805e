"""Chargebacks: recording disputes, posting their GL batches, importing dispute reports.

PayTrace offers no chargeback API, so a chargeback is entered in the admin or imported
from the processor's dispute report (`mappings.disputes` reads the CSV). Each state
of a case (opened, won, lost) is one `ChargebackEvent`, at most once, and posts one
balanced GL batch (`Posting(kind=gl_batch)`, key suffix `cb<event id>`) dated the day
the state took effect, with the accounts the GL rules choose:

    opened  Dr chargeback        / Cr cash (the receipt's account): the processor took it
            Dr chargeback_fee    / Cr cash, when the processor charged a fee
    lost    Dr chargeback_loss   / Cr chargeback: an expense now
    won     Dr cash              / Cr chargeback: the money came back

An account no rule chooses is the connection's suspense account; with neither, or a
date in a period Sage Pro does not accept, the event is recorded, nothing is sent and
a `chargeback` review item names the fix. An opened case also opens a `chargeback`
item ("respond by …"), closed when the case is won or lost.

An import is previewed first (`preview_import`: every row's verdict, nothing
written but the import record) and carried out on confirmation (`confirm_import`):
the good rows in one transaction, the bad ones listed by line. The same file (by its
SHA-256) imports once; a case already in the state a row reports is left unchanged.
"""

import hashlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from integrations import sending
from integrations.connectors.base import ConnectorError
from integrations.documents.sources import periods_from
from integrations.models import (
    Connection,
    PaymentTransaction,
    Posting,
    ReviewItem,
    saved_user,
    storable_text,
)
from integrations.models.chargebacks import (
    Chargeback,
    ChargebackEvent,
    DisputeImport,
    DisputeReportMapping,
)
from mappings import disputes
from mappings import fields as fm
from mappings.gl import GlChoice, GlFacts, Purpose, choose_gl_account
from mappings.models import GlRule

logger = logging.getLogger(__name__)

ZERO = Decimal("0.00")
State = Chargeback.State
BATCH_SOURCE = "CB"
OPENED_CODE = "CHARGEBACK_OPENED"
NOT_POSTED_CODE = "CHARGEBACK_NOT_POSTED"


class ChargebackError(Exception):
    """A chargeback or a state change was refused; the message says why and what to do."""


# --- the GL batch ----------------------------------------------------------------------


@dataclass(frozen=True)
class GlLine:
    account: str
    debit: Decimal
    credit: Decimal
    memo: str

    def as_payload(self) -> dict[str, str]:
        return {
            "account": self.account,
            "debit": f"{self.debit:.2f}",
            "credit": f"{self.credit:.2f}",
            "memo": self.memo[:30],
        }


@dataclass(frozen=True)
class BatchPlan:
    """What one state change posts: the batch's lines, or the problems that stop it.

    `fingerprint` changes whenever anything shown would change; a confirmation carries
    it, and one whose fingerprint is no longer the plan's shows the new plan instead.
    """

    case_number: str
    state: str
    on: date
    amount: Decimal
    currency: str
    lines: tuple[GlLine, ...] = ()
    problems: tuple[str, ...] = ()
    traces: tuple[tuple[str, str], ...] = ()

    @property
    def debit_total(self) -> Decimal:
        return sum((line.debit for line in self.lines), ZERO)

    @property
    def credit_total(self) -> Decimal:
        return sum((line.credit for line in self.lines), ZERO)

    @property
    def is_balanced(self) -> bool:
        return bool(self.lines) and self.debit_total == self.credit_total

    @property
    def summary(self) -> str:
        return f"Chargeback {self.case_number} {self.state} on {self.on.isoformat()}"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(repr(self).encode()).hexdigest()[:20]

    def payload(self) -> dict[str, Any]:
        """The body of `POST /gl-batches`."""
        return {
            "date": self.on.isoformat(),
            "description": f"Chargeback {self.state} {self.case_number}"[:30],
            "reference": self.case_number[:40],
            "source": BATCH_SOURCE,
            "lines": [line.as_payload() for line in self.lines],
        }


def _facts(txn: PaymentTransaction, amount: Decimal) -> GlFacts:
    return GlFacts(
        transaction_type=txn.transaction_type,
        card_brand=txn.card_brand,
        channel=txn.channel,
        amount=amount,
        currency=txn.currency,
        invoice=txn.invoice_reference,
    )


def _suspense(txn: PaymentTransaction) -> str:
    sage = txn.connection.sagepro
    return txn.connection.suspense_account or (sage.suspense_account if sage else "")


def choose_account(txn: PaymentTransaction, purpose: str, amount: Decimal) -> GlChoice:
    """The account the connection's rules for `purpose` choose (or its suspense)."""
    rules = GlRule.rules_for(txn.connection, purpose)
    return choose_gl_account(_facts(txn, amount), rules, _suspense(txn))


def cash_account(txn: PaymentTransaction) -> tuple[str, str]:
    """The account the payment's cash went to, and how it was found: its receipt's
    account, else what the receipt rules choose today, else the suspense account."""
    receipt = (
        txn.postings.filter(kind=Posting.Kind.CASH_RECEIPT)
        .exclude(gl_account="")
        .first()
    )
    if receipt is not None:
        return receipt.gl_account, f"the account of receipt {receipt.document_number}"
    choice = choose_account(txn, Purpose.RECEIPT, txn.amount)
    if choice.account:
        how = "suspense account" if choice.used_suspense else "receipt GL rule"
        return choice.account, f"{how} (the payment has no receipt account)"
    return "", ""


def plan_batch(
    txn: PaymentTransaction,
    case_number: str,
    state: str,
    on: date,
    amount: Decimal,
    fee: Decimal = ZERO,
) -> BatchPlan:
    """The batch a state change posts, through the GL rules."""
    problems: list[str] = []
    traces: list[tuple[str, str]] = []

    def account(purpose: str, value: Decimal) -> str:
        choice = choose_account(txn, purpose, value)
        if not choice.account:
            problems.append(
                f"No GL rule for {purpose.replace('_', ' ')} accounts matches and the "
                f"connection {txn.connection.slug} has no suspense account: add a GL "
                f"rule with purpose “{purpose}” (Mapping rules → GL-account rules)."
            )
        traces.append(
            (purpose, choice.account + (" (suspense)" if choice.used_suspense else ""))
        )
        return choice.account

    cash, cash_how = cash_account(txn)
    if not cash:
        problems.append(
            "The payment has no receipt account, no receipt GL rule matches and there "
            "is no suspense account: add a receipt GL rule or a suspense account."
        )
    traces.append(("cash", f"{cash} ({cash_how})" if cash else ""))
    memo = f"CB {case_number} PT {txn.transaction_id}"
    lines: list[GlLine] = []
    if state == State.OPENED:
        chargeback = account(Purpose.CHARGEBACK, amount)
        lines += [
            GlLine(chargeback, amount, ZERO, memo),
            GlLine(cash, ZERO, amount, memo),
        ]
        if fee > 0:
            fee_account = account(Purpose.CHARGEBACK_FEE, fee)
            lines += [
                GlLine(fee_account, fee, ZERO, f"Dispute fee {case_number}"),
                GlLine(cash, ZERO, fee, f"Dispute fee {case_number}"),
            ]
    elif state == State.LOST:
        loss = account(Purpose.CHARGEBACK_LOSS, amount)
        chargeback = account(Purpose.CHARGEBACK, amount)
        lines += [
            GlLine(loss, amount, ZERO, memo),
            GlLine(chargeback, ZERO, amount, memo),
        ]
    else:
        chargeback = account(Purpose.CHARGEBACK, amount)
        lines += [
            GlLine(cash, amount, ZERO, memo),
            GlLine(chargeback, ZERO, amount, memo),
        ]
    period = period_problem(txn, on)
    if period:
        problems.append(period)
    return BatchPlan(
        case_number=case_number,
        state=state,
        on=on,
        amount=amount,
        currency=txn.currency,
        lines=tuple(lines),
        problems=tuple(problems),
        traces=tuple(traces),
    )


def period_problem(txn: PaymentTransaction, on: date) -> str:
    """Why Sage Pro would refuse a batch dated `on` (its periods, from the mirror), or
    "" (also when the periods cannot be read: Sage Pro then decides)."""
    sage_conn = txn.connection.sagepro
    if sage_conn is None:
        return ""
    try:
        rows = sage_conn.mirror().list_periods()
    except ConnectorError as exc:
        logger.warning("periods of %s not readable: %s", sage_conn.slug, exc)
        return ""
    found = fm.period_problem(on, periods_from(rows))
    if found is None:
        return ""
    code, message = found
    return (
        f"Sage Pro does not accept a GL batch dated {on.isoformat()}: {message} "
        f"({code}). Post the batch by hand in an open period, or reopen the period "
        "and retry."
    )


# --- recording a chargeback and its state changes --------------------------------------


def check_new(
    txn: PaymentTransaction, case_number: str, amount: Decimal, fee: Decimal = ZERO
) -> None:
    """Raise ChargebackError when a chargeback with these values cannot be recorded."""
    case = case_number.strip()
    if not case:
        raise ChargebackError("Give the processor's case number.")
    if len(case) > 40:
        raise ChargebackError("A case number has at most 40 characters.")
    if (txn.transaction_type or "").upper() == "REFUND":
        raise ChargebackError(
            f"PayTrace {txn.transaction_id} is a refund; a chargeback disputes a sale."
        )
    if txn.connection.sagepro is None:
        raise ChargebackError(
            f"Connection {txn.connection.slug} has no Sage Pro connection to post to."
        )
    if amount <= 0:
        raise ChargebackError("The chargeback amount must be more than 0.00.")
    if amount > txn.amount:
        raise ChargebackError(
            f"The chargeback amount {amount:.2f} is more than the payment's "
            f"{txn.amount:.2f}."
        )
    if fee < 0:
        raise ChargebackError("The dispute fee cannot be negative.")
    existing = Chargeback.objects.filter(
        connection=txn.connection, case_number=case
    ).first()
    if existing is not None:
        raise ChargebackError(
            f"Case {case} is already recorded (chargeback {existing.pk}, "
            f"{existing.state}, PayTrace {existing.transaction.transaction_id})."
        )


def preview_open(
    txn: PaymentTransaction,
    *,
    case_number: str,
    amount: Decimal,
    opened_on: date,
    fee: Decimal = ZERO,
) -> BatchPlan:
    """What recording the chargeback would post (raises ChargebackError if refused)."""
    check_new(txn, case_number, amount, fee)
    return plan_batch(txn, case_number.strip(), State.OPENED, opened_on, amount, fee)


def open_chargeback(
    txn: PaymentTransaction,
    *,
    case_number: str,
    amount: Decimal,
    opened_on: date,
    due_on: date | None = None,
    reason_code: str = "",
    reason_text: str = "",
    fee: Decimal = ZERO,
    user: Any = None,
    source: str = Chargeback.Source.FORM,
    dispute_import: DisputeImport | None = None,
) -> Chargeback:
    """Record a new chargeback (opened) and post its batch after the commit."""
    check_new(txn, case_number, amount, fee)
    with transaction.atomic():
        chargeback = Chargeback.objects.create(
            connection=txn.connection,
            transaction=txn,
            case_number=case_number.strip(),
            amount=amount,
            currency=txn.currency,
            fee_amount=fee,
            reason_code=storable_text(reason_code)[:20],
            reason_text=storable_text(reason_text)[:200],
            opened_on=opened_on,
            due_on=due_on,
            source=source,
            dispute_import=dispute_import,
            created_by=saved_user(user),
        )
        _record_event(chargeback, State.OPENED, opened_on, user, source)
        due = f"respond by {due_on.isoformat()}" if due_on else "respond to it"
        reason = " ".join(
            part for part in (chargeback.reason_code, chargeback.reason_text) if part
        )
        text = (
            f"Chargeback {chargeback.case_number} of {amount:.2f} {txn.currency} "
            f"opened on {opened_on.isoformat()}"
            + (f" ({reason})" if reason else "")
            + f": {due} with the processor, then record it won or lost."
        )
        refused = ReviewItem.objects.filter(
            transaction=txn,
            kind=ReviewItem.Kind.CHARGEBACK,
            state=ReviewItem.State.OPEN,
        ).first()
        if refused is not None:  # one open item per kind: both texts in it
            refused.reason = f"{refused.reason} {text}"
            refused.save(update_fields=["reason"])
        else:
            ReviewItem.open(
                txn, ReviewItem.Kind.CHARGEBACK, text, error_code=OPENED_CODE
            )
    return chargeback


def preview_resolve(chargeback: Chargeback, state: str, on: date) -> BatchPlan:
    """What moving the chargeback to won or lost would post."""
    _check_resolve(chargeback, state, on)
    return plan_batch(
        chargeback.transaction, chargeback.case_number, state, on, chargeback.amount
    )


def resolve_chargeback(
    chargeback: Chargeback,
    state: str,
    on: date,
    *,
    user: Any = None,
    source: str = Chargeback.Source.FORM,
) -> ChargebackEvent:
    """Move an opened chargeback to won or lost and post its batch after the commit."""
    with transaction.atomic():
        locked = Chargeback.objects.select_for_update().get(pk=chargeback.pk)
        _check_resolve(locked, state, on)
        locked.state = state
        locked.resolved_on = on
        locked.save(update_fields=["state", "resolved_on", "updated_at"])
        event = _record_event(locked, state, on, user, source)
        item = ReviewItem.objects.filter(
            transaction=locked.transaction,
            kind=ReviewItem.Kind.CHARGEBACK,
            state=ReviewItem.State.OPEN,
            error_code=OPENED_CODE,
        ).first()
        if item is not None:
            item.resolve(
                user,
                f"Chargeback {locked.case_number} {state} on {on.isoformat()}",
                f"chargeback_{state}",
                {"chargeback": locked.pk, "state": state, "on": on.isoformat()},
            )
    chargeback.refresh_from_db()
    return event


def _check_resolve(chargeback: Chargeback, state: str, on: date) -> None:
    if state not in (State.WON, State.LOST):
        raise ChargebackError("A chargeback ends won or lost.")
    if chargeback.state != State.OPENED:
        raise ChargebackError(
            f"Chargeback {chargeback.case_number} is already {chargeback.state} "
            f"(on {chargeback.resolved_on}); a decided case is not changed here. "
            "Correct it in Sage Pro by hand."
        )
    if on < chargeback.opened_on:
        raise ChargebackError(
            f"{on.isoformat()} is before the case opened "
            f"({chargeback.opened_on.isoformat()})."
        )


def _record_event(
    chargeback: Chargeback, state: str, on: date, user: Any, source: str
) -> ChargebackEvent:
    """The state's event and its GL batch posting (queued after the commit), or a
    review item naming why the batch cannot be posted."""
    txn = chargeback.transaction
    fee = chargeback.fee_amount if state == State.OPENED else ZERO
    plan = plan_batch(txn, chargeback.case_number, state, on, chargeback.amount, fee)
    event = ChargebackEvent.objects.create(
        chargeback=chargeback,
        state=state,
        on=on,
        amount=chargeback.amount,
        source=source,
        created_by=saved_user(user),
    )
    txn.record(
        f"chargeback_{state}",
        f"Chargeback {chargeback.case_number} {state} on {on.isoformat()}",
        user=user,
        chargeback=chargeback.pk,
    )
    sage_conn = txn.connection.sagepro
    assert sage_conn is not None  # check_new refused a connection without one
    posting, created = sending.create_posting(
        txn,
        sage_conn,
        Posting.Kind.GL_BATCH,
        plan.payload(),
        key_suffix=f"cb{event.pk}",
        decided_by=user,
    )
    event.posting = posting
    event.save(update_fields=["posting"])
    if not created:
        return event
    if plan.problems:
        reason = (
            f"The GL batch of chargeback {chargeback.case_number} ({state}) was not "
            "sent: " + " ".join(plan.problems)
        )
        posting.state = Posting.State.NEEDS_REVIEW
        posting.not_sent = True
        posting.last_error = reason[:2000]
        posting.last_error_code = NOT_POSTED_CODE
        posting.save()
        ReviewItem.open(
            txn,
            ReviewItem.Kind.CHARGEBACK,
            reason,
            posting=posting,
            error_code=NOT_POSTED_CODE,
        )
    else:
        sending.queue_send(posting)
    return event


# --- sending the batch -----------------------------------------------------------------


def _send(sage: Any, posting: Posting) -> dict[str, Any]:
    return sage.post_gl_batch(posting.idempotency_key, posting.payload)


def _find(sage: Any, posting: Posting) -> dict[str, Any] | None:
    found = sage.find_gl_batches(idempotency_key=posting.idempotency_key)
    return found[0] if found else None


def _on_posted(posting: Posting, result: dict[str, Any]) -> None:
    posting.transaction.record(
        "chargeback_batch_posted",
        f"GL batch {result.get('batch_no', '?')} for {posting.payload.get('reference')}"
        " is in Sage Pro (unposted, for a Sage user to post).",
        posting=posting.pk,
    )


sending.register(
    sending.DocumentSender(
        kind=Posting.Kind.GL_BATCH,
        label="GL batch",
        send=_send,
        find=_find,
        number=lambda result: str(result.get("batch_no", "")),
        on_posted=_on_posted,
        review_kind=ReviewItem.Kind.CHARGEBACK,
    )
)


# --- the dispute report ----------------------------------------------------------------


def saved_mapping(connection: Connection) -> disputes.ReportMapping | None:
    row = DisputeReportMapping.objects.filter(connection=connection).first()
    if row is None:
        return None
    return disputes.ReportMapping(dict(row.columns), row.date_format)


def save_mapping(
    connection: Connection, mapping: disputes.ReportMapping, user: Any = None
) -> None:
    DisputeReportMapping.objects.update_or_create(
        connection=connection,
        defaults={
            "columns": {k: v for k, v in mapping.columns.items() if v},
            "date_format": mapping.date_format,
            "updated_by": saved_user(user),
        },
    )


def _redact(text: str) -> str:
    return str(storable_text(text))


def read_headers(content: bytes) -> tuple[str, ...]:
    """The file's column headers (for choosing the mapping); raises ReportError."""
    return disputes.read_report(content, _redact).headers


def preview_import(
    connection: Connection,
    name: str,
    content: bytes,
    user: Any = None,
    mapping: disputes.ReportMapping | None = None,
) -> DisputeImport:
    """Read the file and record every row's verdict; nothing else is written. A file
    already imported returns that import."""
    sha = hashlib.sha256(content).hexdigest()
    done = DisputeImport.objects.filter(
        connection=connection, sha256=sha, state=DisputeImport.State.IMPORTED
    ).first()
    if done is not None:
        return done
    mapping = mapping or saved_mapping(connection)
    record = DisputeImport(
        connection=connection,
        file_name=_redact(name or "dispute-report.csv")[:200],
        sha256=sha,
        created_by=saved_user(user),
    )
    try:
        report = disputes.read_report(content, _redact)
        if mapping is None:
            columns = disputes.guess_mapping(report.headers)
            mapping = disputes.ReportMapping(
                columns, disputes.guess_date_format(report, columns)
            )
        problems = mapping.problems() + disputes.missing_columns(report, mapping)
        if problems:
            raise disputes.ReportError(
                "The columns are not mapped: " + " ".join(problems)
            )
    except disputes.ReportError as exc:
        record.state = DisputeImport.State.REFUSED
        record.error = _redact(str(exc))
        record.mapping = _mapping_json(mapping)
        record.save()
        return record
    record.notes = list(report.notes)
    record.mapping = _mapping_json(mapping)
    record.rows = [[line, values] for line, values in report.rows]
    _check(record, mapping)
    record.save()
    return record


def _mapping_json(mapping: disputes.ReportMapping | None) -> dict[str, Any]:
    if mapping is None:
        return {}
    return {"columns": dict(mapping.columns), "date_format": mapping.date_format}


def mapping_of(record: DisputeImport) -> disputes.ReportMapping:
    return disputes.ReportMapping(
        dict(record.mapping.get("columns") or {}),
        record.mapping.get("date_format") or "%Y-%m-%d",
    )


@dataclass
class _Verdicts:
    results: list[dict[str, Any]] = field(default_factory=list)
    good: list[tuple[disputes.ChargebackRow, str]] = field(default_factory=list)


def _check(record: DisputeImport, mapping: disputes.ReportMapping) -> _Verdicts:
    """Every row's verdict against the payments and chargebacks as they are now; the
    counts and results are set on `record` (not saved)."""
    report = disputes.Report(
        headers=(),
        rows=tuple((int(line), dict(values)) for line, values in record.rows),
    )
    ids = {
        values.get(str(mapping.columns.get("transaction_id") or ""), "")
        for _, values in report.rows
    }
    payments: Mapping[str, Decimal] = dict(
        PaymentTransaction.objects.filter(
            connection=record.connection, transaction_id__in=ids - {""}
        )
        .exclude(transaction_type__iexact="REFUND")
        .values_list("transaction_id", "amount")
    )
    verdicts = _Verdicts()
    cases = {
        c.case_number: c
        for c in Chargeback.objects.filter(
            connection=record.connection,
            case_number__in=[
                values.get(str(mapping.columns.get("case_number") or ""), "")
                for _, values in report.rows
            ],
        ).select_related("transaction")
    }
    for result in disputes.check_rows(report, mapping, payments):
        entry = disputes.as_jsonable([result])[0]
        errors = list(result.errors)
        action = ""
        if result.row is not None and not errors:
            action, error = _action_for(result.row, cases.get(result.row.case_number))
            if error:
                errors.append(error)
        entry["errors"] = errors
        entry["action"] = action if not errors else ""
        if result.row is not None and not errors:
            verdicts.good.append((result.row, action))
        verdicts.results.append(entry)
    record.results = verdicts.results
    record.row_count = len(verdicts.results)
    record.good_count = len(verdicts.good)
    record.bad_count = record.row_count - record.good_count
    return verdicts


ACTION_LABELS = {
    "create": "new chargeback",
    "advance": "state change",
    "unchanged": "already recorded: nothing to do",
}


def _action_for(
    row: disputes.ChargebackRow, existing: Chargeback | None
) -> tuple[str, str]:
    """What importing the row would do to the case as recorded, or why it cannot."""
    if existing is None:
        return "create", ""
    if existing.transaction.transaction_id != row.transaction_id:
        return "", (
            f"case {row.case_number} is already recorded for PayTrace "
            f"{existing.transaction.transaction_id}"
        )
    if row.state == existing.state or existing.events.filter(state=row.state).exists():
        return "unchanged", ""
    if existing.state == State.OPENED:
        if row.resolved_on and row.resolved_on < existing.opened_on:
            return "", (
                f"resolved {row.resolved_on.isoformat()} before the case opened "
                f"({existing.opened_on.isoformat()})"
            )
        return "advance", ""
    if row.state == State.OPENED:
        return "unchanged", ""
    return "", (
        f"case {row.case_number} is already {existing.state} "
        f"(on {existing.resolved_on}); correct it by hand"
    )


def confirm_import(record: DisputeImport, user: Any = None) -> DisputeImport:
    """Import the good rows of a previewed file, all in one transaction (the bad ones
    stay listed); a file already imported changes nothing and returns that import."""
    if record.state != DisputeImport.State.PREVIEWED:
        return record
    try:
        with transaction.atomic():
            locked = DisputeImport.objects.select_for_update().get(pk=record.pk)
            if locked.state != DisputeImport.State.PREVIEWED:
                return locked
            done = DisputeImport.objects.filter(
                connection=locked.connection,
                sha256=locked.sha256,
                state=DisputeImport.State.IMPORTED,
            ).first()
            if done is not None:
                return done
            verdicts = _check(locked, mapping_of(locked))
            counts = {"create": 0, "advance": 0, "unchanged": 0}
            done_lines = {}
            for row, action in verdicts.good:
                _import_row(locked, row, action, user)
                counts[action] += 1
                done_lines[row.line] = action
            for entry in locked.results:
                entry["done"] = done_lines.get(entry["line"], "")
            locked.created_count = counts["create"]
            locked.changed_count = counts["advance"]
            locked.unchanged_count = counts["unchanged"]
            locked.state = DisputeImport.State.IMPORTED
            locked.imported_at = timezone.now()
            locked.created_by = locked.created_by or saved_user(user)
            locked.save()
    except IntegrityError:
        # The same file imported by someone else meanwhile.
        found = DisputeImport.objects.filter(
            connection=record.connection,
            sha256=record.sha256,
            state=DisputeImport.State.IMPORTED,
        ).first()
        if found is None:
            raise
        return found
    record.refresh_from_db()
    return record


def _import_row(
    record: DisputeImport, row: disputes.ChargebackRow, action: str, user: Any
) -> None:
    source = Chargeback.Source.IMPORT
    if action == "unchanged":
        return
    if action == "create":
        txn = PaymentTransaction.objects.get(
            connection=record.connection, transaction_id=row.transaction_id
        )
        chargeback = open_chargeback(
            txn,
            case_number=row.case_number,
            amount=row.amount,
            opened_on=row.opened_on,
            due_on=row.due_on,
            reason_code=row.reason_code,
            reason_text=row.reason_text,
            fee=row.fee,
            user=user,
            source=source,
            dispute_import=record,
        )
    else:
        chargeback = Chargeback.objects.get(
            connection=record.connection, case_number=row.case_number
        )
    if row.state != State.OPENED:
        resolve_chargeback(
            chargeback, row.state, row.event_on, user=user, source=source
        )


def import_report(
    connection: Connection,
    name: str,
    content: bytes,
    user: Any = None,
    mapping: disputes.ReportMapping | None = None,
) -> DisputeImport:
    """Preview and import a dispute report's good rows in one go (the demo's path)."""
    record = preview_import(connection, name, content, user=user, mapping=mapping)
    return confirm_import(record, user=user)


def sample_report(sales: list[tuple[str, Decimal]], today: date) -> bytes:
    """A small dispute report for the demo, in `tests/fixtures/dispute_report.csv`'s
    columns: for the first three `sales` (transaction id, amount) one case opened,
    one lost and one won, dated in the week before `today`, plus two bad rows (an
    unknown transaction id, an amount that is not a number)."""
    day = [today - timedelta(days=n) for n in range(8)]

    def us(d: date) -> str:
        return d.strftime("%m/%d/%Y")

    stamp = today.strftime("%y%m%d")
    lines = [
        "Case ID,Transaction ID,Dispute Amount,Status,Received Date,Reply By,"
        "Resolved Date,Reason Code,Reason,Fee"
    ]
    states = ("Open", "Lost", "Won")
    for n, ((tid, amount), state) in enumerate(zip(sales[:3], states, strict=False)):
        part = (amount / 2).quantize(Decimal("0.01"))
        resolved = us(day[1]) if state != "Open" else ""
        fee = "15.00" if state == "Open" else ""
        lines.append(
            f"DEMO-{stamp}-{n + 1},{tid},{part},{state},{us(day[7])},"
            f"{us(today + timedelta(days=10))},{resolved},10.4,Card absent fraud,{fee}"
        )
    lines.append(f"DEMO-{stamp}-8,0000000,10.00,Open,{us(day[2])},,,13.1,Not received,")
    lines.append(
        f"DEMO-{stamp}-9,{sales[0][0] if sales else 0},ten,Open,{us(day[2])},,,13.1,Not received,"
    )
    return ("\n".join(lines) + "\n").encode()
