"""The Sage Pro client's GL batches, customers, sales orders, items and locations
(`OrderCalls`), with `responses` standing in for the gateway, and once end to end
against the sandbox through the bridge."""

import datetime
import json
from decimal import Decimal

import pytest
import requests
import responses
from django.conf import settings

from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.connectors.sagepro import SageProConnector

BASE = "https://agent.example/api/v1"
SANDBOX = "http://testserver/sandbox/sagepro/api/v1"

BATCH = {
    "batch_no": "000007",
    "status": "U",
    "yearprd": "202512",
    "date": "2025-12-03",
    "description": "Chargeback 4471",
    "reference": "PT-4471",
    "source": "CB",
    "dr_total": "25.00",
    "cr_total": "25.00",
    "lines": [
        {"line_no": 1, "account": "6100-00", "debit": "25.00", "credit": "0.00",
         "memo": ""},
        {"line_no": 2, "account": "1100-00", "debit": "0.00", "credit": "25.00",
         "memo": ""},
    ],
    "idempotency_key": "cb-1",
    "created_at": "2025-12-03T17:03:11.120000+00:00",
}  # fmt: skip
ORDER = {
    "sono": "500001",
    "custno": "ACME",
    "date": "2025-12-03",
    "reference": "#1001",
    "ponum": "",
    "status": "invoiced",
    "ship_to": {},
    "lines": [
        {"line_no": 1, "item": "WIDGET", "description": "Widget", "quantity": "3.00",
         "price": "19.99", "extended": "59.97", "location": "MAIN", "taxable": True},
    ],
    "subtotal": "59.97",
    "tax": "4.80",
    "freight": "0.00",
    "total": "64.77",
    "invno": "10060",
    "idempotency_key": "so-1",
    "created_at": "2025-12-03T17:03:11+00:00",
}  # fmt: skip
CUSTOMER = {
    "custno": "WEB001",
    "company": "Buyer LLC",
    "email": "pat@buyer.example",
    "balance": "0.00",
    "credit_limit": "0.00",
    "last_payment_amount": "0.00",
    "last_payment_date": None,
}


@pytest.fixture
def gateway():
    return SageProConnector(BASE, "secret", "01")


def sent(call):
    return json.loads(call.request.body)


@responses.activate
def test_a_gl_batch_is_posted_with_its_key_and_money_as_strings(gateway):
    responses.post(f"{BASE}/gl-batches", json=BATCH, status=201)
    batch = gateway.post_gl_batch(
        "cb-1",
        {
            "date": datetime.date(2025, 12, 3),
            "description": "Chargeback 4471",
            "reference": "PT-4471",
            "source": "CB",
            "lines": [
                {"account": "6100-00", "debit": Decimal("25.00")},
                {"account": "1100-00", "credit": Decimal("25")},
            ],
        },
    )
    call = responses.calls[0]
    assert call.request.headers["Idempotency-Key"] == "cb-1"
    assert sent(call)["date"] == "2025-12-03"
    assert sent(call)["lines"][1] == {"account": "1100-00", "credit": "25.00"}
    assert batch["replayed"] is False
    assert (batch["dr_total"], batch["cr_total"]) == (Decimal("25.00"),) * 2
    assert batch["lines"][0]["debit"] == Decimal("25.00")
    assert batch["date"] == datetime.date(2025, 12, 3)
    assert batch["created_at"].tzinfo is not None


@responses.activate
def test_a_replayed_batch_says_so(gateway):
    responses.post(f"{BASE}/gl-batches", json=BATCH, status=200)
    assert gateway.post_gl_batch("cb-1", {"lines": []})["replayed"] is True


def test_money_with_more_than_two_places_is_refused_before_sending(gateway):
    with pytest.raises(ValueError):
        gateway.post_gl_batch("cb-1", {"lines": [{"debit": Decimal("1.005")}]})


@responses.activate
def test_an_unbalanced_batch_is_a_permanent_refusal(gateway):
    responses.post(
        f"{BASE}/gl-batches",
        json={"code": "BATCH_UNBALANCED", "detail": "debits 25.00 do not equal"},
        status=422,
    )
    with pytest.raises(ConnectorError) as caught:
        gateway.post_gl_batch("cb-1", {"lines": []})
    assert (caught.value.code, caught.value.transient) == ("BATCH_UNBALANCED", False)


@responses.activate
@pytest.mark.parametrize(
    ("call", "method", "path"),
    [
        (lambda g: g.post_gl_batch("k", {}), "POST", "/gl-batches"),
        (lambda g: g.find_gl_batches(reference="x"), "GET", "/gl-batches"),
        (lambda g: g.put_customer("WEB001", {}), "PUT", "/customers/WEB001"),
        (lambda g: g.find_customers(email="a@b.c"), "GET", "/customers"),
        (lambda g: g.post_sales_order("k", {}), "POST", "/sales-orders"),
        (lambda g: g.get_sales_order("5"), "GET", "/sales-orders/5"),
        (lambda g: g.list_items(), "GET", "/items"),
        (lambda g: g.list_locations(), "GET", "/locations"),
    ],
)
def test_not_supported_at_site_is_never_retried(gateway, call, method, path):
    responses.add(
        method,
        f"{BASE}{path}",
        json={
            "code": "NOT_SUPPORTED_AT_SITE",
            "detail": "Post it in Sage Pro by hand.",
        },
        status=501,
    )
    with pytest.raises(ConnectorError) as caught:
        call(gateway)
    assert caught.value.code == "NOT_SUPPORTED_AT_SITE"
    assert caught.value.status == 501
    assert caught.value.transient is False


@responses.activate
@pytest.mark.parametrize(
    ("call", "method", "path", "unknown"),
    [
        (lambda g: g.post_gl_batch("k", {}), "POST", "/gl-batches", True),
        (lambda g: g.post_sales_order("k", {}), "POST", "/sales-orders", True),
        (lambda g: g.put_customer("C1", {}), "PUT", "/customers/C1", True),
        (lambda g: g.get_gl_batch("1"), "GET", "/gl-batches/1", False),
    ],
)
def test_a_timeout_is_transient_and_a_write_has_an_unknown_outcome(
    gateway, call, method, path, unknown
):
    responses.add(method, f"{BASE}{path}", body=requests.Timeout("read timed out"))
    with pytest.raises(ConnectorError) as caught:
        call(gateway)
    assert caught.value.code == "TIMEOUT"
    assert caught.value.transient is True
    assert caught.value.outcome_unknown is unknown


@responses.activate
def test_a_lock_is_transient(gateway):
    responses.post(
        f"{BASE}/sales-orders",
        json={"code": "RECORD_LOCKED", "detail": "locked"},
        status=423,
    )
    with pytest.raises(ConnectorError) as caught:
        gateway.post_sales_order("so-1", {})
    assert caught.value.transient is True


@responses.activate
def test_a_sales_order_is_converted(gateway):
    responses.post(f"{BASE}/sales-orders", json=ORDER, status=201)
    order = gateway.post_sales_order(
        "so-1",
        {
            "custno": "ACME",
            "date": datetime.date(2025, 12, 3),
            "reference": "#1001",
            "lines": [
                {"item": "WIDGET", "quantity": Decimal("3"), "price": Decimal("19.99")}
            ],
            "tax": Decimal("4.80"),
            "invoice": True,
        },
    )
    body = sent(responses.calls[0])
    assert body["lines"][0]["quantity"] == "3.00"
    assert body["tax"] == "4.80" and body["invoice"] is True
    assert order["total"] == Decimal("64.77")
    assert order["lines"][0]["quantity"] == Decimal("3.00")
    assert order["lines"][0]["extended"] == Decimal("59.97")
    assert order["date"] == datetime.date(2025, 12, 3)
    assert (order["invno"], order["replayed"]) == ("10060", False)


@responses.activate
def test_look_ups_send_their_query(gateway):
    responses.get(
        f"{BASE}/sales-orders",
        json={"results": [ORDER]},
        match=[responses.matchers.query_param_matcher({"reference": "#1001"})],
    )
    responses.get(
        f"{BASE}/gl-batches",
        json={"results": [BATCH]},
        match=[
            responses.matchers.query_param_matcher(
                {"date_from": "2025-12-01", "date_to": "2025-12-31"}
            )
        ],
    )
    responses.get(
        f"{BASE}/customers",
        json={"results": [CUSTOMER]},
        match=[responses.matchers.query_param_matcher({"email": "Pat@Buyer.example"})],
    )
    assert gateway.find_sales_orders(reference="#1001")[0]["sono"] == "500001"
    batches = gateway.find_gl_batches(
        date_from=datetime.date(2025, 12, 1), date_to=datetime.date(2025, 12, 31)
    )
    assert batches[0]["dr_total"] == Decimal("25.00")
    (found,) = gateway.find_customers(email="Pat@Buyer.example")
    assert found["balance"] == Decimal("0.00")
    with pytest.raises(ValueError):
        gateway.find_sales_orders()


@responses.activate
def test_items_and_locations_are_converted(gateway):
    item = {
        "item": "WIDGET",
        "description": "Widget",
        "price": "19.99",
        "on_hand": "155.00",
        "active": True,
    }
    responses.get(f"{BASE}/items", json={"results": [item]})
    responses.get(f"{BASE}/items/CABLE%2F6", json=item)
    responses.get(
        f"{BASE}/items/NOPE",
        json={"code": "ITEM_NOT_FOUND", "detail": "no item"},
        status=404,
    )
    responses.get(
        f"{BASE}/locations", json={"results": [{"location": "MAIN", "description": ""}]}
    )
    (listed,) = gateway.list_items()
    assert (listed["price"], listed["on_hand"]) == (Decimal("19.99"), Decimal("155"))
    assert gateway.get_item("CABLE/6")["price"] == Decimal("19.99")
    with pytest.raises(NotFoundError) as caught:
        gateway.get_item("NOPE")
    assert caught.value.code == "ITEM_NOT_FOUND"
    assert gateway.list_locations() == [{"location": "MAIN", "description": ""}]


@responses.activate
def test_put_customer_tells_created_from_updated(gateway):
    responses.put(f"{BASE}/customers/WEB001", json=CUSTOMER, status=201)
    responses.put(f"{BASE}/customers/WEB001", json=CUSTOMER, status=200)
    first = gateway.put_customer("WEB001", {"company": "Buyer LLC"})
    second = gateway.put_customer("WEB001", {"company": "Buyer LLC"})
    assert (first["created"], second["created"]) == (True, False)
    assert first["balance"] == Decimal("0.00")
    assert first["last_payment_date"] is None


@responses.activate
def test_a_body_that_is_not_json_is_transient_with_an_unknown_outcome(gateway):
    responses.post(f"{BASE}/gl-batches", body="<html>proxy</html>", status=201)
    with pytest.raises(ConnectorError) as caught:
        gateway.post_gl_batch("cb-1", {})
    assert (caught.value.code, caught.value.transient) == ("BAD_RESPONSE", True)
    assert caught.value.outcome_unknown is True


# --- end to end against the sandbox ------------------------------------------------------


@pytest.fixture
def sandbox_gateway(db, http):
    from integrations.sandbox.sagepro.seed import seed

    seed()
    return SageProConnector(SANDBOX, settings.SANDBOX_SAGEPRO_API_KEY)


def test_the_client_against_the_sandbox(sandbox_gateway):
    from integrations.sandbox.sagepro.seed import period_date

    gateway = sandbox_gateway
    date = period_date(0)
    body = {
        "date": date,
        "description": "Chargeback",
        "reference": "PT-1",
        "source": "CB",
        "lines": [
            {"account": "6100-00", "debit": Decimal("15.00"), "memo": "fee"},
            {"account": "1100-00", "credit": Decimal("15.00")},
        ],
    }
    batch = gateway.post_gl_batch("cb-1", body)
    assert (batch["status"], batch["dr_total"], batch["replayed"]) == (
        "U",
        Decimal("15.00"),
        False,
    )
    assert gateway.post_gl_batch("cb-1", body)["replayed"] is True
    assert (
        gateway.find_gl_batches(idempotency_key="cb-1")[0]["batch_no"]
        == (batch["batch_no"])
    )
    assert gateway.get_gl_batch(batch["batch_no"])["date"] == date
    with pytest.raises(NotFoundError):
        gateway.get_gl_batch("999999")

    made = gateway.put_customer(
        "web001", {"company": "Buyer LLC", "email": "pat@buyer.example"}
    )
    assert (made["custno"], made["created"]) == ("WEB001", True)
    assert [c["custno"] for c in gateway.find_customers(email="PAT@buyer.example")] == [
        "WEB001"
    ]

    order = gateway.post_sales_order(
        "so-1",
        {
            "custno": "WEB001",
            "date": date,
            "reference": "#1001",
            "lines": [
                {"item": "WIDGET", "quantity": Decimal("2"), "location": "MAIN"},
                {"item": "CABLE-6FT", "quantity": Decimal("1.00")},
            ],
            "tax": Decimal("3.05"),
            "freight": Decimal("5.00"),
            "invoice": True,
        },
    )
    assert order["subtotal"] == Decimal("47.23")
    assert order["total"] == Decimal("55.28")
    assert gateway.get_invoice(order["invno"])["invamt"] == Decimal("55.28")
    assert gateway.get_customer("WEB001")["balance"] == Decimal("55.28")
    assert gateway.find_sales_orders(reference="#1001")[0]["sono"] == order["sono"]
    assert gateway.get_sales_order(order["sono"])["lines"][1]["price"] == Decimal(
        "7.25"
    )
    items = {item["item"]: item for item in gateway.list_items()}
    assert items["GADGET"]["price"] == Decimal("49.50")
    assert gateway.get_item("svc-install")["on_hand"] == Decimal("0.00")
    assert [loc["location"] for loc in gateway.list_locations()] == ["MAIN", "WEST"]


def test_the_sandbox_admin_shows_batches_orders_and_items(
    sandbox_gateway, admin_client
):
    from integrations.sandbox.sagepro.orders_models import GlBatch, SoMast
    from integrations.sandbox.sagepro.seed import period_date

    sandbox_gateway.post_gl_batch(
        "cb-1",
        {
            "date": period_date(0),
            "lines": [
                {"account": "6100-00", "debit": Decimal("1.00")},
                {"account": "1100-00", "credit": Decimal("1.00")},
            ],
        },
    )
    sandbox_gateway.post_sales_order(
        "so-1",
        {
            "custno": "ACME",
            "date": period_date(0),
            "reference": "#9",
            "lines": [{"item": "WIDGET", "quantity": Decimal("1")}],
        },
    )
    for model in ("glbatch", "somast", "icitem", "icloct", "iciloc"):
        page = admin_client.get(f"/admin/sandbox_sagepro/{model}/")
        assert page.status_code == 200, model
    batch, order = GlBatch.objects.get(), SoMast.objects.get()
    page = admin_client.get(f"/admin/sandbox_sagepro/glbatch/{batch.pk}/change/")
    assert page.status_code == 200 and b"6100-00" in page.content
    page = admin_client.get(f"/admin/sandbox_sagepro/somast/{order.pk}/change/")
    assert page.status_code == 200 and b"WIDGET" in page.content
