"""How a storefront's sales order reaches Sage Pro (`integrations.sending`)."""

from typing import Any

from integrations.models import Posting, ReviewItem
from integrations.sending import DocumentSender
from integrations.storefront import flow


def _send(sage: Any, posting: Posting) -> dict[str, Any]:
    return sage.post_sales_order(posting.idempotency_key, posting.payload)


def _find(sage: Any, posting: Posting) -> dict[str, Any] | None:
    found = sage.find_sales_orders(idempotency_key=posting.idempotency_key)
    return found[0] if found else None


def _number(result: dict[str, Any]) -> str:
    return str(result.get("sono", "")).strip()


SALES_ORDER = DocumentSender(
    kind=Posting.Kind.SALES_ORDER,
    label="sales order",
    send=_send,
    find=_find,
    number=_number,
    on_posted=flow.on_sales_order_posted,
    on_refused=flow.on_sales_order_refused,
    review_kind=ReviewItem.Kind.ORDER,
)
