"""The gateway core: one contract request in, one response out (`wire.Request` ->
`wire.Response`), whatever transport carried it (direct HTTP or the relay).

Order, as in the sandbox's `gateway_view`: (the transport has authenticated the
caller) route, method (405), company (`Sage-Company`, 404), then the resource. Store
failures answer 423 (`Locked`) or 503 (`Unavailable`), both with `Retry-After`; any
other exception is logged and answered 503: the agent never crashes on input and never
answers another 5xx, except 501 `NOT_SUPPORTED_AT_SITE` for the document kinds of the
contract (credit memos, reversals, applications, GL batches, customer writes, sales
orders, items, locations) that no site mapping covers yet.
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol
from zoneinfo import ZoneInfo

from sagepro_agent.core import batch, changes, keys, listing, reads
from sagepro_agent.core.errors import (
    GatewayError,
    ValidationError,
    locked,
    not_supported,
    unavailable,
)
from sagepro_agent.core.receipts import ReceiptPoster
from sagepro_agent.core.validation import read_json
from sagepro_agent.journal import scanner
from sagepro_agent.journal.db import Journal
from sagepro_agent.store.base import Locked, Row, Store, Unavailable
from sagepro_agent.wire import Request, Response

log = logging.getLogger("sagepro_agent.gateway")

MAX_RECEIPT_RESULTS = 500


class Mapping(Protocol):
    """What the core needs of the site mapping (`sagepro_agent.config.SiteMapping`)."""

    companies: list[str]
    agent_user: str
    time_zone: ZoneInfo


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


WriteGuard = Callable[[str, tuple[str, ...]], None]


class Gateway:
    def __init__(
        self,
        mapping: Mapping,
        store: Store,
        journal: Journal,
        *,
        clock: Callable[[], datetime.datetime] = utc_now,
        write_guard: WriteGuard | None = None,
    ) -> None:
        self.mapping = mapping
        self.store = store
        self.journal = journal
        self.clock = clock
        self.write_guard: WriteGuard = write_guard or (lambda compid, tables: None)
        self.receipts = ReceiptPoster(
            store,
            journal,
            user=mapping.agent_user,
            time_zone=mapping.time_zone,
            clock=clock,
            before_write=lambda compid, tables: self.write_guard(compid, tables),
        )
        self._scanned: set[str] = set()
        self._scan_lock = threading.Lock()

    # --- entry point -------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        try:
            return self._dispatch(request)
        except GatewayError as exc:
            return exc.response()
        except Locked as exc:
            return locked(str(exc) or "a record is locked by another user").response()
        except Unavailable as exc:
            return unavailable(str(exc) or "Sage Pro is not available").response()
        except Exception:
            log.exception(
                "unexpected error answering %s %s", request.method, request.path
            )
            return unavailable(
                "the agent met an unexpected error; it is logged on the agent"
            ).response()

    def _dispatch(self, request: Request) -> Response:
        route = self._route(request.path)
        if route is None:
            return Response(
                404, {"code": "NOT_FOUND", "detail": f"no resource {request.path}"}
            )
        view, methods, args = route
        if request.method not in methods:
            return Response(
                405,
                {
                    "code": "METHOD_NOT_ALLOWED",
                    "detail": f"{request.method} is not allowed",
                },
                {"Allow": ", ".join(methods)},
            )
        company = reads.get_company(
            self.store, request.header("Sage-Company"), self.mapping.companies
        )
        return view(request, company, *args)

    def _route(
        self, path: str
    ) -> tuple[Callable[..., Response], tuple[str, ...], tuple[str, ...]] | None:
        parts = path.strip("/").split("/") if path.strip("/") else []
        if not path.startswith("/"):
            return None
        if path.startswith("/invoices/") and len(path) > len("/invoices/"):
            return self.invoice_detail, ("GET",), (path[len("/invoices/") :],)
        if path.endswith("/") or any(p == "" for p in parts):
            return None
        match parts:
            case ["customers"]:
                return self.customer_changes, ("GET",), ()
            case ["customers", custno]:
                return self.customer_detail, ("GET", "PUT"), (custno,)
            case ["customers", custno, "open-items"]:
                return self.customer_open_items, ("GET",), (custno,)
            case ["invoices"]:
                return self.invoice_collection, ("GET",), ()
            case ["cash-receipts"]:
                return self.receipt_collection, ("GET", "POST"), ()
            case ["cash-receipts", "batch"]:
                return self.receipt_batch, ("POST",), ()
            case ["cash-receipts", receipt_no]:
                return self.receipt_detail, ("GET",), (receipt_no,)
            case ["gl-accounts"]:
                return self.gl_account_collection, ("GET",), ()
            case ["gl-accounts", glacnt]:
                return self.gl_account_detail, ("GET",), (glacnt,)
            case ["periods"]:
                return self.period_collection, ("GET",), ()
        return self._unsupported_route(parts)

    # Paths of the contract (sections 4.7-4.10) whose documents need Sage Pro tables
    # no site mapping covers yet: (path shape, methods, what they are).
    UNSUPPORTED = (
        (("credit-memos",), ("GET", "POST"), "Credit memos"),
        (("credit-memos", "*"), ("GET",), "Credit memos"),
        (("cash-receipts", "*", "reversal"), ("POST",), "Receipt reversals"),
        (
            ("cash-receipts", "*", "applications"),
            ("POST",),
            "Applications of unapplied cash",
        ),
        (("gl-batches",), ("GET", "POST"), "GL batches"),
        (("gl-batches", "*"), ("GET",), "GL batches"),
        (("sales-orders",), ("GET", "POST"), "Sales orders"),
        (("sales-orders", "*"), ("GET",), "Sales orders"),
        (("items",), ("GET",), "Items"),
        (("items", "*"), ("GET",), "Items"),
        (("locations",), ("GET",), "Locations"),
    )

    def _unsupported_route(
        self, parts: list[str]
    ) -> tuple[Callable[..., Response], tuple[str, ...], tuple[str, ...]] | None:
        for shape, methods, what in self.UNSUPPORTED:
            if len(shape) == len(parts) and all(
                s in ("*", p) for s, p in zip(shape, parts, strict=True)
            ):

                def refuse(
                    request: Request, company: Row, what: str = what
                ) -> Response:
                    raise not_supported(what)

                return refuse, methods, ()
        return None

    @staticmethod
    def compid(company: Row) -> str:
        return reads.text(company["COMPID"]).strip()

    # --- customers and invoices ----------------------------------------------------------

    def customer_detail(self, request: Request, company: Row, custno: str) -> Response:
        if request.method == "PUT":
            raise not_supported("Customer writes")
        compid = self.compid(company)
        return ok(
            reads.customer_json(reads.get_customer(self.store, compid, custno), compid)
        )

    def customer_open_items(
        self, request: Request, company: Row, custno: str
    ) -> Response:
        compid = self.compid(company)
        customer = reads.get_customer(self.store, compid, custno)
        rows = reads.search_invoices(self.store, compid, "open", customer["CUSTNO"])
        return ok({"results": [reads.invoice_json(r) for r in rows]})

    def customer_changes(self, request: Request, company: Row) -> Response:
        if "email" in request.params():
            raise not_supported("Customer searches by e-mail")
        compid = self.compid(company)
        self.ensure_scanned(compid)
        return ok(
            changes.change_page(self.journal, compid, "customers", request.params())
        )

    def invoice_collection(self, request: Request, company: Row) -> Response:
        compid = self.compid(company)
        params = request.params()
        if "changed_since" in params:
            self.ensure_scanned(compid)
            return ok(changes.change_page(self.journal, compid, "invoices", params))
        status = params.get("status", "all").lower()
        if status not in ("open", "closed", "all"):
            raise ValidationError({"status": ["must be open, closed or all"]})
        custno = None
        if params.get("custno"):
            custno = reads.get_customer(self.store, compid, params["custno"])["CUSTNO"]
        rows = reads.search_invoices(self.store, compid, status, custno)
        return ok({"results": [reads.invoice_json(r) for r in rows]})

    def invoice_detail(self, request: Request, company: Row, invno: str) -> Response:
        return ok(
            reads.invoice_json(
                reads.get_invoice(self.store, self.compid(company), invno)
            )
        )

    # --- receipts ------------------------------------------------------------------------

    def receipt_collection(self, request: Request, company: Row) -> Response:
        compid = self.compid(company)
        params = request.params()
        if request.method == "POST":
            body = read_json(request.body)
            status, receipt = self.receipts.post(
                company, request.header("Idempotency-Key") or "", body
            )
            return Response(status, receipt)
        if any(p in params for p in listing.LISTING_PARAMS):
            return ok(listing.receipt_listing(self.store, self.journal, compid, params))
        return ok({"results": self.search_receipts(compid, params)})

    def search_receipts(
        self, compid: str, params: dict[str, str]
    ) -> list[dict[str, Any]]:
        """Contract 4.4: reference, idempotency_key, custno (exact after trimming)."""
        table = self.store.table(compid, "receipts")
        if "reference" in params:
            reference = params["reference"].strip()
            rows = (
                table.find({"REFNO": reference.ljust(40)})
                if len(reference) <= 40
                else []
            )
        else:
            rows = list(table.rows())
        if "idempotency_key" in params:
            wanted = params["idempotency_key"].strip()
            if wanted:
                numbers = set(self.journal.receipts_for_key(compid, wanted))
                rows = [r for r in rows if r["RCPTNO"] in numbers]
            else:  # receipts posted without a key: those keyed in Sage itself
                rows = [
                    r
                    for r in rows
                    if not self.journal.key_for_receipt(compid, r["RCPTNO"])
                ]
        if params.get("custno"):
            try:
                custno = keys.pad_custno(params["custno"])
            except keys.InvalidKeyError:
                custno = None
            rows = [r for r in rows if r["CUSTNO"] == custno]
        rows.sort(key=lambda r: r["RCPTNO"], reverse=True)
        return [
            reads.receipt_json(
                self.store, compid, r, self.journal.key_for_receipt(compid, r["RCPTNO"])
            )
            for r in rows[:MAX_RECEIPT_RESULTS]
        ]

    def receipt_detail(
        self, request: Request, company: Row, receipt_no: str
    ) -> Response:
        compid = self.compid(company)
        try:
            key = keys.pad_receipt_no(receipt_no)
        except keys.InvalidKeyError:
            key = ""
        row = reads.receipt_row(self.store, compid, key) if key else None
        if row is None:
            raise GatewayError(
                404, "RECEIPT_NOT_FOUND", f"no receipt {receipt_no.strip()!r}"
            )
        return ok(
            reads.receipt_json(
                self.store, compid, row, self.journal.key_for_receipt(compid, key)
            )
        )

    def receipt_batch(self, request: Request, company: Row) -> Response:
        body = read_json(request.body)
        batch.parse_batch(body)  # a malformed batch is a 400 before anything else
        self.write_guard(self.compid(company), ())
        return ok(batch.post_batch(self.receipts, company, body))

    # --- accounts and periods --------------------------------------------------------------

    def gl_account_collection(self, request: Request, company: Row) -> Response:
        rows = self.store.table(self.compid(company), "gl_accounts").rows()
        ordered = sorted(rows, key=lambda r: (r["GLACNT"], r.ref))
        return ok({"results": [reads.gl_account_json(r) for r in ordered]})

    def gl_account_detail(
        self, request: Request, company: Row, glacnt: str
    ) -> Response:
        row = reads.get_gl_account(self.store, self.compid(company), glacnt)
        return ok(reads.gl_account_json(row))

    def period_collection(self, request: Request, company: Row) -> Response:
        compid = self.compid(company)
        current = reads.current_yearprd(company)
        return ok(
            {
                "results": [
                    reads.period_json(p, current)
                    for p in reads.periods(self.store, compid)
                ]
            }
        )

    # --- the change-journal scanner ----------------------------------------------------------

    def ensure_scanned(self, compid: str) -> None:
        """The first feed request after start scans first, so the feed is complete."""
        if compid not in self._scanned:
            self.scan(compid)

    def scan(self, compid: str) -> dict[str, int]:
        # Under the company's receipt lock: a posting's own journalling and a scan
        # never interleave (the scan would otherwise journal a half-written state).
        with self._scan_lock, self.receipts.company_lock(compid):
            counts = scanner.scan(self.store, self.journal, compid)
            self._scanned.add(compid)
        return counts


def ok(body: Any) -> Response:
    return Response(200, body)
