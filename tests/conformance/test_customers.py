"""Contract 4.1: `GET /customers/{custno}` and `/customers/{custno}/open-items`."""

from urllib.parse import quote

import pytest

from tests.conformance.contract import (
    CUSTOMER_FIELDS,
    check_customer,
    check_invoice,
    dec,
    expect_error,
    ok,
)


def test_a_customer_in_the_contract_shape(target):
    body = ok(target.call("GET", "/customers/ACME"))
    assert set(body) == CUSTOMER_FIELDS
    check_customer(body)
    assert body["custno"] == "ACME"
    assert body["company"] == "Acme Supply Co"  # the customer's name (ARCUST.COMPANY)
    assert body["company_id"] == "01"
    assert body["contact"] == "Accounts Payable"
    assert (body["city"], body["state"], body["country"]) == ("Portland", "OR", "USA")
    assert body["email"] == "ap@acme.example"
    assert body["terms"] == "Net 30"
    assert body["currency"] == "USD"
    assert body["credit_status"] == ""
    assert body["status"] == "A"
    assert body["ar_account"] == "1200-00"
    assert body["credit_limit"] in {"5000.00", "10000.00", "25000.00"}
    # Never paid: FoxPro's empty date `{}` is null, the amount 0.00.
    assert body["last_payment_date"] is None
    assert body["last_payment_amount"] == "0.00"


def test_a_customer_on_credit_hold(target):
    assert ok(target.call("GET", "/customers/HOLDCO"))["credit_status"] == "H"


def test_the_zero_balance_customer_owes_nothing(target):
    body = ok(target.call("GET", "/customers/ZEROBL"))
    assert body["balance"] == "0.00"
    assert ok(target.call("GET", "/customers/ZEROBL/open-items")) == {"results": []}


@pytest.mark.parametrize("custno", ["acme", "Acme", " ACME", "ACME  ", "  acme  "])
def test_customer_keys_are_normalised_in_the_path(target, custno):
    body = ok(target.call("GET", f"/customers/{quote(custno)}"))
    assert body["custno"] == "ACME"
    open_items = ok(target.call("GET", f"/customers/{quote(custno)}/open-items"))
    assert open_items["results"] and all(
        row["custno"] == "ACME" for row in open_items["results"]
    )


@pytest.mark.parametrize("custno", ["NOSUCH", "ACMEXYZ", "A" * 30, "%20"])
def test_an_unknown_or_too_long_customer_is_404(target, custno):
    expect_error(target.call("GET", f"/customers/{custno}"), 404, "CUSTOMER_NOT_FOUND")
    expect_error(
        target.call("GET", f"/customers/{custno}/open-items"), 404, "CUSTOMER_NOT_FOUND"
    )


def test_a_deleted_customer_is_not_found(target):
    target.seed_customer("GONE", "Gone Away Ltd")
    ok(target.call("GET", "/customers/GONE"))
    target.delete_customer("GONE")
    expect_error(target.call("GET", "/customers/GONE"), 404, "CUSTOMER_NOT_FOUND")
    expect_error(
        target.call("GET", "/customers/GONE/open-items"), 404, "CUSTOMER_NOT_FOUND"
    )
    expect_error(target.get("/invoices", custno="GONE"), 404, "CUSTOMER_NOT_FOUND")


def test_open_items_are_the_open_invoices_and_credit_memos_in_invno_order(target):
    rows = ok(target.call("GET", "/customers/IRONWD/open-items"))["results"]
    for row in rows:
        check_invoice(row)
        assert row["custno"] == "IRONWD"
        assert row["status"] == "open"
    assert [r["invno"] for r in rows] == sorted(r["invno"] for r in rows)
    memos = [r for r in rows if r["artype"] == "C"]
    assert [(m["invamt"], m["balance"]) for m in memos] == [("-75.00", "-75.00")]
    # The same query as GET /invoices?custno=…&status=open.
    assert (
        rows == ok(target.get("/invoices", custno="IRONWD", status="open"))["results"]
    )


def test_the_customer_balance_is_the_sum_of_its_live_invoice_balances(target):
    for custno in ("ACME", "IRONWD", "CASCAD", "ZEROBL"):
        balance = dec(ok(target.call("GET", f"/customers/{custno}"))["balance"])
        rows = ok(target.get("/invoices", custno=custno, status="all"))["results"]
        assert balance == sum(dec(r["balance"]) for r in rows), custno


def test_a_seeded_customer_reads_back(target):
    assert target.seed_customer("NEWCO", "New Company Inc") == "NEWCO"
    body = ok(target.call("GET", "/customers/newco"))
    check_customer(body)
    assert (body["custno"], body["company"], body["balance"]) == (
        "NEWCO",
        "New Company Inc",
        "0.00",
    )
    assert ok(target.call("GET", "/customers/NEWCO/open-items")) == {"results": []}
