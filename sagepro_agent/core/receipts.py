"""`POST /cash-receipts` as a journalled, resumable sequence of steps.

FoxPro free tables have no transactions, so a receipt is written in steps, each
recorded in the journal (`sagepro_agent.journal`) before the next, and each with a
check that tells whether its Sage write already happened, so a restarted agent can
repeat a step safely (design and crash matrix: docs/agent-groundwork.md Q5).

1. Validate (400), then, under the company's receipt lock: idempotency (replay 200 /
   409), duplicate reference (409), and the plan: every rule of contract section 4.3
   over reads only (422, or 423 when a row carries someone's `LCKSTAT`). A refusal
   writes nothing, not even in the journal (as in the sandbox, where it rolls back).
2. Journal `PLANNED` with the plan (each invoice's `PAIDAMT` before the change).
3. Steps, the journal committed after each:
   - S1 number: compare-and-set on the `SYSDATA` counter, skipping used numbers,
     wrapping at 999999. A crash before the journal commit leaves a gap.
   - S2 header: the receipt row with the in-progress marker `LCKSTAT='L'`,
     `LCKUSER=<agent user>`. Checked before S1 on resume: a live header with our
     reference and our marker is adopted.
   - S3 lines: one per application, each looked up (`RCPTNO+INVNO`) before appending.
   - S4 invoices, in `invno` order: one compare-and-set record write of `PAIDAMT`,
     `BALANCE` and our marker. Our marker with `PAIDAMT = before + applied` = done;
     `PAIDAMT = before` = do it; someone's `LCKSTAT` = 423 (state kept); anything else
     = NEEDS_REVIEW, never a silent rollback.
   - S5 customer: `BALANCE = sum of live invoice balances`, `LASTPAY`, `LPYMT`
     (idempotent).
   - S6 publish: clear our markers, then journal DONE with the response and the
     change-journal rows, in one SQLite transaction.
`AGENT_FAULT=exit_after:<STEP>[:<n>]` ends the process (`os._exit(137)`) right after
step STEP's Sage write the n-th time (1st by default): the lead's kill tests.
"""

from __future__ import annotations

import datetime
import logging
import os
import threading
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from sagepro_agent.core import keys, reads, rules
from sagepro_agent.core.errors import GatewayError, locked, unavailable
from sagepro_agent.core.money import ZERO
from sagepro_agent.core.validation import ReceiptRequest, check_idempotency_key
from sagepro_agent.journal import db as jdb
from sagepro_agent.journal.db import Change, Entry, Journal
from sagepro_agent.store.base import CasMiss, Locked, Row, Store, Table, Unavailable

log = logging.getLogger("sagepro_agent.receipts")

COUNTER_WRAP = 999_999
RECEIPT_TABLES = ("counters", "receipts", "receipt_lines", "invoices", "customers")
CAS_ATTEMPTS = 10

_fault_counts: Counter[str] = Counter()


def fault_point(step: str) -> None:
    """`AGENT_FAULT=exit_after:S4:2` exits right after the 2nd S4 write."""
    specs = [
        item.strip()
        for item in os.environ.get("AGENT_FAULT", "").split(",")
        if item.strip().startswith("exit_after:")
    ]
    if not specs:
        return
    parts = specs[0].split(":")
    if parts[1] != step:
        return
    _fault_counts[step] += 1
    wanted = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
    if _fault_counts[step] == wanted:
        logging.shutdown()
        os._exit(137)


def pad(table: Table, name: str, value: str) -> str:
    """A C value padded to its field's width (blank = spaces), as FoxPro stores it."""
    spec = table.fields.get(name)
    return value.ljust(spec.length) if spec and spec.type == "C" else value


def is_blank(value: Any) -> bool:
    return not reads.text(value).strip()


class NeedsReview(Exception):
    """A step found the row changed by someone else: an operator must look."""


class ReceiptPoster:
    """Posts receipts for every company of one store, through one journal."""

    def __init__(
        self,
        store: Store,
        journal: Journal,
        *,
        user: str,
        time_zone: ZoneInfo,
        clock: Callable[[], datetime.datetime],
        before_write: Callable[[str, tuple[str, ...]], None] = lambda c, t: None,
    ) -> None:
        self.store = store
        self.journal = journal
        self.user = user
        self.tz = time_zone
        self.clock = clock
        self.before_write = before_write
        self._locks: dict[str, threading.Lock] = {}
        self._locks_guard = threading.Lock()

    def company_lock(self, compid: str) -> threading.Lock:
        with self._locks_guard:
            return self._locks.setdefault(compid, threading.Lock())

    # --- entry point -------------------------------------------------------------------

    def post(self, company: Row, raw_key: str | None, body: Any) -> tuple[int, dict]:
        """Answer (status, receipt JSON) or raise GatewayError."""
        key = check_idempotency_key(raw_key)
        request = ReceiptRequest.parse(body)
        fingerprint = request.fingerprint()
        compid = reads.text(company["COMPID"]).strip()
        self.before_write(compid, RECEIPT_TABLES)
        with self.company_lock(compid):
            entry = self.journal.active_entry(compid, key)
            if entry is not None and entry.state == jdb.DONE:
                header = self._header(compid, entry.receipt_no or "")
                if header is None:
                    # A Sage user deleted the receipt: its key is free again.
                    self.journal.advance(
                        entry, jdb.VOID, f"receipt {entry.receipt_no} no longer live"
                    )
                    entry = None
                elif entry.req_hash == fingerprint:
                    return 200, reads.receipt_json(self.store, compid, header, key)
            if entry is not None:
                if entry.req_hash != fingerprint:
                    number = (entry.receipt_no or "").strip() or "not numbered yet"
                    raise GatewayError(
                        409,
                        "IDEMPOTENCY_CONFLICT",
                        f"Idempotency-Key {key!r} was used for a different request "
                        f"(receipt {number})",
                    )
                if entry.state == jdb.NEEDS_REVIEW:
                    raise review_error(entry)
                return self.run(entry)
            self._refuse_duplicate_reference(compid, request)
            plan = self.plan(company, compid, request)
            entry = self.journal.insert(
                compid, key, fingerprint, request.reference, plan
            )
            return self.run(entry)

    def _refuse_duplicate_reference(self, compid: str, request: ReceiptRequest) -> None:
        """One live receipt per reference: in Sage, or still being written by us."""
        table = self.store.table(compid, "receipts")
        for row in table.find({"REFNO": pad(table, "REFNO", request.reference)}):
            raise GatewayError(
                409,
                "DUPLICATE_RECEIPT",
                f"reference {request.reference!r} is already on receipt "
                f"{reads.text(row['RCPTNO']).strip()}",
            )
        for entry in self.journal.entries_with_reference(compid, request.reference):
            if entry.state != jdb.DONE:
                number = (entry.receipt_no or "").strip() or "(not numbered yet)"
                raise GatewayError(
                    409,
                    "DUPLICATE_RECEIPT",
                    f"reference {request.reference!r} is already on receipt {number}",
                )

    def plan(
        self, company: Row, compid: str, request: ReceiptRequest
    ) -> dict[str, Any]:
        """Every rule, reads only; the plan the steps carry out."""
        customer = rules.check_customer(self.store, compid, request)
        rules.check_period(self.store, company, request.date)
        account = rules.check_gl_account(self.store, compid, request.gl_account)
        rules.check_over_application(request)
        applications = rules.plan_applications(self.store, compid, request)
        refusal = rules.object_lock(customer, f"customer {request.custno.strip()}")
        for invoice, _, _ in applications:
            refusal = refusal or rules.object_lock(
                invoice, f"invoice {reads.text(invoice['INVNO']).strip()}"
            )
        if refusal is not None:
            raise refusal
        applied = sum((a for _, _, a in applications), ZERO)
        created = self.clock().astimezone(datetime.UTC).replace(tzinfo=None)
        created = created.replace(microsecond=created.microsecond // 1000 * 1000)
        return {
            "custno": request.custno,
            "date": request.date.isoformat(),
            "amount": str(request.amount),
            "method": request.method,
            "reference": request.reference,
            "gl_account": account,
            "created": created.isoformat(),
            "applied": str(applied),
            "unapplied": str(request.amount - applied),
            "apps": [
                {
                    "invno": reads.text(invoice["INVNO"]),
                    "requested": str(requested),
                    "applied": str(applied_amount),
                    "paid_before": str(reads.num(invoice["PAIDAMT"])),
                    "ref": invoice.ref,
                }
                for invoice, requested, applied_amount in applications
            ],
        }

    # --- the steps ---------------------------------------------------------------------

    def run(self, entry: Entry) -> tuple[int, dict]:
        """Carry the entry to DONE; 423/503 keep its state for the next attempt."""
        try:
            return 201, self._steps(entry)
        except NeedsReview as exc:
            self.journal.advance(entry, jdb.NEEDS_REVIEW, str(exc))
            log.error("receipt %s needs review: %s", entry.idem_key, exc)
            raise review_error(entry) from exc
        except Locked as exc:
            raise locked(str(exc)) from exc
        except Unavailable as exc:
            raise unavailable(str(exc)) from exc

    def _steps(self, entry: Entry) -> dict[str, Any]:
        compid, plan = entry.company, entry.plan
        receipts = self.store.table(compid, "receipts")
        if entry.state in (jdb.PLANNED, jdb.NUMBERED):
            adopted = self._own_header(receipts, plan["reference"])
            if adopted is not None:
                self.journal.advance(
                    entry,
                    jdb.HEADER_WRITTEN,
                    f"adopted header record {adopted.ref}",
                    receipt_no=reads.text(adopted["RCPTNO"]),
                )
        if entry.state == jdb.PLANNED:
            number = self._take_number(compid)
            fault_point("S1")
            self.journal.advance(
                entry, jdb.NUMBERED, f"took {number.strip()}", receipt_no=number
            )
        if entry.state == jdb.NUMBERED:
            self._write_header(receipts, entry)
            fault_point("S2")
            self.journal.advance(entry, jdb.HEADER_WRITTEN, "header appended")
        if entry.state == jdb.HEADER_WRITTEN:
            self._write_lines(entry)
            self.journal.advance(entry, jdb.LINES_WRITTEN, f"{len(plan['apps'])} lines")
        if entry.state == jdb.LINES_WRITTEN:
            self._apply_invoices(entry)
            self.journal.advance(entry, jdb.INVOICES_APPLIED, "invoices applied")
        if entry.state == jdb.INVOICES_APPLIED:
            total = self._update_customer(entry)
            fault_point("S5")
            self.journal.advance(entry, jdb.CUSTOMER_UPDATED, f"balance {total}")
        if entry.state == jdb.CUSTOMER_UPDATED:
            self._clear_markers(entry)
            fault_point("S6")
            return self._publish(entry)
        if entry.state == jdb.DONE and entry.response is not None:
            return entry.response
        raise AssertionError(f"journal entry {entry.id} in state {entry.state}")

    def _header(self, compid: str, receipt_no: str) -> Row | None:
        return reads.receipt_row(self.store, compid, receipt_no) if receipt_no else None

    def _own_header(self, receipts: Table, reference: str) -> Row | None:
        for row in receipts.find({"REFNO": pad(receipts, "REFNO", reference)}):
            if self._is_mine(row):
                return row
        return None

    def _is_mine(self, row: Row) -> bool:
        return (
            reads.text(row.get("LCKSTAT")).strip() == "L"
            and reads.text(row.get("LCKUSER")).strip() == self.user.strip()
        )

    def _take_number(self, compid: str) -> str:
        """S1: the next free receipt number from the company's `SYSDATA` counter."""
        counters = self.store.table(compid, "counters")
        receipts = self.store.table(compid, "receipts")
        where = {
            "SYSID": pad(counters, "SYSID", f"AR{compid}"),
            "COUNTER": pad(counters, "COUNTER", "RCPTNO"),
        }
        for _ in range(CAS_ATTEMPTS):
            found = counters.find(where)
            if not found:
                counters.append(
                    {**where, "NEXTNO": pad(counters, "NEXTNO", "1".rjust(10))}
                )
                continue
            row = found[0]
            raw = reads.text(row["NEXTNO"])
            try:
                number = int(raw.strip() or "1")
            except ValueError as exc:
                raise Unavailable(
                    f"SYSDATA counter AR{compid}/RCPTNO holds {raw!r}, not a number"
                ) from exc
            for _ in range(COUNTER_WRAP):
                candidate = number
                number = 1 if candidate >= COUNTER_WRAP else candidate + 1
                used = receipts.find(
                    {"RCPTNO": keys.receipt_number(candidate)}, include_deleted=True
                )
                if not used:
                    break
            else:
                raise Unavailable(
                    f"receipt counter of company {compid} has no free numbers"
                )
            stored = row["NEXTNO"]
            text = (
                str(number).rjust(len(stored))
                if stored.startswith(" ")
                else str(number)
            )
            try:
                counters.update(
                    row.ref,
                    {"NEXTNO": pad(counters, "NEXTNO", text)},
                    expect={**where, "NEXTNO": stored},
                )
            except CasMiss:
                continue  # someone else took a number: read the counter again
            return keys.receipt_number(candidate)
        raise Locked(f"the receipt counter of company {compid} keeps changing")

    def _write_header(self, receipts: Table, entry: Entry) -> None:
        plan = entry.plan
        created = datetime.datetime.fromisoformat(plan["created"])
        local = created.replace(tzinfo=datetime.UTC).astimezone(self.tz)
        receipts.append(
            {
                "RCPTNO": entry.receipt_no,
                "CUSTNO": plan["custno"],
                "DTEPAID": datetime.date.fromisoformat(plan["date"]),
                "AMOUNT": Decimal(plan["amount"]),
                "APPLIED": Decimal(plan["applied"]),
                "UNAPPLIED": Decimal(plan["unapplied"]),
                "PAYMETH": pad(receipts, "PAYMETH", plan["method"]),
                "REFNO": pad(receipts, "REFNO", plan["reference"]),
                "GLACNT": pad(receipts, "GLACNT", plan["gl_account"]),
                "CREATED": created,
                "ADDUSER": pad(receipts, "ADDUSER", self.user),
                "ADDDATE": local.date(),
                "ADDTIME": local.strftime("%H:%M:%S"),
                "LCKSTAT": "L",
                "LCKUSER": pad(receipts, "LCKUSER", self.user),
            }
        )

    def _write_lines(self, entry: Entry) -> None:
        plan = entry.plan
        lines = self.store.table(entry.company, "receipt_lines")
        created = datetime.datetime.fromisoformat(plan["created"])
        local = created.replace(tzinfo=datetime.UTC).astimezone(self.tz)
        for app in plan["apps"]:
            if lines.find({"RCPTNO": entry.receipt_no, "INVNO": app["invno"]}):
                continue
            lines.append(
                {
                    "RCPTNO": entry.receipt_no,
                    "INVNO": app["invno"],
                    "CUSTNO": plan["custno"],
                    "PAIDAMT": Decimal(app["applied"]),
                    "REQAMT": Decimal(app["requested"]),
                    "DTEPAID": datetime.date.fromisoformat(plan["date"]),
                    "ADDUSER": pad(lines, "ADDUSER", self.user),
                    "ADDDATE": local.date(),
                    "ADDTIME": local.strftime("%H:%M:%S"),
                    "LCKSTAT": "L",
                    "LCKUSER": pad(lines, "LCKUSER", self.user),
                }
            )
            fault_point("S3")

    def _invoice(self, table: Table, app: dict[str, Any], custno: str) -> Row | None:
        rows = [r for r in table.find({"INVNO": app["invno"]}) if r["CUSTNO"] == custno]
        for row in rows:
            if row.ref == app.get("ref"):
                return row
        return rows[-1] if rows else None

    def _apply_invoices(self, entry: Entry) -> None:
        """S4, in invno order, progress journalled per invoice."""
        table = self.store.table(entry.company, "invoices")
        custno = entry.plan["custno"]
        done = entry.progress.setdefault("applied", [])
        for app in sorted(entry.plan["apps"], key=lambda a: a["invno"]):
            if app["invno"] in done:
                continue
            name = app["invno"].strip()
            before, applied = Decimal(app["paid_before"]), Decimal(app["applied"])
            for _ in range(CAS_ATTEMPTS):
                row = self._invoice(table, app, custno)
                if row is None:
                    raise NeedsReview(
                        f"invoice {name} is no longer a live invoice of customer "
                        f"{custno.strip()}"
                    )
                paid = reads.num(row["PAIDAMT"])
                if self._is_mine(row) and paid == before + applied:
                    break  # written before a crash: our marker says so
                if not is_blank(row.get("LCKSTAT")) and not self._is_mine(row):
                    raise Locked(
                        f"invoice {name} is in use by "
                        f"{reads.text(row.get('LCKUSER')).strip() or 'another user'}"
                    )
                if paid != before or self._is_mine(row):
                    raise NeedsReview(
                        f"invoice {name} PAIDAMT is {paid}, the receipt planned on "
                        f"{before} (+{applied}); someone changed it meanwhile"
                    )
                new_paid = before + applied
                try:
                    table.update(
                        row.ref,
                        {
                            "PAIDAMT": new_paid,
                            "BALANCE": reads.num(row["INVAMT"]) - new_paid,
                            "LCKSTAT": "L",
                            "LCKUSER": pad(table, "LCKUSER", self.user),
                        },
                        expect={
                            "INVNO": app["invno"],
                            "PAIDAMT": before,
                            "LCKSTAT": pad(table, "LCKSTAT", ""),
                        },
                    )
                except CasMiss:
                    continue  # read it again and decide
                fault_point("S4")
                break
            else:
                raise NeedsReview(f"invoice {name} kept changing while being paid")
            done.append(app["invno"])
            self.journal.advance(entry, jdb.LINES_WRITTEN, f"applied {name}")

    def _update_customer(self, entry: Entry) -> Decimal:
        """S5: balance = sum of the live invoices' balances; last payment."""
        plan = entry.plan
        customers = self.store.table(entry.company, "customers")
        invoices = self.store.table(entry.company, "invoices")
        for _ in range(CAS_ATTEMPTS):
            found = customers.find({"CUSTNO": plan["custno"]})
            if not found:
                raise NeedsReview(
                    f"customer {plan['custno'].strip()} was deleted while its receipt "
                    "was written"
                )
            total = sum(
                (
                    reads.num(r["BALANCE"])
                    for r in invoices.find({"CUSTNO": plan["custno"]})
                ),
                ZERO,
            )
            try:
                customers.update(
                    found[0].ref,
                    {
                        "BALANCE": total,
                        "LASTPAY": datetime.date.fromisoformat(plan["date"]),
                        "LPYMT": Decimal(plan["amount"]),
                    },
                    expect={"CUSTNO": plan["custno"]},
                )
            except CasMiss:
                continue
            return total
        raise NeedsReview(f"customer {plan['custno'].strip()} kept changing")

    def _clear_markers(self, entry: Entry) -> None:
        """S6, first half: remove our in-progress markers (idempotent)."""
        clear_lock = {"LCKSTAT": "", "LCKUSER": ""}
        receipts = self.store.table(entry.company, "receipts")
        for row in receipts.find({"RCPTNO": entry.receipt_no}):
            if self._is_mine(row):
                receipts.update(
                    row.ref,
                    {k: pad(receipts, k, v) for k, v in clear_lock.items()},
                    expect={"RCPTNO": row["RCPTNO"], "LCKUSER": row["LCKUSER"]},
                )
        lines = self.store.table(entry.company, "receipt_lines")
        for row in lines.find({"RCPTNO": entry.receipt_no}):
            if self._is_mine(row):
                lines.update(
                    row.ref,
                    {k: pad(lines, k, v) for k, v in clear_lock.items()},
                    expect={"RCPTNO": row["RCPTNO"], "INVNO": row["INVNO"]},
                )
        invoices = self.store.table(entry.company, "invoices")
        for app in entry.plan["apps"]:
            for row in invoices.find({"INVNO": app["invno"]}):
                if self._is_mine(row):
                    invoices.update(
                        row.ref,
                        {k: pad(invoices, k, v) for k, v in clear_lock.items()},
                        expect={"INVNO": row["INVNO"], "LCKUSER": row["LCKUSER"]},
                    )

    def _publish(self, entry: Entry) -> dict[str, Any]:
        """S6, second half: DONE, the response and the changed rows in one commit."""
        compid, plan = entry.company, entry.plan
        header = self._header(compid, entry.receipt_no or "")
        if header is None:
            raise NeedsReview(
                f"receipt {entry.receipt_no} vanished before it was published"
            )
        response = reads.receipt_json(self.store, compid, header, entry.idem_key)
        changes = [
            Change(
                "invoices",
                reads.text(row["INVNO"]).strip(),
                reads.invoice_json(row),
                False,
            )
            for app in plan["apps"]
            for row in self.store.table(compid, "invoices").find(
                {"INVNO": app["invno"]}
            )[-1:]
        ]
        customer = reads.find_customer(self.store, compid, plan["custno"])
        if customer is not None:
            changes.append(
                Change(
                    "customers",
                    plan["custno"].strip(),
                    reads.customer_json(customer, compid),
                    False,
                )
            )
        self.journal.advance(
            entry, jdb.DONE, "published", response=response, changes=changes
        )
        return response

    # --- start-up -----------------------------------------------------------------------

    def recover(self) -> list[tuple[str, str, str]]:
        """Finish or flag every unfinished entry: (company, key, outcome)."""
        outcomes = []
        for listed in self.journal.unfinished():
            with self.company_lock(listed.company):
                # A request may have finished (or flagged) this entry while we waited
                # for the lock: run only what is still unfinished, never a stale copy.
                entry = self.journal.entry(listed.id)
                if entry.state not in jdb.IN_PROGRESS:
                    continue
                try:
                    self.run(entry)
                    outcome = "done"
                except GatewayError as exc:
                    outcome = f"{exc.status} {exc.code}: {exc.detail}"
                    log.warning("recovery of %s: %s", entry.idem_key, outcome)
            outcomes.append((entry.company, entry.idem_key, outcome))
        return outcomes


def review_error(entry: Entry) -> GatewayError:
    return unavailable(
        f"the receipt for Idempotency-Key {entry.idem_key!r} needs an operator's review "
        f"before it can be answered ({entry.detail}); nothing more will be written for "
        "it until someone looks at the journal entry"
    )
