"""Sandbox: change feeds of invoices and customers, for a mirror kept in step.

`GET /invoices?changed_since=<cursor>[&limit=…]` and `GET /customers?changed_since=…`
answer `{"results": [...], "next_cursor": "…", "has_more": bool}`: every row of the
company, deleted and closed ones included (a mirror must learn that an invoice was
paid or deleted), in change order, each the single GET's JSON plus `"deleted"`.

Each write to ARMAST or ARCUST stamps the row with the company's next change number
(`models.next_change_number`), handed out under a lock held until commit, so numbers
follow commit order. The cursor is `<changeseq>.<id>` of the last row returned; rows
never stamped (`bulk_create`) carry 0 and come first in a full listing. A GET on
`/invoices` without `changed_since` is the contract's search, unchanged.
"""

import re
from collections.abc import Callable
from typing import Any

from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt

from . import orders_views, views
from .ledger import ValidationError
from .models import ArCust, ArMast, SycComp

DEFAULT_PAGE_SIZE = 500
MAX_PAGE_SIZE = 1000
CURSOR_RE = re.compile(r"0|([0-9]{1,18})\.([0-9]{1,18})")

Cursor = tuple[int, int]  # changeseq, id of the last row returned


@csrf_exempt
def invoice_collection(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Send a change-feed read here, anything else to the contract's collection."""
    if request.method == "GET" and "changed_since" in request.GET:
        return invoice_changes(request)
    return views.invoice_collection(request, *args, **kwargs)


@views.gateway_view("GET")
def invoice_changes(request: HttpRequest, company: SycComp) -> HttpResponse:
    rows = ArMast.objects.filter(company=company.compid)
    return change_page(request, rows, views.invoice_json)


@views.gateway_view("GET")
def customer_changes(request: HttpRequest, company: SycComp) -> HttpResponse:
    """`GET /customers`: without `changed_since`, a full listing in the same shape;
    with `email`, the contract's search by e-mail (§4.10) instead."""
    if "email" in request.GET:
        return orders_views.customer_search(request, company)
    rows = ArCust.objects.filter(company=company.compid)
    return change_page(request, rows, views.customer_json)


def change_page(
    request: HttpRequest,
    rows: QuerySet[Any],
    render: Callable[[Any], dict[str, Any]],
) -> JsonResponse:
    errors: dict[str, list[str]] = {}
    after = parse_cursor(request.GET.get("changed_since", ""), errors)
    limit = page_size(request.GET.get("limit"), errors)
    if errors:
        raise ValidationError(errors)
    seq, pk = after
    rows = rows.filter(Q(changeseq__gt=seq) | Q(changeseq=seq, pk__gt=pk))
    page = list(rows.order_by("changeseq", "pk")[: limit + 1])
    has_more = len(page) > limit
    page = page[:limit]
    if page:
        after = (page[-1].changeseq, page[-1].pk)
    return JsonResponse(
        {
            "results": [{**render(row), "deleted": row.deleted} for row in page],
            "next_cursor": format_cursor(after),
            "has_more": has_more,
        }
    )


def parse_cursor(value: str, errors: dict[str, list[str]]) -> Cursor:
    """`""` or `"0"` is the beginning; otherwise a cursor this feed returned."""
    match = CURSOR_RE.fullmatch(value.strip())
    if value.strip() == "" or (match and match[1] is None):
        return (0, 0)
    if match is None:
        errors["changed_since"] = [
            "must be empty, 0 or a next_cursor this feed returned"
        ]
        return (0, 0)
    return (int(match[1]), int(match[2]))


def format_cursor(cursor: Cursor) -> str:
    return f"{cursor[0]}.{cursor[1]}"


def page_size(value: str | None, errors: dict[str, list[str]]) -> int:
    if value is None:
        return DEFAULT_PAGE_SIZE
    if (
        not (value.isascii() and value.isdigit())
        or not 1 <= int(value) <= MAX_PAGE_SIZE
    ):
        errors["limit"] = [f"must be a whole number from 1 to {MAX_PAGE_SIZE}"]
        return DEFAULT_PAGE_SIZE
    return int(value)
