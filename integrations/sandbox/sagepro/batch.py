"""Sandbox: `POST /cash-receipts/batch`, many receipts in one call.

`{"receipts": [{"idempotency_key": "k1", "receipt": {…single-call body…}}, …]}` with
1 to `BATCH_MAX` items is answered 200 with one result per item, in request order.
Each item goes through `ledger.post_cash_receipt` (the single call's code) in its own
transaction, one after the other, so a batch is never all-or-nothing and an item
answers exactly what the single `POST /cash-receipts` would have: 201 or 200 with the
receipt, or the refusal's status, code, detail and field errors.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse

from . import ledger, views
from .ledger import GatewayError, ValidationError
from .models import SycComp

BATCH_MAX = 100
KEY_HEADER = "Idempotency-Key"
BODY_SHAPE = f'the body must be an object {{"receipts": [1 to {BATCH_MAX} items]}}'


@views.gateway_view("POST")
def receipt_batch(request: HttpRequest, company: SycComp) -> HttpResponse:
    items = parse_batch(views.read_json(request))
    return JsonResponse(
        {
            "results": [
                post_item(company, index, item) for index, item in enumerate(items)
            ]
        }
    )


def parse_batch(body: Any) -> list[Any]:
    """The items of a batch body; 400 for anything but 1 to BATCH_MAX of them.

    A body that is not an object is reported under `receipts` too (the contract names
    `errors.receipts` for every whole-call refusal of the body's shape)."""
    if not isinstance(body, dict):
        raise ValidationError({"receipts": [BODY_SHAPE]})
    items = body.get("receipts")
    if not isinstance(items, list) or not 1 <= len(items) <= BATCH_MAX:
        raise ValidationError(
            {"receipts": [f"must be a list of 1 to {BATCH_MAX} items"]}
        )
    return items


def post_item(company: SycComp, index: int, item: Any) -> dict[str, Any]:
    """Post one item as the single call would; answer its result object."""
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
        receipt, created = ledger.post_cash_receipt(
            company, key or "", item.get("receipt")
        )
    except GatewayError as exc:
        return refusal(key, exc)
    return {
        "idempotency_key": key,
        "status": 201 if created else 200,
        "receipt": views.receipt_json(receipt),
    }


def refusal(key: str | None, exc: GatewayError) -> dict[str, Any]:
    if exc.errors and KEY_HEADER in exc.errors:
        # In a batch the key is the item's `idempotency_key`, not a header.
        exc = ValidationError({"idempotency_key": exc.errors[KEY_HEADER]})
    return {"idempotency_key": key, "status": exc.status, **exc.as_body()}
