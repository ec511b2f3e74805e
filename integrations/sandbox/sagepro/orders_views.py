"""The contract's GL batches, customer writes, sales orders, items and locations
(docs/sagepro-gateway.md §4.10), served by the sandbox. The rules are in
`orders_ledger.py`; these views read the request and render the answer."""

from typing import Any

from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path

from . import ledger, orders_ledger
from .ledger import GatewayError, ValidationError
from .models import SycComp
from .orders_models import GlBatch, GlBatchLine, IcItem, IcLoct, SoMast, SoTran
from .views import customer_json, gateway_view, money, read_json, results

MAX_RESULTS = 500


# --- renderers -----------------------------------------------------------------------


def gl_batch_json(batch: GlBatch) -> dict[str, Any]:
    lines = sorted(batch.lines.all(), key=lambda line: line.glseqno)
    return {
        "batch_no": batch.batchno,
        "status": batch.bstat,
        "yearprd": batch.yearprd,
        "date": batch.gldate.isoformat(),
        "description": batch.bdesc,
        "reference": batch.glrefr,
        "source": batch.btype,
        "dr_total": money(batch.drtotal),
        "cr_total": money(batch.crtotal),
        "lines": [
            {
                "line_no": line.glseqno,
                "account": line.glacnt.strip(),
                "debit": money(line.gldamnt),
                "credit": money(line.glcamnt),
                "memo": line.gltdes,
            }
            for line in lines
        ],
        "idempotency_key": batch.idemkey,
        "created_at": batch.created_at.isoformat(),
    }


def sales_order_json(order: SoMast) -> dict[str, Any]:
    lines = sorted(order.lines.all(), key=lambda line: line.lineno)
    ship_to = getattr(order, "ship_to", None)
    return {
        "sono": order.sono.strip(),
        "custno": order.custno.strip(),
        "date": order.sodate.isoformat(),
        "reference": order.ref,
        "ponum": order.ponum,
        "status": "invoiced" if order.sostat == "I" else "open",
        "ship_to": {name: getattr(ship_to, name, "") for name in orders_ledger.SHIP_TO},
        "lines": [
            {
                "line_no": line.lineno,
                "item": line.item.strip(),
                "description": line.descrip,
                "quantity": money(line.qtyord),
                "price": money(line.price),
                "extended": money(line.extprice),
                "location": line.loctid.strip(),
                "taxable": line.taxable == "Y",
            }
            for line in lines
        ],
        "subtotal": money(order.ordamt),
        "tax": money(order.tax),
        "freight": money(order.shpamt),
        "total": money(order.total),
        "invno": order.invno.strip(),
        "idempotency_key": order.idemkey,
        "created_at": order.created_at.isoformat(),
    }


def item_json(item: IcItem) -> dict[str, Any]:
    return {
        "item": item.item.strip(),
        "description": item.itmdesc,
        "price": money(item.price),
        "on_hand": money(orders_ledger.on_hand(item.company, item.item)),
        "active": item.is_active(),
    }


def location_json(location: IcLoct) -> dict[str, Any]:
    return {"location": location.loctid.strip(), "description": location.locdesc}


def query_date(request: HttpRequest, name: str, errors: dict[str, list[str]]) -> Any:
    value = request.GET.get(name)
    if value is None:
        return None
    return ledger.parse_date(value, name, errors)


def query_text(request: HttpRequest, name: str, width: int) -> str | None:
    """A text filter; None when absent. Too long or unstorable is a 400."""
    value = request.GET.get(name)
    if value is None:
        return None
    errors: dict[str, list[str]] = {}
    text = orders_ledger.check_text(value.strip(), name, width, errors)
    if errors:
        raise ValidationError(errors)
    return text


# --- GL batches ------------------------------------------------------------------------


def batches_with_lines() -> Any:
    return GlBatch.objects.prefetch_related(
        Prefetch("lines", queryset=GlBatchLine.objects.filter(deleted=False))
    )


@gateway_view("GET", "POST")
def gl_batch_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    if request.method == "POST":
        batch, created = orders_ledger.create_gl_batch(
            company, request.headers.get("Idempotency-Key"), read_json(request)
        )
        batch = batches_with_lines().get(pk=batch.pk)
        return JsonResponse(gl_batch_json(batch), status=201 if created else 200)
    batches = batches_with_lines().filter(company=company.compid, deleted=False)
    key = query_text(request, "idempotency_key", 100)
    if key is not None:
        batches = batches.filter(idemkey=key)
    reference = query_text(request, "reference", 40)
    if reference is not None:
        batches = batches.filter(glrefr=reference)
    errors: dict[str, list[str]] = {}
    date_from = query_date(request, "date_from", errors)
    date_to = query_date(request, "date_to", errors)
    if errors:
        raise ValidationError(errors)
    if date_from is not None:
        batches = batches.filter(gldate__gte=date_from)
    if date_to is not None:
        batches = batches.filter(gldate__lte=date_to)
    batches = batches.order_by("batchno")[:MAX_RESULTS]
    return results([gl_batch_json(b) for b in batches])


@gateway_view("GET")
def gl_batch_detail(
    request: HttpRequest, company: SycComp, batch_no: str
) -> HttpResponse:
    batch = orders_ledger.get_gl_batch(company, batch_no)
    return JsonResponse(gl_batch_json(batches_with_lines().get(pk=batch.pk)))


@gateway_view("POST")
def gl_batch_post(
    request: HttpRequest, company: SycComp, batch_no: str
) -> HttpResponse:
    """Sandbox only: a Sage Pro user posts the batch."""
    batch = orders_ledger.post_batch_to_ledger(company, batch_no)
    return JsonResponse(gl_batch_json(batches_with_lines().get(pk=batch.pk)))


# --- customers ---------------------------------------------------------------------------


@gateway_view("GET", "PUT")
def customer_detail(
    request: HttpRequest, company: SycComp, custno: str
) -> HttpResponse:
    """`GET` reads the customer (§4.1); `PUT` creates or updates it (§4.10)."""
    if request.method == "PUT":
        customer, created = orders_ledger.put_customer(
            company, custno, read_json(request)
        )
        return JsonResponse(customer_json(customer), status=201 if created else 200)
    if not orders_ledger.is_storable_key(custno):
        raise GatewayError(404, "CUSTOMER_NOT_FOUND", "no such customer")
    return JsonResponse(customer_json(ledger.get_customer(company.compid, custno)))


def customer_search(request: HttpRequest, company: SycComp) -> HttpResponse:
    """`GET /customers?email=…` (called by `changes.customer_changes`)."""
    found = orders_ledger.find_customers_by_email(company, request.GET["email"])
    return results([customer_json(c) for c in found])


# --- sales orders ------------------------------------------------------------------------


def orders_with_lines() -> Any:
    return SoMast.objects.select_related("ship_to").prefetch_related(
        Prefetch("lines", queryset=SoTran.objects.filter(deleted=False))
    )


@gateway_view("GET", "POST")
def sales_order_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    if request.method == "POST":
        order, created = orders_ledger.post_sales_order(
            company, request.headers.get("Idempotency-Key"), read_json(request)
        )
        order = orders_with_lines().get(pk=order.pk)
        return JsonResponse(sales_order_json(order), status=201 if created else 200)
    orders = orders_with_lines().filter(company=company.compid, deleted=False)
    reference = query_text(request, "reference", 20)
    if reference is not None:
        orders = orders.filter(ref=reference)
    key = query_text(request, "idempotency_key", 100)
    if key is not None:
        orders = orders.filter(idemkey=key)
    orders = orders.order_by("sono")[:MAX_RESULTS]
    return results([sales_order_json(o) for o in orders])


@gateway_view("GET")
def sales_order_detail(
    request: HttpRequest, company: SycComp, sono: str
) -> HttpResponse:
    order = orders_ledger.get_sales_order(company, sono)
    return JsonResponse(sales_order_json(orders_with_lines().get(pk=order.pk)))


# --- items and locations ------------------------------------------------------------------


@gateway_view("GET")
def item_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    items = IcItem.objects.filter(company=company.compid, deleted=False)
    return results([item_json(i) for i in items.order_by("item")])


@gateway_view("GET")
def item_detail(request: HttpRequest, company: SycComp, item: str) -> HttpResponse:
    return JsonResponse(item_json(orders_ledger.get_item(company, item)))


@gateway_view("GET")
def location_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    locations = IcLoct.objects.filter(company=company.compid, deleted=False)
    return results([location_json(loc) for loc in locations.order_by("loctid")])


urlpatterns: list[URLPattern] = [
    path("gl-batches", gl_batch_collection),
    path("gl-batches/<str:batch_no>", gl_batch_detail),
    path("gl-batches/<str:batch_no>/post", gl_batch_post),
    path("customers/<str:custno>", customer_detail),
    path("sales-orders", sales_order_collection),
    path("sales-orders/<str:sono>", sales_order_detail),
    path("items", item_collection),
    path("items/<str:item>", item_detail),
    path("locations", location_collection),
]
