"""`POST /cash-receipts/batch`: many receipts in one call (contract section 4.3a).

Each item goes through the single call's code in its own journal entry, one after the
other, so a batch is never all-or-nothing and an item answers exactly what the single
`POST /cash-receipts` would have (sandbox `batch.py`).
"""

from __future__ import annotations

from typing import Any

from sagepro_agent.core.errors import GatewayError, ValidationError
from sagepro_agent.core.receipts import ReceiptPoster
from sagepro_agent.core.validation import KEY_HEADER
from sagepro_agent.store.base import Row

BATCH_MAX = 100
BODY_SHAPE = f'the body must be an object {{"receipts": [1 to {BATCH_MAX} items]}}'


def parse_batch(body: Any) -> list[Any]:
    """The items of a batch body; 400 for anything but 1 to BATCH_MAX of them. A body
    that is not an object is reported under `receipts` too (contract 4.3a)."""
    if not isinstance(body, dict):
        raise ValidationError({"receipts": [BODY_SHAPE]})
    items = body.get("receipts")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_MAX:
        raise ValidationError(
            {"receipts": [f"must be a list of 1 to {BATCH_MAX} items"]}
        )
    return items


def post_batch(poster: ReceiptPoster, company: Row, body: Any) -> dict[str, Any]:
    items = parse_batch(body)
    return {
        "results": [post_item(poster, company, i, item) for i, item in enumerate(items)]
    }


def post_item(
    poster: ReceiptPoster, company: Row, index: int, item: Any
) -> dict[str, Any]:
    if not isinstance(item, dict):
        return refusal(
            None,
            ValidationError(
                {f"receipts.{index}": ["must be an object {idempotency_key, receipt}"]}
            ),
        )
    key = item.get("idempotency_key")
    if not isinstance(key, str):
        key = None
    try:
        status, receipt = poster.post(company, key or "", item.get("receipt"))
    except GatewayError as exc:
        return refusal(key, exc)
    return {"idempotency_key": key, "status": status, "receipt": receipt}


def refusal(key: str | None, exc: GatewayError) -> dict[str, Any]:
    if exc.errors and KEY_HEADER in exc.errors:
        # In a batch the key is the item's `idempotency_key`, not a header.
        exc = ValidationError({"idempotency_key": exc.errors[KEY_HEADER]})
    return {"idempotency_key": key, "status": exc.status, **exc.as_body()}
