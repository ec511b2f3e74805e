"""The Sage Pro client's calls for refunds and voids and for unapplied cash
(docs/sagepro-gateway.md §4.7-4.9): credit memos, receipt reversal, applications of a
receipt's unapplied cash.

Bodies go out as the caller built them (money already 2-place strings: build them
with `sagevalues.to_money`); answers come back converted, money as `Decimal` and dates
as `date`, like `SageProConnector._receipt`. Every write carries an Idempotency-Key:
after a timeout (`ConnectorError.outcome_unknown`) look the document up by that key or
repeat the call with the same key and body. A site whose on-site agent does not write
these documents answers 501 `NOT_SUPPORTED_AT_SITE`, raised as a permanent error.
"""

import datetime
from typing import Any

from .base import HttpConnector, decode_json
from .sagevalues import convert, segment

CREDIT_MEMOS_PATH = "/credit-memos"
MEMO_MONEY = ("amount", "fee_amount", "receipt_refunded_total", "receipt_refundable")
RECEIPT_MONEY = ("amount", "applied_amount", "unapplied_amount")
RECEIPT_DATES = ("date", "reversal_date")
APPLICATION_MONEY = ("amount", "requested_amount")
MEMO_QUERIES = frozenset({"idempotency_key", "reference", "receipt_no"})


def _timestamp(out: dict[str, Any]) -> dict[str, Any]:
    if out.get("created_at"):
        out["created_at"] = datetime.datetime.fromisoformat(out["created_at"])
    return out


def credit_memo(data: dict[str, Any]) -> dict[str, Any]:
    """A credit memo's answer with money as Decimal and dates as date."""
    return _timestamp(convert(data, MEMO_MONEY, ("date",)))


def receipt(data: dict[str, Any]) -> dict[str, Any]:
    """A receipt's answer (with its reversal fields) converted."""
    out = convert(data, RECEIPT_MONEY, RECEIPT_DATES)
    out["applications"] = [
        convert(app, APPLICATION_MONEY) for app in data.get("applications", [])
    ]
    return _timestamp(out)


class CreditCalls(HttpConnector):
    """Mixed into `SageProConnector`."""

    def _post_document_with_key(
        self, path: str, key: str, body: dict[str, Any]
    ) -> tuple[Any, bool]:
        """POST with the key; the decoded answer and whether it was a replay (200)."""
        response = self.request(
            "POST", path, json=body, headers={"Idempotency-Key": key}
        )
        if response.status_code not in (200, 201):
            raise self.error_from_response("POST", path, response)
        return decode_json(response), response.status_code == 200

    def post_credit_memo(self, key: str, body: dict[str, Any]) -> dict[str, Any]:
        """Write a refund's credit memo (§4.7); `replayed` is True when the gateway
        had already written it under this key (nothing new was written)."""
        data, replayed = self._post_document_with_key(CREDIT_MEMOS_PATH, key, body)
        result = credit_memo(data)
        result["replayed"] = replayed
        return result

    def find_credit_memos(self, **query: str) -> list[dict[str, Any]]:
        """Memos by `idempotency_key`, `reference` and/or `receipt_no`."""
        unknown = set(query) - MEMO_QUERIES
        if not query or unknown:
            raise ValueError(
                f"give one or more of {', '.join(sorted(MEMO_QUERIES))}"
                + (f", not {', '.join(sorted(unknown))}" if unknown else "")
            )
        data = self.call("GET", CREDIT_MEMOS_PATH, params=query)
        return [credit_memo(item) for item in data["results"]]

    def get_credit_memo(self, memo_no: str) -> dict[str, Any]:
        """One memo; NotFoundError when there is none."""
        return credit_memo(self.call("GET", f"{CREDIT_MEMOS_PATH}/{segment(memo_no)}"))

    def reverse_cash_receipt(
        self, key: str, receipt_no: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Reverse (void) a posted receipt (§4.8): `body` is `{"date", "reason"}`.
        Answers the receipt, `reversed` True, with `replayed`."""
        path = f"/cash-receipts/{segment(receipt_no)}/reversal"
        data, replayed = self._post_document_with_key(path, key, body)
        result = receipt(data)
        result["replayed"] = replayed
        return result

    def apply_unapplied_cash(
        self, key: str, receipt_no: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        """Apply some of a receipt's unapplied cash to open invoices (§4.9): `body` is
        `{"date", "applications": [{"invno", "amount"}]}`. Answers `receipt` (updated),
        `applications` (what was applied to each), `applied_amount` and `replayed`."""
        path = f"/cash-receipts/{segment(receipt_no)}/applications"
        data, replayed = self._post_document_with_key(path, key, body)
        result = convert(data, ("applied_amount",))
        result["receipt"] = receipt(data["receipt"])
        result["applications"] = [
            convert(app, APPLICATION_MONEY) for app in data.get("applications", [])
        ]
        result["replayed"] = replayed
        return result
