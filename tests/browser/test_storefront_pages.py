"""A storefront order's page in a real browser: its lines, customer, Sage Pro sales
order and invoice, its payment and receipt, its state and history."""

import base64
import hashlib
import hmac
import json
from decimal import Decimal

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client

from integrations.models import Connection
from integrations.models.storefront import StorefrontOrder, StorefrontSettings
from tests.queue import run_queued_tasks
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "storefront-pages-2025"
SECRET = "shpss_browser_secret"


def _order_body():
    return {
        "id": 820001,
        "name": "#2001",
        "order_number": 2001,
        "email": "grace.hopper@example.com",
        "currency": "USD",
        "financial_status": "paid",
        "subtotal_price": "89.48",
        "total_tax": "7.14",
        "total_price": "104.62",
        "customer": {"id": 99, "first_name": "Grace", "last_name": "Hopper"},
        "billing_address": {
            "first_name": "Grace",
            "last_name": "Hopper",
            "address1": "1 Compiler Court",
            "city": "Arlington",
            "province_code": "VA",
            "zip": "22201",
            "country_code": "US",
        },
        "shipping_address": {
            "name": "Grace Hopper",
            "address1": "1 Compiler Court",
            "city": "Arlington",
            "province_code": "VA",
            "zip": "22201",
            "country_code": "US",
        },
        "line_items": [
            {"sku": "WIDGET", "title": "Widget", "quantity": 2, "price": "19.99"},
            {"sku": "GADGET", "title": "Gadget", "quantity": 1, "price": "49.50"},
        ],
        "shipping_lines": [{"title": "Ground", "price": "8.00"}],
    }


@pytest.fixture
def paid_order(live_connections):
    sagepro, paytrace = live_connections
    shop = Connection.objects.create(
        kind=Connection.Kind.STOREFRONT,
        name="Web shop",
        slug="web-shop",
        base_url="https://shop.example",
    )
    shop.webhook_secrets.create(label="current", secret=SECRET)
    StorefrontSettings.objects.create(
        connection=shop, paytrace=paytrace, sagepro=sagepro
    )
    client = Client()
    raw = json.dumps(_order_body()).encode()
    signature = base64.b64encode(
        hmac.new(SECRET.encode(), raw, hashlib.sha256).digest()
    ).decode()
    response = client.post(
        "/webhooks/storefront/web-shop/",
        data=raw,
        content_type="application/json",
        headers={
            "X-Shopify-Topic": "orders/create",
            "X-Shopify-Webhook-Id": "b1e5-2001",
            "X-Shopify-Hmac-Sha256": signature,
        },
    )
    assert response.status_code == 202
    run_queued_tasks()
    record = paytrace_record(invoice_id="#2001", amount=Decimal("104.62"))
    body = event_body("transaction.approved", record)
    response = post_event(
        client, paytrace.slug, body, sign(body, settings.DEMO_WEBHOOK_SECRET)
    )
    assert response.status_code == 202
    run_queued_tasks()
    order = StorefrontOrder.objects.get(reference_key="2001")
    assert order.state == StorefrontOrder.State.PAID, order.state_reason
    return order


def test_a_sales_order_page_shows_its_payment(
    browser_page, live_server, screenshot, paid_order
):
    get_user_model().objects.create_superuser("olive", "olive@example.com", PASSWORD)
    page = browser_page
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "olive")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")

    page.goto(
        f"{live_server.url}/admin/integrations/storefrontorder/?state__exact=paid"
    )
    page.click("text=#2001")
    page.wait_for_selector("#order-history")

    text = page.inner_text("#content")
    assert paid_order.sono in text and paid_order.invno in text
    assert "Paid and applied" in text and "GADGET" in text
    assert f"PayTrace {paid_order.transaction.transaction_id}" in text
    screenshot("sales-order-detail")
    page.click(f"text=PayTrace {paid_order.transaction.transaction_id}")
    page.wait_for_selector("#content")
    assert paid_order.transaction.transaction_id in page.inner_text("#content")
