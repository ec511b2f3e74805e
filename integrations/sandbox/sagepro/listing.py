"""Sandbox: list cash receipts by date, a page at a time (reconciliation reads them all).

`GET /cash-receipts?date_from=YYYY-MM-DD&date_to=YYYY-MM-DD[&cursor=…][&limit=…]`
answers `{"results": [receipt, …], "next_cursor": "…" | null}`: live receipts whose
date falls in the range, in receipt-number order. Pages are keyed by the last receipt
number (not an offset), so reading the whole range costs the same per page however far
in it is. A GET without `date_from`/`date_to`/`cursor` is the contract's search
(docs/sagepro-gateway.md §4.4) and goes to `views.receipt_collection` unchanged.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import keys, ledger, views
from .ledger import ValidationError
from .models import CashReceipt, SycComp

DEFAULT_PAGE_SIZE = 1000
MAX_PAGE_SIZE = 5000
LISTING_PARAMS = ("date_from", "date_to", "cursor")


@csrf_exempt
def receipt_collection(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Send a dated listing here, anything else to the contract's collection view."""
    if request.method == "GET" and any(p in request.GET for p in LISTING_PARAMS):
        return receipt_listing(request)
    return views.receipt_collection(request, *args, **kwargs)


@views.gateway_view("GET")
def receipt_listing(request: HttpRequest, company: SycComp) -> HttpResponse:
    errors: dict[str, list[str]] = {}
    date_from = ledger.parse_date(request.GET.get("date_from"), "date_from", errors)
    date_to = ledger.parse_date(request.GET.get("date_to"), "date_to", errors)
    limit = _page_size(request.GET.get("limit"), errors)
    cursor = request.GET.get("cursor", "").strip()
    if cursor:
        try:
            cursor = keys.pad_receipt_no(cursor)
        except keys.InvalidKeyError:
            errors["cursor"] = ["is not a cursor this listing returned"]
    if not errors and date_to < date_from:
        errors["date_to"] = ["must not be before date_from"]
    if errors:
        raise ValidationError(errors)
    receipts = CashReceipt.objects.filter(
        company=company.compid,
        deleted=False,
        paydate__gte=date_from,
        paydate__lte=date_to,
    )
    if cursor:
        receipts = receipts.filter(rcptno__gt=cursor)
    page = list(receipts.prefetch_related("lines").order_by("rcptno")[: limit + 1])
    more = len(page) > limit
    page = page[:limit]
    return JsonResponse(
        {
            "results": [views.receipt_json(r) for r in page],
            "next_cursor": page[-1].rcptno.strip() if more else None,
        }
    )


def _page_size(value: str | None, errors: dict[str, list[str]]) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if (
        not (value.isascii() and value.isdigit())
        or not 1 <= int(value) <= MAX_PAGE_SIZE
    ):
        errors["limit"] = [f"must be a whole number from 1 to {MAX_PAGE_SIZE}"]
        return DEFAULT_PAGE_SIZE
    return int(value)
