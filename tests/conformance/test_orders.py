"""Contract 4.10: GL batches, customer writes and the e-mail search, sales orders,
items and locations.

The sandbox implements them; an on-site agent whose site mapping does not cover them
answers every path 501 `NOT_SUPPORTED_AT_SITE` (directly and through the relay).
"""

import datetime
import re
from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conformance.contract import (
    check_customer,
    check_customer_balance,
    check_invoice,
    customer,
    dec,
    expect_error,
    invoice,
    ok,
)

BATCH_FIELDS = {
    "batch_no", "status", "yearprd", "date", "description", "reference", "source",
    "dr_total", "cr_total", "lines", "idempotency_key", "created_at",
}  # fmt: skip
ORDER_FIELDS = {
    "sono", "custno", "date", "reference", "ponum", "status", "ship_to", "lines",
    "subtotal", "tax", "freight", "total", "invno", "idempotency_key", "created_at",
}  # fmt: skip


@pytest.fixture
def sage(sandbox_target):
    return sandbox_target


def line(account, debit="0.00", credit="0.00", memo=""):
    return {"account": account, "debit": debit, "credit": credit, "memo": memo}


def batch_body(target, *, offset=0, lines=None, **extra):
    body = {
        "date": target.period_date(offset).isoformat(),
        "description": "Chargeback 4471",
        "reference": "PT-4471",
        "source": "CB",
        "lines": lines
        if lines is not None
        else [line("6100-00", debit="25.00"), line("1100-00", credit="25.00")],
    }
    body.update(extra)
    return body


def post_batch(target, key, body):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return target.call("POST", "/gl-batches", json=body, headers=headers)


def order_body(target, *, offset=0, lines=None, **extra):
    body = {
        "custno": "ACME",
        "date": target.period_date(offset).isoformat(),
        "reference": "#1001",
        "ponum": "PO-77",
        "ship_to": {
            "name": "Acme Receiving",
            "address1": "1 Dock Rd",
            "address2": "",
            "city": "Portland",
            "state": "OR",
            "zip": "97201",
            "country": "USA",
        },
        "lines": lines
        if lines is not None
        else [
            {
                "item": "widget",
                "description": "Widget",
                "quantity": "3.00",
                "price": "19.99",
                "location": "main",
                "taxable": True,
            },
            {"item": "SVC-INSTALL", "quantity": "1.50", "price": "120.00"},
        ],
        "tax": "8.10",
        "freight": "12.00",
        "invoice": True,
    }
    body.update(extra)
    return body


def post_order(target, key, body):
    headers = {"Idempotency-Key": key} if key is not None else {}
    return target.call("POST", "/sales-orders", json=body, headers=headers)


def put_customer(target, custno, body):
    return target.call("PUT", f"/customers/{custno}", json=body)


def check_batch(body):
    assert set(body) == BATCH_FIELDS, body
    assert re.fullmatch(r"\d{6}", body["batch_no"]), body
    assert dec(body["dr_total"]) == sum(dec(x["debit"]) for x in body["lines"])
    assert dec(body["cr_total"]) == sum(dec(x["credit"]) for x in body["lines"])
    assert datetime.datetime.fromisoformat(body["created_at"]).tzinfo is not None


def check_order(body):
    assert set(body) == ORDER_FIELDS, body
    subtotal = sum(dec(x["extended"]) for x in body["lines"])
    assert dec(body["subtotal"]) == subtotal
    assert dec(body["total"]) == subtotal + dec(body["tax"]) + dec(body["freight"])


# --- GL batches -------------------------------------------------------------------------


def test_a_balanced_batch_lands_unposted(sage):
    date = sage.period_date(0)
    body = batch_body(
        sage,
        lines=[
            line("6100-00", debit="25.00", memo="chargeback fee"),
            line("610000", debit="5.50"),
            line(" 1100-00 ", credit="30.50", memo="card clearing"),
        ],
    )
    answer = post_batch(sage, "cb-1", body)
    batch = ok(answer, 201)
    check_batch(batch)
    assert {k: v for k, v in batch.items() if k != "created_at"} == {
        "batch_no": "000001",
        "status": "U",
        "yearprd": f"{date.year:04d}{date.month:02d}",
        "date": date.isoformat(),
        "description": "Chargeback 4471",
        "reference": "PT-4471",
        "source": "CB",
        "dr_total": "30.50",
        "cr_total": "30.50",
        "lines": [
            {
                "line_no": 1,
                "account": "6100-00",
                "debit": "25.00",
                "credit": "0.00",
                "memo": "chargeback fee",
            },
            {
                "line_no": 2,
                "account": "6100-00",
                "debit": "5.50",
                "credit": "0.00",
                "memo": "",
            },
            {
                "line_no": 3,
                "account": "1100-00",
                "debit": "0.00",
                "credit": "30.50",
                "memo": "card clearing",
            },
        ],
        "idempotency_key": "cb-1",
    }
    assert ok(sage.call("GET", "/gl-batches/000001")) == batch
    assert ok(sage.call("GET", "/gl-batches/1")) == batch
    assert ok(sage.get("/gl-batches", idempotency_key="cb-1"))["results"] == [batch]
    assert ok(sage.get("/gl-batches", reference="PT-4471"))["results"] == [batch]
    dated = ok(sage.get("/gl-batches", date_from=date.isoformat()))["results"]
    assert dated == [batch]
    before = (date - datetime.timedelta(days=1)).isoformat()
    assert ok(sage.get("/gl-batches", date_to=before))["results"] == []


def test_a_batch_replays_with_the_same_key_and_conflicts_with_another_body(sage):
    first = ok(post_batch(sage, "cb-1", batch_body(sage)), 201)
    again = post_batch(sage, "cb-1", batch_body(sage))
    assert again.status == 200
    assert again.json == first
    other = batch_body(sage, description="Something else")
    body = expect_error(post_batch(sage, "cb-1", other), 409, "IDEMPOTENCY_CONFLICT")
    assert "000001" in body["detail"]
    second = ok(post_batch(sage, "cb-2", batch_body(sage)), 201)
    assert second["batch_no"] == "000002"  # another key: another batch


@pytest.mark.parametrize(
    ("lines", "words"),
    [
        ([line("6100-00", debit="25.00"), line("1100-00", credit="24.99")], "25.00"),
        ([], "at least"),
        ([line("6100-00", debit="5.00", credit="5.00")], "lines.0"),
        (
            [line("6100-00", debit="5.00"), line("1100-00"), line("1100-00", "0", "5")],
            "lines.1",
        ),
    ],
    ids=["unbalanced", "no-lines", "both-sides", "neither-side"],
)
def test_only_balanced_batches_are_written(sage, lines, words):
    answer = post_batch(sage, "cb-1", batch_body(sage, lines=lines))
    body = expect_error(answer, 422, "BATCH_UNBALANCED")
    assert words in body["detail"]
    assert ok(sage.get("/gl-batches", idempotency_key="cb-1"))["results"] == []


@pytest.mark.parametrize(
    ("account", "code"),
    [
        ("7777-00", "ACCOUNT_NOT_FOUND"),
        ("1050-00", "ACCOUNT_NOT_FOUND"),  # deleted
        ("6900-00", "ACCOUNT_INACTIVE"),
        ("Ω-00", "ACCOUNT_NOT_FOUND"),  # a key outside the code page: not found
        ("61\x0000", "ACCOUNT_NOT_FOUND"),
    ],
)
def test_unknown_and_inactive_accounts_are_refused_naming_the_line(sage, account, code):
    lines = [line("6100-00", debit="25.00"), line(account, credit="25.00")]
    body = expect_error(
        post_batch(sage, "cb-1", batch_body(sage, lines=lines)), 422, code
    )
    assert "lines.1.account" in body["detail"]


@pytest.mark.parametrize(
    ("offset", "code"),
    [
        (-2, "PERIOD_LOCKED"),
        (-3, "PERIOD_CLOSED"),
        (-6, "PERIOD_LOCKED"),  # permanently locked
        (1, "FUTURE_PERIOD"),
        (24, "PERIOD_NOT_DEFINED"),
    ],
)
def test_a_batch_outside_an_open_period_is_refused(sage, offset, code):
    expect_error(post_batch(sage, "cb-1", batch_body(sage, offset=offset)), 422, code)


def test_the_previous_open_period_takes_batches(sage):
    batch = ok(post_batch(sage, "cb-1", batch_body(sage, offset=-1)), 201)
    date = sage.period_date(-1)
    assert batch["yearprd"] == f"{date.year:04d}{date.month:02d}"


def test_a_sage_user_posts_a_batch(sage):
    ok(post_batch(sage, "cb-1", batch_body(sage)), 201)
    posted = ok(sage.call("POST", "/gl-batches/000001/post"))
    assert posted["status"] == "P"
    assert ok(sage.call("GET", "/gl-batches/000001"))["status"] == "P"
    assert ok(sage.call("POST", "/gl-batches/000001/post")) == posted  # once
    # A replay answers the batch as it is now.
    assert ok(post_batch(sage, "cb-1", batch_body(sage)))["status"] == "P"


@pytest.mark.parametrize("number", ["999999", "1234567", "abc", "Ω", "%00"])
def test_an_unknown_batch_is_404(sage, number):
    expect_error(sage.call("GET", f"/gl-batches/{number}"), 404, "BATCH_NOT_FOUND")
    expect_error(
        sage.call("POST", f"/gl-batches/{number}/post"), 404, "BATCH_NOT_FOUND"
    )


def test_batch_numbers_skip_used_numbers_and_wrap(sage):
    from integrations.sandbox.sagepro.models import SysData
    from integrations.sandbox.sagepro.orders_models import GlBatch

    ok(post_batch(sage, "cb-1", batch_body(sage)), 201)  # 000001
    GlBatch.objects.create(
        batchno="000002", yearprd="000000", gldate=sage.period_date(0)
    )  # a Sage user's batch
    assert ok(post_batch(sage, "cb-2", batch_body(sage)), 201)["batch_no"] == "000003"
    SysData.objects.filter(module="GL", counter="BATCHNO").update(nextno=999_999)
    assert ok(post_batch(sage, "cb-3", batch_body(sage)), 201)["batch_no"] == "999999"
    # Wrapped: 1, 2 and 3 are used.
    assert ok(post_batch(sage, "cb-4", batch_body(sage)), 201)["batch_no"] == "000004"


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"date": "2025-02-30"}, {"date"}),
        ({"date": None}, {"date"}),
        ({"description": "x" * 31}, {"description"}),
        ({"reference": "r" * 41}, {"reference"}),
        ({"source": "CBX"}, {"source"}),
        ({"description": "Rückbuchung 😀"}, {"description"}),
        ({"lines": "all of them"}, {"lines"}),
        ({"lines": [42]}, {"lines.0"}),
        ({"lines": [{"account": "6100-00", "debit": 25.0}]}, {"lines.0.debit"}),
        ({"lines": [{"account": "6100-00", "debit": "-1.00"}]}, {"lines.0.debit"}),
        ({"lines": [{"account": "6100-00", "credit": "1.001"}]}, {"lines.0.credit"}),
        ({"lines": [{"debit": "1.00"}]}, {"lines.0.account"}),
        ({"lines": [{"account": ["6100"], "debit": "1.00"}]}, {"lines.0.account"}),
        ({"lines": [{"account": "6100-00", "memo": "m" * 31}]}, {"lines.0.memo"}),
    ],
)
def test_a_malformed_batch_is_400_naming_the_field(sage, change, fields):
    answer = post_batch(sage, "cb-1", batch_body(sage, **change))
    expect_error(answer, 400, "VALIDATION_ERROR", fields=fields)


def test_a_batch_too_large_for_the_ledger_is_a_400(sage):
    big = "999999999999.99"
    lines = [line("6100-00", debit=big), line("6100-00", debit=big)] + [
        line("1100-00", credit=big),
        line("1100-00", credit=big),
    ]
    answer = post_batch(sage, "cb-1", batch_body(sage, lines=lines))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"lines"})


def test_an_order_too_large_for_the_ledger_is_a_400(sage):
    big = "999999999999.99"
    lines = [{"item": "WIDGET", "quantity": big, "price": big}]
    answer = post_order(sage, "so-1", order_body(sage, lines=lines))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"lines.0.quantity"})
    lines = [{"item": "WIDGET", "quantity": "1.00", "price": big}]
    answer = post_order(sage, "so-1", order_body(sage, lines=lines))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"total"})
    assert ok(sage.get("/sales-orders", idempotency_key="so-1"))["results"] == []


@pytest.mark.parametrize("key", [None, "", "k" * 101])
def test_a_batch_needs_an_idempotency_key(sage, key):
    answer = post_batch(sage, key, batch_body(sage))
    expect_error(answer, 400, "VALIDATION_ERROR", fields={"Idempotency-Key"})


def test_a_document_writes_its_batch_inside_its_own_transaction(sage):
    """Helper use (a credit memo): `post_gl_batch` in the caller's transaction."""
    from django.db import transaction

    from integrations.sandbox.sagepro import ledger, orders_ledger
    from integrations.sandbox.sagepro.orders_models import GlBatch

    company = ledger.get_company("01")
    lines = [
        orders_ledger.JournalLine("4900-00", debit=Decimal("40.00")),
        orders_ledger.JournalLine("1100-00", credit=Decimal("40.00"), memo="refund"),
    ]
    with pytest.raises(RuntimeError), transaction.atomic():
        orders_ledger.post_gl_batch(
            company, sage.period_date(0), "Credit memo", "PT-9", "AR", lines
        )
        raise RuntimeError("the memo failed after its batch")
    assert not GlBatch.objects.exists()
    with transaction.atomic():
        batch = orders_ledger.post_gl_batch(
            company, sage.period_date(0), "Credit memo", "PT-9", "AR", lines
        )
    assert (batch.batchno, batch.bstat, batch.drtotal) == ("000001", "U", 40)
    found = ok(sage.get("/gl-batches", reference="PT-9"))["results"]
    assert [b["idempotency_key"] for b in found] == [""]
    with pytest.raises(ledger.GatewayError) as caught:
        orders_ledger.post_gl_batch(
            company, sage.period_date(-3), "Credit memo", "PT-9", "AR", lines
        )
    assert caught.value.code == "PERIOD_CLOSED"


# --- customers --------------------------------------------------------------------------


NEW_CUSTOMER = {
    "company": "Storefront Buyer LLC",
    "contact": "Pat Doe",
    "address1": "9 Elm St",
    "address2": "Suite 4",
    "city": "Seattle",
    "state": "WA",
    "zip": "98101",
    "country": "USA",
    "phone": "555-0199",
    "email": "Pat@Buyer.example",
    "terms": "Prepaid",
    "credit_status": "",
}


def test_a_customer_is_created_then_updated(sage):
    created = ok(put_customer(sage, "web001", NEW_CUSTOMER), 201)
    check_customer(created)
    assert created["custno"] == "WEB001"
    for name, value in NEW_CUSTOMER.items():
        assert created[name] == value, name
    assert created["balance"] == "0.00"
    assert customer(sage, "WEB001") == created

    feed = ok(sage.get("/customers", changed_since=""))
    updated = ok(put_customer(sage, "WEB001", {"phone": "555-0100", "city": "Tacoma"}))
    assert (updated["phone"], updated["city"]) == ("555-0100", "Tacoma")
    assert updated["company"] == "Storefront Buyer LLC"  # absent fields are kept
    changed = ok(sage.get("/customers", changed_since=feed["next_cursor"]))
    assert [c["custno"] for c in changed["results"]] == ["WEB001"]


def test_an_existing_seeded_customer_is_updated_and_keeps_its_balance(sage):
    before = customer(sage, "ACME")
    after = ok(put_customer(sage, "acme", {"contact": "Receivables"}), 200)
    assert after["contact"] == "Receivables"
    assert after["balance"] == before["balance"]


def test_a_customer_put_on_hold_cannot_order(sage):
    ok(put_customer(sage, "WEB002", {**NEW_CUSTOMER, "credit_status": "h"}), 201)
    assert customer(sage, "WEB002")["credit_status"] == "H"
    answer = post_order(sage, "so-1", order_body(sage, custno="WEB002"))
    expect_error(answer, 422, "CUSTOMER_ON_HOLD")
    ok(put_customer(sage, "WEB002", {"credit_status": ""}))
    ok(post_order(sage, "so-1", order_body(sage, custno="WEB002")), 201)


def test_a_deleted_customer_comes_back_as_new(sage):
    sage.seed_customer("GONE", "Gone Away Ltd")
    sage.delete_customer("GONE")
    back = ok(put_customer(sage, "GONE", {"company": "Back Again"}), 201)
    assert (back["company"], back["contact"]) == ("Back Again", "")


@pytest.mark.parametrize(
    ("custno", "body", "fields"),
    [
        ("WEB003", {"contact": "No Name"}, {"company"}),
        ("WEB003", {"company": "x" * 36}, {"company"}),
        ("WEB003", {"company": "Ok", "city": "c" * 21}, {"city"}),
        ("WEB003", {"company": "Ok", "email": "not-an-address"}, {"email"}),
        ("WEB003", {"company": "Ok", "credit_status": "X"}, {"credit_status"}),
        ("WEB003", {"company": "Ok", "phone": 5550100}, {"phone"}),
        ("WEB003", {"company": "汉字 Trading"}, {"company"}),
        ("WEB003", {"company": "Ok", "balance": "0.00"}, {"body"}),
        ("WEB003", ["company"], {"body"}),
        ("TOOLONG", {"company": "Ok"}, {"custno"}),
        ("A%20B", {"company": "Ok"}, {"custno"}),
    ],
)
def test_a_malformed_customer_is_400_naming_the_field(sage, custno, body, fields):
    answer = put_customer(sage, custno, body)
    expect_error(answer, 400, "VALIDATION_ERROR", fields=fields)
    expect_error(sage.call("GET", "/customers/WEB003"), 404, "CUSTOMER_NOT_FOUND")


def test_customers_are_found_by_email_case_insensitively(sage):
    ok(put_customer(sage, "WEB001", NEW_CUSTOMER), 201)
    from integrations.sandbox.sagepro import seed

    seed.seed_customer("GONE", "Gone", email="pat@buyer.example")
    sage.delete_customer("GONE")
    found = ok(sage.get("/customers", email="PAT@buyer.EXAMPLE"))
    assert set(found) == {"results"}
    assert [c["custno"] for c in found["results"]] == ["WEB001"]
    check_customer(found["results"][0])
    acme = ok(sage.get("/customers", email="ap@acme.example"))["results"]
    assert [c["custno"] for c in acme] == ["ACME"]
    assert ok(sage.get("/customers", email="pat@buyer"))["results"] == []  # exact
    expect_error(sage.get("/customers", email=" "), 400, "VALIDATION_ERROR")
    expect_error(sage.get("/customers", email="a\x00b"), 400, "VALIDATION_ERROR")
    # Without `email`, GET /customers is still the change feed.
    feed = ok(sage.get("/customers"))
    assert {"results", "next_cursor", "has_more"} == set(feed)


# --- items and locations -----------------------------------------------------------------


def test_items_and_locations_are_listed(sage):
    items = {i["item"]: i for i in ok(sage.get("/items"))["results"]}
    assert set(items) == {"CABLE-6FT", "GADGET", "OLDPART", "SVC-INSTALL", "WIDGET"}
    assert items["WIDGET"] == {
        "item": "WIDGET",
        "description": "Widget, standard",
        "price": "19.99",
        "on_hand": "155.00",
        "active": True,
    }
    assert (items["GADGET"]["price"], items["CABLE-6FT"]["price"]) == ("49.50", "7.25")
    assert items["SVC-INSTALL"]["price"] == "120.00"
    assert items["SVC-INSTALL"]["on_hand"] == "0.00"
    assert items["OLDPART"]["active"] is False
    assert ok(sage.call("GET", "/items/widget")) == items["WIDGET"]
    assert ok(sage.call("GET", "/items/OLDPART"))["active"] is False
    locations = ok(sage.get("/locations"))["results"]
    assert [loc["location"] for loc in locations] == ["MAIN", "WEST"]
    assert all(loc["description"] for loc in locations)


@pytest.mark.parametrize("item", ["NOSUCH", "x" * 21, "Ω", "%00", "a%20b"])
def test_an_unknown_item_is_404(sage, item):
    expect_error(sage.call("GET", f"/items/{item}"), 404, "ITEM_NOT_FOUND")


def test_the_seed_stays_idempotent_with_items(sage):
    from integrations.sandbox.sagepro import seed

    again = seed.seed("01")
    assert set(again.values()) == {0}
    assert seed.seed_item("bolt", "Bolt", "0.10", on_hand={"MAIN": "9.00"}) == (
        "BOLT",
        True,
    )
    assert seed.seed_location("east", "East") == ("EAST", True)
    assert ok(sage.call("GET", "/items/BOLT"))["on_hand"] == "9.00"


# --- sales orders ------------------------------------------------------------------------


def test_a_sales_order_and_its_invoice_are_written(sage):
    date = sage.period_date(0)
    balance = dec(customer(sage, "ACME")["balance"])
    answer = post_order(sage, "so-1", order_body(sage))
    order = ok(answer, 201)
    check_order(order)
    assert order["sono"] == "500001"
    assert order["invno"]
    assert {k: v for k, v in order.items() if k not in {"created_at", "invno"}} == {
        "sono": "500001",
        "custno": "ACME",
        "date": date.isoformat(),
        "reference": "#1001",
        "ponum": "PO-77",
        "status": "invoiced",
        "ship_to": {
            "name": "Acme Receiving",
            "address1": "1 Dock Rd",
            "address2": "",
            "city": "Portland",
            "state": "OR",
            "zip": "97201",
            "country": "USA",
        },
        "lines": [
            {
                "line_no": 1,
                "item": "WIDGET",
                "description": "Widget",
                "quantity": "3.00",
                "price": "19.99",
                "extended": "59.97",
                "location": "MAIN",
                "taxable": True,
            },
            {
                "line_no": 2,
                "item": "SVC-INSTALL",
                "description": "Installation service",  # the item's
                "quantity": "1.50",
                "price": "120.00",
                "extended": "180.00",
                "location": "",
                "taxable": True,
            },
        ],
        "subtotal": "239.97",
        "tax": "8.10",
        "freight": "12.00",
        "total": "260.07",
        "idempotency_key": "so-1",
    }
    made = invoice(sage, order["invno"])
    check_invoice(made)
    assert (made["custno"], made["invamt"], made["balance"]) == (
        "ACME",
        "260.07",
        "260.07",
    )
    assert (made["ornum"], made["ponum"], made["invdte"]) == (
        "500001",
        "PO-77",
        date.isoformat(),
    )
    assert dec(customer(sage, "ACME")["balance"]) == balance + Decimal("260.07")
    check_customer_balance(sage, "ACME")
    assert ok(sage.call("GET", "/sales-orders/500001")) == order
    assert ok(sage.get("/sales-orders", reference="#1001"))["results"] == [order]
    assert ok(sage.get("/sales-orders", idempotency_key="so-1"))["results"] == [order]


def test_an_order_without_invoice_leaves_the_ledger_alone(sage):
    balance = customer(sage, "ACME")["balance"]
    body = order_body(
        sage,
        invoice=False,
        tax=None,
        freight=None,
        lines=[{"item": "GADGET", "quantity": "2.00", "location": "WEST"}],
    )
    order = ok(post_order(sage, "so-1", body), 201)
    check_order(order)
    assert (order["status"], order["invno"]) == ("open", "")
    assert order["lines"][0]["price"] == "49.50"  # the item's price
    assert (order["subtotal"], order["tax"], order["freight"], order["total"]) == (
        "99.00",
        "0.00",
        "0.00",
        "99.00",
    )
    assert customer(sage, "ACME")["balance"] == balance


def test_an_order_replays_conflicts_and_refuses_a_duplicate_reference(sage):
    first = ok(post_order(sage, "so-1", order_body(sage)), 201)
    again = post_order(sage, "so-1", order_body(sage))
    assert (again.status, again.json) == (200, first)
    assert len(ok(sage.get("/invoices", custno="ACME"))["results"]) == len(
        ok(sage.get("/invoices", custno="ACME"))["results"]
    )
    conflict = post_order(sage, "so-1", order_body(sage, ponum="PO-78"))
    expect_error(conflict, 409, "IDEMPOTENCY_CONFLICT")
    duplicate = post_order(sage, "so-2", order_body(sage))
    body = expect_error(duplicate, 409, "DUPLICATE_SALES_ORDER")
    assert "500001" in body["detail"]


def test_an_order_replay_writes_no_second_invoice(sage):
    ok(post_order(sage, "so-1", order_body(sage)), 201)
    count = len(ok(sage.get("/invoices", custno="ACME"))["results"])
    ok(post_order(sage, "so-1", order_body(sage)), 200)
    assert len(ok(sage.get("/invoices", custno="ACME"))["results"]) == count


@pytest.mark.parametrize(
    ("lines", "code", "where"),
    [
        ([{"item": "WIDGET", "quantity": "1.00"}, {"item": "NOPE", "quantity": "1.00"}],
         "ITEM_NOT_FOUND", "lines.1.item"),
        ([{"item": "OLDPART", "quantity": "1.00"}], "ITEM_NOT_FOUND", "lines.0.item"),
        ([{"item": "WIDGET", "quantity": "1.00", "location": "EAST"}],
         "LOCATION_NOT_FOUND", "lines.0.location"),
    ],
)  # fmt: skip
def test_unknown_items_and_locations_are_refused_naming_the_line(
    sage, lines, code, where
):
    answer = post_order(sage, "so-1", order_body(sage, lines=lines))
    body = expect_error(answer, 422, code)
    assert where in body["detail"]
    assert ok(sage.get("/sales-orders", idempotency_key="so-1"))["results"] == []


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"custno": "NOSUCH"}, 422, "CUSTOMER_NOT_FOUND"),
        ({"custno": "HOLDCO"}, 422, "CUSTOMER_ON_HOLD"),
        ({"date": "offset:-3"}, 422, "PERIOD_CLOSED"),
        ({"date": "offset:-2"}, 422, "PERIOD_LOCKED"),
        ({"date": "offset:2"}, 422, "FUTURE_PERIOD"),
    ],
)
def test_an_order_the_ledger_refuses(sage, change, status, code):
    if str(change.get("date", "")).startswith("offset:"):
        offset = int(change["date"].split(":")[1])
        change = {"date": sage.period_date(offset).isoformat()}
    answer = post_order(sage, "so-1", order_body(sage, **change))
    expect_error(answer, status, code)
    assert ok(sage.get("/sales-orders", idempotency_key="so-1"))["results"] == []


@pytest.mark.parametrize(
    ("change", "fields"),
    [
        ({"custno": "TOOLONG"}, {"custno"}),
        ({"custno": 42}, {"custno"}),
        ({"reference": ""}, {"reference"}),
        ({"reference": "r" * 21}, {"reference"}),
        ({"reference": "#1001 😀"}, {"reference"}),
        ({"ponum": "p" * 21}, {"ponum"}),
        ({"date": "15/01/2025"}, {"date"}),
        ({"tax": 8.1}, {"tax"}),
        ({"freight": "-1.00"}, {"freight"}),
        ({"invoice": "yes"}, {"invoice"}),
        ({"ship_to": "here"}, {"ship_to"}),
        ({"ship_to": {"city": "c" * 21}}, {"ship_to.city"}),
        ({"ship_to": {"floor": "3"}}, {"ship_to"}),
        ({"lines": []}, {"lines"}),
        ({"lines": {"item": "WIDGET"}}, {"lines"}),
        ({"lines": [None]}, {"lines.0"}),
        ({"lines": [{"item": "WIDGET", "quantity": 3}]}, {"lines.0.quantity"}),
        ({"lines": [{"item": "WIDGET", "quantity": "0.00"}]}, {"lines.0.quantity"}),
        ({"lines": [{"item": "WIDGET", "quantity": "1.005"}]}, {"lines.0.quantity"}),
        ({"lines": [{"item": "WIDGET", "quantity": "1", "price": 19.99}]},
         {"lines.0.price"}),
        ({"lines": [{"item": "", "quantity": "1.00"}]}, {"lines.0.item"}),
        ({"lines": [{"item": "W" * 21, "quantity": "1.00"}]}, {"lines.0.item"}),
        ({"lines": [{"item": "WIDGET", "quantity": "1", "location": ["MAIN"]}]},
         {"lines.0.location"}),
        ({"lines": [{"item": "WIDGET", "quantity": "1", "taxable": "Y"}]},
         {"lines.0.taxable"}),
        ({"lines": [{"item": "WIDGET", "quantity": "1", "description": "d" * 51}]},
         {"lines.0.description"}),
    ],
)  # fmt: skip
def test_a_malformed_order_is_400_naming_the_field(sage, change, fields):
    answer = post_order(sage, "so-1", order_body(sage, **change))
    expect_error(answer, 400, "VALIDATION_ERROR", fields=fields)


@pytest.mark.parametrize("sono", ["999999", "x" * 11, "Ω", "%00"])
def test_an_unknown_sales_order_is_404(sage, sono):
    expect_error(
        sage.call("GET", f"/sales-orders/{sono}"), 404, "SALES_ORDER_NOT_FOUND"
    )


# --- hostile bodies: always a 4xx, never a 5xx --------------------------------------------

JUNK = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=50)
    | st.sampled_from(["", "1.00", "-1.00", "WIDGET", "ACME", "6100-00", "\x00"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(
        st.sampled_from(
            ["date", "lines", "account", "debit", "credit", "memo", "custno",
             "item", "quantity", "price", "location", "ship_to", "reference",
             "company", "email", "tax", "freight", "invoice", "description"]
        ) | st.text(max_size=5),
        inner,
        max_size=6,
    ),
    max_leaves=20,
)  # fmt: skip


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(body=JUNK)
def test_hostile_bodies_are_refused_with_a_4xx(sage, body):
    for method, path in (
        ("POST", "/gl-batches"),
        ("POST", "/sales-orders"),
        ("PUT", "/customers/FUZZ"),
    ):
        answer = sage.call(method, path, json=body, headers={"Idempotency-Key": "fz"})
        assert answer.status < 500, (path, body, answer)
        if answer.status >= 400:
            assert isinstance(answer.json, dict) and answer.json["code"], answer


@pytest.mark.parametrize(
    "raw",
    [
        b"{",
        b"[" * 5000 + b"]" * 5000,
        b'{"lines": "' + b"x" * 200_000 + b'"}',
        b"\xff\xfe not utf-8",
        b'{"date": "\\ud800"}',
    ],
    ids=["cut-off", "deep", "huge", "not-utf8", "lone-surrogate"],
)
@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/gl-batches"), ("POST", "/sales-orders"), ("PUT", "/customers/FUZZ")],
)
def test_raw_junk_is_a_400(sage, raw, method, path):
    answer = sage.call(method, path, body=raw, headers={"Idempotency-Key": "fz"})
    expect_error(answer, 400, "VALIDATION_ERROR")


@pytest.mark.parametrize(
    "text", ["\ud800", "😀" * 10, "\x00", "a" * 5000, "Ω≈", "\u202e\u0000"]
)
def test_hostile_text_in_every_field_is_a_400(sage, text):
    for field in ("description", "reference", "source", "date"):
        answer = post_batch(sage, "fz", batch_body(sage, **{field: text}))
        expect_error(answer, 400, "VALIDATION_ERROR", fields={field})
    for field in ("reference", "ponum"):
        answer = post_order(sage, "fz", order_body(sage, **{field: text}))
        expect_error(answer, 400, "VALIDATION_ERROR", fields={field})
    # A key: too long for its column is a 400, else simply not found.
    answer = post_order(sage, "fz", order_body(sage, custno=text))
    assert (answer.status, answer.json["code"]) in {
        (400, "VALIDATION_ERROR"),
        (422, "CUSTOMER_NOT_FOUND"),
    }, answer
    item = [{"item": text, "quantity": "1.00"}]
    answer = post_order(sage, "fz", order_body(sage, lines=item))
    assert (answer.status, answer.json["code"]) in {
        (400, "VALIDATION_ERROR"),
        (422, "ITEM_NOT_FOUND"),
    }, answer
    for field in ("company", "email", "city"):
        answer = put_customer(sage, "FUZZ", {"company": "Ok", field: text})
        expect_error(answer, 400, "VALIDATION_ERROR", fields={field})
    answer = post_batch(sage, text, batch_body(sage))
    assert answer.status == 400 or answer.status == 201, answer


# --- an agent whose site mapping does not cover these documents ---------------------------

UNSUPPORTED = [
    ("POST", "/gl-batches"),
    ("GET", "/gl-batches"),
    ("GET", "/gl-batches/000001"),
    ("PUT", "/customers/WEB001"),
    ("GET", "/customers?email=ap%40acme.example"),
    ("POST", "/sales-orders"),
    ("GET", "/sales-orders"),
    ("GET", "/sales-orders/500001"),
    ("GET", "/items"),
    ("GET", "/items/WIDGET"),
    ("GET", "/locations"),
]


def check_unsupported(target):
    for method, path in UNSUPPORTED:
        body = {"company": "X"} if method != "GET" else None
        answer = target.call(
            method, path, json=body, headers={"Idempotency-Key": "na-1"}
        )
        assert answer.status == 501, (method, path, answer)
        error = expect_error(answer, 501, "NOT_SUPPORTED_AT_SITE")
        assert "by hand" in error["detail"], (method, path, error)


def test_the_agent_answers_501_not_supported_at_site(agent_target):
    check_unsupported(agent_target)


def test_the_relay_answers_501_not_supported_at_site(relay_target):
    check_unsupported(relay_target)
