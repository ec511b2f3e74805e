"""The demo's storefront: its seeded connection, and orders, payments and refunds sent
through the sandboxes so the storefront pages have data."""

import random
import re
from decimal import Decimal

import pytest
from django.test import override_settings

from integrations import demo
from integrations.models import Connection, WebhookSecret
from integrations.models.storefront import (
    StorefrontOrder,
    StorefrontRefund,
    StorefrontSettings,
)

SHOP_SECRET = "shpss_test-demo-storefront"


@override_settings(DEMO_MODE=True, DEMO_STOREFRONT_SECRET=SHOP_SECRET)
def test_seed_demo_creates_the_storefront_with_its_secret_and_settings(db):
    out = demo.seed_demo(port=8123)

    shop = Connection.objects.get(slug="storefront-sandbox")
    assert shop.kind == Connection.Kind.STOREFRONT and shop.is_active
    assert shop.active_webhook_secrets() == [SHOP_SECRET]
    config = StorefrontSettings.objects.get(connection=shop)
    assert config.paytrace.slug == "paytrace-sandbox"
    assert config.sagepro.slug == "sagepro-sandbox"
    assert "Connection storefront-sandbox: created" in out

    again = demo.seed_demo(port=8123)
    assert "Connection storefront-sandbox: unchanged" in again
    assert "Storefront settings for storefront-sandbox: unchanged" in again
    assert WebhookSecret.objects.filter(connection=shop).count() == 1


@override_settings(DEMO_MODE=True, DEMO_STOREFRONT_SECRET="")
def test_without_the_setting_the_default_storefront_secret_is_used(db, monkeypatch):
    monkeypatch.delenv("DEMO_STOREFRONT_SECRET", raising=False)
    demo.seed_demo(port=8000)
    shop = Connection.objects.get(slug="storefront-sandbox")
    assert shop.active_webhook_secrets() == [demo.DEFAULT_STOREFRONT_SECRET]


@pytest.fixture
def shop(db, paytrace_conn, sagepro_conn):
    connection = Connection.objects.create(
        kind=Connection.Kind.STOREFRONT,
        name="Storefront sandbox",
        slug="storefront-sandbox",
        base_url="http://testserver",
    )
    connection.webhook_secrets.create(secret=SHOP_SECRET)
    StorefrontSettings.objects.create(
        connection=connection,
        paytrace=paytrace_conn,
        sagepro=sagepro_conn,
        reference_prefix="SHOP",
    )
    return connection


def test_the_storefront_stream_orders_pays_and_refunds_through_the_sandboxes(
    shop, paytrace_conn, sage, http, run_tasks
):
    stream = demo.StorefrontStream(
        paytrace_conn.paytrace(),
        "http://testserver/webhooks/storefront/storefront-sandbox/",
        SHOP_SECRET,
        rng=random.Random(7),
        first_number=3001,
    )
    lines = [line for _ in range(6) for line in stream.step()]
    run_tasks()

    orders = StorefrontOrder.objects.filter(connection=shop)
    assert orders.count() == 6
    for order in orders:
        unknown = order.lines.filter(sku="NOSUCH-SKU").exists()
        expected = (
            StorefrontOrder.State.REVIEW if unknown else StorefrontOrder.State.PAID
        )
        assert order.state == expected, (order.name, order.state, order.state_reason)
    assert orders.filter(state=StorefrontOrder.State.PAID).exists()
    for line in lines:
        assert re.search(r"webhook 202", line)
        assert not any(card in line for card in demo.APPROVED_CARDS)

    token = stream.paytrace.access_token()
    stream.paytrace.call(
        "POST", "/_settle", headers={"Authorization": f"Bearer {token}"}
    )
    refunded = stream.refund()
    run_tasks()

    assert refunded and refunded[0].startswith("Refunded ")
    refund = StorefrontRefund.objects.get()
    assert refund.amount == (stream.sales[0].amount * Decimal("0.25")).quantize(
        Decimal("0.01")
    )


def test_the_demo_stream_adds_orders_refunds_and_one_chargeback_import():
    class Payments:
        rng = random.Random(1)

        def step(self):
            return ["payment"]

    class Shop:
        def step(self):
            return ["order"]

        def refund(self):
            return ["refund"]

    imports = []
    stream = demo.DemoStream(
        Payments(),
        Shop(),
        order_every=2,
        refund_every=3,
        chargebacks_after=4,
        import_chargebacks=lambda: imports.append(1) or "imported",
    )
    lines = [line for _ in range(8) for line in stream.step()]
    assert lines.count("payment") == 8
    assert lines.count("order") == 4
    assert lines.count("refund") == 2
    assert lines.count("imported") == 1 and imports == [1]


def test_the_stream_skips_a_sale_paytrace_will_not_refund_yet():
    from integrations.connectors.base import ConnectorError

    class PayTrace:
        def __init__(self):
            self.asked = []

        def refund(self, transaction_id, amount):
            self.asked.append(transaction_id)
            if transaction_id == "1":
                raise ConnectorError("not settled yet [817]", transient=False)
            return {"success": True, "transaction_id": "99"}

    shop = demo.StorefrontStream.__new__(demo.StorefrontStream)
    shop.paytrace = PayTrace()
    shop.sales = [
        demo.ShopSale(1001, 1, "1", Decimal("40.00")),
        demo.ShopSale(1002, 2, "2", Decimal("80.00")),
    ]
    sent = []
    shop.send_webhook = lambda topic, body: sent.append((topic, body)) or 202

    lines = shop.refund()

    assert shop.paytrace.asked == ["1", "2"]
    assert [s.refunded for s in shop.sales] == [False, True]
    assert lines == [
        "Refunded 20.00 USD of storefront order #1002 (PayTrace 99), webhook 202"
    ]
    assert sent[0][0] == "refunds/create"
