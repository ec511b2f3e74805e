"""The Sage Pro client's GL batches, customer writes, sales orders, items and
locations (docs/sagepro-gateway.md §4.10), mixed into `SageProConnector`.

Bodies go out as given, except that `Decimal` money and quantities are written as
2-place strings (more places are refused here, never rounded); answers come back with
money and quantities as `Decimal` and dates as `date`. A POST that times out raises a
transient `ConnectorError` with `outcome_unknown=True`: find the document by its key
(`find_gl_batches(idempotency_key=…)`, `find_sales_orders(idempotency_key=…)`) or
repeat the post with the same key. An on-site agent whose site mapping does not cover
these documents answers 501 `NOT_SUPPORTED_AT_SITE`, which is never transient.
"""

import datetime
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from integrations.connectors.base import ConnectorError, HttpConnector, decode_json

from .sagevalues import convert, segment, to_money

GL_BATCHES_PATH = "/gl-batches"
SALES_ORDERS_PATH = "/sales-orders"

BATCH_MONEY = ("dr_total", "cr_total")
BATCH_LINE_MONEY = ("debit", "credit")
ORDER_MONEY = ("subtotal", "tax", "freight", "total")
ORDER_LINE_MONEY = ("quantity", "price", "extended")
ITEM_MONEY = ("price", "on_hand")
CUSTOMER_MONEY = ("balance", "credit_limit", "last_payment_amount")
CUSTOMER_DATES = ("last_payment_date",)


def wire(value: Any) -> Any:
    """A body with every Decimal as a 2-place string and every date as ISO text."""
    if isinstance(value, Decimal):
        return to_money(value)
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {key: wire(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [wire(item) for item in value]
    return value


def _timestamp(data: dict[str, Any]) -> dict[str, Any]:
    if data.get("created_at"):
        data["created_at"] = datetime.datetime.fromisoformat(data["created_at"])
    return data


def gl_batch(data: dict[str, Any]) -> dict[str, Any]:
    out = convert(data, BATCH_MONEY, ("date",))
    out["lines"] = [convert(line, BATCH_LINE_MONEY) for line in data.get("lines", [])]
    return _timestamp(out)


def sales_order(data: dict[str, Any]) -> dict[str, Any]:
    out = convert(data, ORDER_MONEY, ("date",))
    out["lines"] = [convert(line, ORDER_LINE_MONEY) for line in data.get("lines", [])]
    return _timestamp(out)


def customer(data: dict[str, Any]) -> dict[str, Any]:
    return convert(data, CUSTOMER_MONEY, CUSTOMER_DATES)


class OrderCalls(HttpConnector):
    """Mixed into `SageProConnector`."""

    def _post(self, path: str, key: str, body: Mapping[str, Any]) -> tuple[Any, bool]:
        """POST with an Idempotency-Key; the answer and whether it was a replay."""
        response = self.request(
            "POST", path, json=wire(body), headers={"Idempotency-Key": key}
        )
        if response.status_code not in (200, 201):
            raise self.error_from_response("POST", path, response)
        return self.call_json("POST", path, response), response.status_code == 200

    def call_json(self, method: str, path: str, response: Any) -> Any:
        """The decoded body of an answer already checked for its status."""
        try:
            return decode_json(response)
        except ValueError as exc:
            raise ConnectorError(
                f"{self.system} answered {method} {path} with a body that is not JSON",
                transient=True,
                code="BAD_RESPONSE",
                status=response.status_code,
                outcome_unknown=method != "GET",
            ) from exc

    # --- GL batches ------------------------------------------------------------------

    def post_gl_batch(self, key: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Write an unposted GL batch (`{date, description, reference, source, lines:
        [{account, debit, credit, memo}]}`); safe to repeat with the same key.

        Returns the batch with `replayed=True` when the gateway had it already. The
        gateway refuses an unbalanced batch (422 `BATCH_UNBALANCED`), unknown or
        inactive accounts and closed periods.
        """
        data, replayed = self._post(GL_BATCHES_PATH, key, body)
        result = gl_batch(data)
        result["replayed"] = replayed
        return result

    def find_gl_batches(self, **query: Any) -> list[dict[str, Any]]:
        """Batches by `idempotency_key`, `reference`, or `date_from`/`date_to`."""
        if not query:
            raise ValueError("give idempotency_key, reference or date_from/date_to")
        data = self.call("GET", GL_BATCHES_PATH, params=wire(query))
        return [gl_batch(item) for item in data["results"]]

    def get_gl_batch(self, batch_no: str) -> dict[str, Any]:
        """One batch; `NotFoundError` (404 `BATCH_NOT_FOUND`) when there is none."""
        return gl_batch(self.call("GET", f"{GL_BATCHES_PATH}/{segment(batch_no)}"))

    # --- customers ---------------------------------------------------------------------

    def put_customer(self, custno: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Create or update a customer; the customer as `get_customer` reads it, with
        `created` (True when the gateway answered 201)."""
        path = f"/customers/{segment(custno)}"
        response = self.request("PUT", path, json=wire(body))
        if response.status_code not in (200, 201):
            raise self.error_from_response("PUT", path, response)
        result = customer(self.call_json("PUT", path, response))
        result["created"] = response.status_code == 201
        return result

    def find_customers(self, *, email: str) -> list[dict[str, Any]]:
        """Live customers whose e-mail is `email` (case-insensitive, exact)."""
        data = self.call("GET", "/customers", params={"email": email})
        return [customer(item) for item in data["results"]]

    # --- sales orders --------------------------------------------------------------------

    def post_sales_order(self, key: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """Write a sales order (and with `invoice: true` its invoice, named in
        `invno`); safe to repeat with the same key. `replayed=True` on a replay."""
        data, replayed = self._post(SALES_ORDERS_PATH, key, body)
        result = sales_order(data)
        result["replayed"] = replayed
        return result

    def find_sales_orders(self, **query: Any) -> list[dict[str, Any]]:
        """Orders by `reference` (the storefront's order) or `idempotency_key`."""
        if not query:
            raise ValueError("give a reference or an idempotency_key")
        data = self.call("GET", SALES_ORDERS_PATH, params=wire(query))
        return [sales_order(item) for item in data["results"]]

    def get_sales_order(self, sono: str) -> dict[str, Any]:
        """One order; `NotFoundError` (404 `SALES_ORDER_NOT_FOUND`) when none."""
        return sales_order(self.call("GET", f"{SALES_ORDERS_PATH}/{segment(sono)}"))

    # --- items and locations ---------------------------------------------------------------

    def list_items(self) -> list[dict[str, Any]]:
        """Every item, inactive ones included (`active`), price and on hand Decimal."""
        data = self.call("GET", "/items")
        return [convert(item, ITEM_MONEY) for item in data["results"]]

    def get_item(self, item: str) -> dict[str, Any]:
        """One item; `NotFoundError` (404 `ITEM_NOT_FOUND`) when there is none."""
        return convert(self.call("GET", f"/items/{segment(item)}"), ITEM_MONEY)

    def list_locations(self) -> list[dict[str, Any]]:
        return list(self.call("GET", "/locations")["results"])
