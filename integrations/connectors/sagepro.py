"""Client for the Sage Pro gateway (our own REST contract, docs/sagepro-gateway.md).

Money arrives as decimal strings and leaves this module as `Decimal`; dates arrive as
ISO strings and leave as `datetime.date`. Outgoing money is sent as a 2-place string;
an amount with more places is refused here rather than rounded, because rounding is
the GL rules' decision, not the transport's.
"""

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from .base import (
    DEFAULT_TIMEOUT,
    ConnectorError,
    HttpConnector,
    NotFoundError,
    decode_json,
)
from .sagepro_credit import CreditCalls
from .sagepro_orders import OrderCalls
from .sagevalues import CENT, convert, from_date, from_money, segment, to_money

__all__ = ["CENT", "convert", "from_date", "from_money", "segment", "to_money"]

# Items per `POST /cash-receipts/batch` (docs/sagepro-gateway.md §4.3a).
BATCH_MAX = 100
RECEIPTS_PATH = "/cash-receipts"
BATCH_PATH = "/cash-receipts/batch"

CUSTOMER_MONEY = ("balance", "credit_limit", "last_payment_amount")
CUSTOMER_DATES = ("last_payment_date",)
INVOICE_MONEY = ("invamt", "paidamt", "balance")
INVOICE_DATES = ("invdte",)
RECEIPT_MONEY = ("amount", "applied_amount", "unapplied_amount")
PERIOD_DATES = ("bdate", "edate")


@dataclass(frozen=True)
class Application:
    """The part of a receipt applied to one invoice."""

    invno: str
    amount: Decimal


@dataclass(frozen=True)
class CashReceipt:
    """One cash receipt for Sage Pro: the portal's only shape of it.

    Money is `Decimal` and the date a `date` (None only while a document our own
    validation stopped is missing them). `as_payload()` is the JSON stored on
    `Posting.payload`; `from_payload()` reads a stored one back.
    """

    custno: str
    date: datetime.date | None
    amount: Decimal | None
    method: str
    reference: str
    applications: tuple[Application, ...] = ()
    gl_account: str = ""

    @property
    def invno(self) -> str:
        """The first invoice the receipt is applied to ("" on account)."""
        return self.applications[0].invno if self.applications else ""

    @property
    def applied(self) -> Decimal:
        return sum((a.amount for a in self.applications), Decimal("0"))

    @property
    def unapplied(self) -> Decimal:
        """What stays on the customer's account as unapplied cash."""
        return (self.amount or Decimal("0")) - self.applied

    def as_payload(self) -> dict[str, Any]:
        """The receipt as stored on `Posting.payload` (strings, as the gateway reads)."""
        payload: dict[str, Any] = {
            "custno": self.custno,
            "date": self.date.isoformat() if self.date else "",
            "amount": str(self.amount) if self.amount is not None else "",
            "method": self.method,
            "reference": self.reference,
            "applications": [
                {"invno": a.invno, "amount": str(a.amount)} for a in self.applications
            ],
        }
        if self.gl_account:
            payload["gl_account"] = self.gl_account
        return payload

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> "CashReceipt":
        """A stored payload read back (an empty or malformed value reads as None)."""
        return cls(
            custno=str(payload.get("custno") or ""),
            date=_stored_date(payload.get("date")),
            amount=_stored_money(payload.get("amount")),
            method=str(payload.get("method") or ""),
            reference=str(payload.get("reference") or ""),
            applications=tuple(
                Application(
                    str(a.get("invno") or ""),
                    _stored_money(a.get("amount")) or Decimal("0"),
                )
                for a in payload.get("applications") or []
            ),
            gl_account=str(payload.get("gl_account") or ""),
        )

    def body(self) -> dict[str, Any]:
        """The gateway's JSON body: money as exactly 2 places (more is refused)."""
        if self.date is None or self.amount is None:
            raise ValueError("a cash receipt needs a date and an amount")
        body: dict[str, Any] = {
            "custno": self.custno,
            "date": self.date.isoformat(),
            "amount": to_money(self.amount),
            "method": self.method,
            "reference": self.reference,
            "applications": [
                {"invno": a.invno, "amount": to_money(a.amount)}
                for a in self.applications
            ],
        }
        if self.gl_account:
            body["gl_account"] = self.gl_account.strip()
        return body


@dataclass(frozen=True)
class BatchItemResult:
    """One item of a batch post: the receipt (as `post_cash_receipt` returns it, with
    `replayed`) or the error the single call would have raised, never both."""

    idempotency_key: str
    receipt: dict[str, Any] | None
    error: ConnectorError | None


@dataclass(frozen=True)
class ChangePage:
    """One page of a change feed; pass `next_cursor` back for the changes after it."""

    results: list[dict[str, Any]]
    next_cursor: str
    has_more: bool


def _stored_date(value: Any) -> datetime.date | None:
    try:
        return datetime.date.fromisoformat(str(value).strip()) if value else None
    except ValueError:
        return None


def _stored_money(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value).strip())
    except InvalidOperation:
        return None


class SageProConnector(CreditCalls, OrderCalls, HttpConnector):
    """Talks to one Sage Pro company through the gateway."""

    system = "Sage Pro gateway"

    def __init__(
        self,
        base_url: str,
        api_key: str,
        company_id: str = "01",
        *,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        super().__init__(base_url, timeout=timeout)
        self.company_id = company_id
        # Kept only in the session headers, which are never logged.
        self.session.headers.update(
            {
                "Authorization": f"Bearer {api_key}",
                "Sage-Company": company_id,
                "Accept": "application/json",
            }
        )

    def __repr__(self) -> str:
        return f"SageProConnector({self.base_url!r}, company_id={self.company_id!r})"

    def error_from_body(
        self, method: str, path: str, status: int, body: Any
    ) -> ConnectorError:
        error = super().error_from_body(method, path, status, body)
        # A lock is always worth retrying, even if a proxy stripped the body.
        if status == 423:
            error.transient = True
            error.code = error.code or "RECORD_LOCKED"
        return error

    # --- customers and invoices -------------------------------------------------

    def get_customer(self, custno: str) -> dict[str, Any]:
        """Read a customer; raise NotFoundError when Sage Pro has no such customer."""
        data = self.call("GET", f"/customers/{segment(custno)}")
        return convert(data, CUSTOMER_MONEY, CUSTOMER_DATES)

    def list_open_invoices(self, custno: str) -> list[dict[str, Any]]:
        """Open invoices and credit memos (balance != 0) of one customer."""
        data = self.call(
            "GET", "/invoices", params={"custno": custno, "status": "open"}
        )
        return [self._invoice(item) for item in data["results"]]

    def get_invoice(self, invno: str) -> dict[str, Any] | None:
        """Read an invoice, or None when it does not exist (or is deleted)."""
        try:
            data = self.call("GET", f"/invoices/{segment(invno)}")
        except NotFoundError as exc:
            if exc.code == "INVOICE_NOT_FOUND":
                return None
            raise
        return self._invoice(data)

    # --- cash receipts -----------------------------------------------------------

    def post_cash_receipt(
        self, idempotency_key: str, receipt: CashReceipt
    ) -> dict[str, Any]:
        """Post a receipt; safe to repeat with the same key and the same receipt.

        `receipt.gl_account`, when given, is the GL account the cash is booked to;
        the gateway refuses an unknown or inactive one (422).

        Returns the gateway's receipt with `replayed=True` when it answered 200 for a
        key it had already seen (nothing new was written). A timeout raises a
        transient ConnectorError with `outcome_unknown=True`: look the receipt up with
        `find_cash_receipts(idempotency_key=...)` or repeat the post with the same key.
        """
        body = receipt.body()
        response = self.request(
            "POST",
            RECEIPTS_PATH,
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )
        if response.status_code not in (200, 201):
            raise self.error_from_response("POST", RECEIPTS_PATH, response)
        result = self._receipt(decode_json(response))
        result["replayed"] = response.status_code == 200
        return result

    def post_cash_receipts(
        self, items: Sequence[tuple[str, CashReceipt]]
    ) -> list[BatchItemResult]:
        """Post up to BATCH_MAX receipts in one call; one result per item, in order.

        Each item succeeds or fails on its own, exactly as `post_cash_receipt` would
        for it: a refused item's `error` is the ConnectorError the single call raises
        (same code, status, transience). A receipt whose body cannot be built is not
        sent and comes back as a VALIDATION_ERROR. A failure of the whole call raises
        as `post_cash_receipt` does; after a timeout (`outcome_unknown`) look each key
        up or repeat the batch with the same keys.
        """
        if len(items) > BATCH_MAX:
            raise ValueError(
                f"at most {BATCH_MAX} receipts per batch, not {len(items)}"
            )
        results: list[BatchItemResult | None] = []
        sent: list[tuple[int, str, dict[str, Any]]] = []
        for key, receipt in items:
            try:
                sent.append((len(results), key, receipt.body()))
                results.append(None)
            except ValueError as exc:
                error = ConnectorError(
                    f"{self.system}: receipt {key!r} was not sent: {exc}",
                    transient=False,
                    code="VALIDATION_ERROR",
                    detail=str(exc),
                )
                results.append(BatchItemResult(key, None, error))
        if sent:
            answers = self._post_batch(
                [{"idempotency_key": key, "receipt": body} for _, key, body in sent]
            )
            for (index, key, _), answer in zip(sent, answers, strict=True):
                results[index] = self._batch_item(key, answer)
        return [result for result in results if result is not None]

    def _post_batch(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Send one batch; its per-item answers, checked against what was sent."""
        response = self.request("POST", BATCH_PATH, json={"receipts": items})
        if response.status_code != 200:
            raise self.error_from_response("POST", BATCH_PATH, response)
        try:
            answers = decode_json(response)["results"]
            shape_ok = len(answers) == len(items) and all(
                isinstance(answer, dict)
                and answer.get("idempotency_key") == item["idempotency_key"]
                and isinstance(answer.get("status"), int)
                for answer, item in zip(answers, items, strict=False)
            )
        except (ValueError, KeyError, TypeError):
            shape_ok = False
        if not shape_ok:
            raise ConnectorError(
                f"{self.system} answered POST {BATCH_PATH} with results that do not "
                "match the batch",
                transient=True,
                code="BAD_RESPONSE",
                status=response.status_code,
                outcome_unknown=True,
            )
        return list(answers)

    def _batch_item(self, key: str, answer: dict[str, Any]) -> BatchItemResult:
        status = answer["status"]
        if status in (200, 201) and isinstance(answer.get("receipt"), dict):
            receipt = self._receipt(answer["receipt"])
            receipt["replayed"] = status == 200
            return BatchItemResult(key, receipt, None)
        body = {
            name: answer[name]
            for name in ("code", "detail", "errors")
            if name in answer
        }
        error = self.error_from_body("POST", RECEIPTS_PATH, status, body)
        return BatchItemResult(key, None, error)

    def find_cash_receipts(
        self, *, reference: str | None = None, idempotency_key: str | None = None
    ) -> list[dict[str, Any]]:
        """Receipts carrying a PayTrace reference and/or an idempotency key."""
        if reference is None and idempotency_key is None:
            raise ValueError("give a reference or an idempotency_key")
        params = {}
        if reference is not None:
            params["reference"] = reference
        if idempotency_key is not None:
            params["idempotency_key"] = idempotency_key
        data = self.call("GET", "/cash-receipts", params=params)
        return [self._receipt(item) for item in data["results"]]

    # --- change feeds (the portal's mirror) ------------------------------------------

    def list_invoice_changes(self, cursor: str | None, limit: int = 500) -> ChangePage:
        """Invoices changed after `cursor` (None: all), deleted and closed ones too.

        Each is converted like `get_invoice` and carries `deleted`.
        """
        data = self._changes("/invoices", cursor, limit)
        return ChangePage(
            [self._invoice(item) for item in data["results"]],
            str(data["next_cursor"]),
            bool(data["has_more"]),
        )

    def list_customer_changes(self, cursor: str | None, limit: int = 500) -> ChangePage:
        """Customers changed after `cursor` (None: all), converted like
        `get_customer`, with `deleted`."""
        data = self._changes("/customers", cursor, limit)
        return ChangePage(
            [convert(item, CUSTOMER_MONEY, CUSTOMER_DATES) for item in data["results"]],
            str(data["next_cursor"]),
            bool(data["has_more"]),
        )

    def _changes(self, path: str, cursor: str | None, limit: int) -> dict[str, Any]:
        params = {"changed_since": cursor or "", "limit": limit}
        data = self.call("GET", path, params=params)
        if (
            not isinstance(data, dict)
            or not {
                "results",
                "next_cursor",
                "has_more",
            }
            <= data.keys()
        ):
            raise ConnectorError(
                f"{self.system} answered GET {path} without a change page",
                transient=True,
                code="BAD_RESPONSE",
            )
        return data

    # --- general ledger ------------------------------------------------------------

    def list_gl_accounts(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/gl-accounts")["results"])

    def list_periods(self) -> list[dict[str, Any]]:
        data = self.call("GET", "/periods")
        return [convert(item, dates=PERIOD_DATES) for item in data["results"]]

    # --- conversions -----------------------------------------------------------------

    @staticmethod
    def _invoice(data: dict[str, Any]) -> dict[str, Any]:
        return convert(data, INVOICE_MONEY, INVOICE_DATES)

    @staticmethod
    def _receipt(data: dict[str, Any]) -> dict[str, Any]:
        out = convert(data, RECEIPT_MONEY, ("date", "reversal_date"))
        out["applications"] = [
            convert(app, ("amount", "requested_amount"))
            for app in data.get("applications", [])
        ]
        if out.get("created_at"):
            out["created_at"] = datetime.datetime.fromisoformat(out["created_at"])
        return out

    # --- listing (reconciliation) ------------------------------------------------------

    def list_cash_receipts(
        self,
        date_from: datetime.date,
        date_to: datetime.date,
        *,
        page_size: int = 1000,
    ) -> list[dict[str, Any]]:
        """Every live receipt dated `date_from`..`date_to` (inclusive), all pages.

        One request per `page_size` receipts, following the gateway's cursor, so a
        reconciliation reads a month of receipts in a few calls instead of one per
        payment (docs/sagepro-gateway.md §7).
        """
        params: dict[str, Any] = {
            "date_from": date_from.isoformat(),
            "date_to": date_to.isoformat(),
            "limit": page_size,
        }
        receipts: list[dict[str, Any]] = []
        while True:
            data = self.call("GET", "/cash-receipts", params=params)
            receipts.extend(self._receipt(item) for item in data["results"])
            if not data.get("next_cursor"):
                return receipts
            params["cursor"] = data["next_cursor"]
