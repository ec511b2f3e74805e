"""Contract 4.2: `GET /invoices` and `GET /invoices/{invno}`."""

from urllib.parse import quote

import pytest

from tests.conformance.contract import (
    CREDIT_MEMO,
    DELETED_INVOICE,
    INVOICE_FIELDS,
    OPEN_INVOICES,
    PAID_INVOICE,
    check_invoice,
    dec,
    expect_error,
    ok,
)


def test_an_invoice_in_the_contract_shape(target):
    body = ok(target.call("GET", "/invoices/10001"))
    assert set(body) == INVOICE_FIELDS
    check_invoice(body)
    assert (body["invno"], body["custno"]) == ("10001", "ACME")
    assert body["status"] == "open"
    assert body["artype"] == ""
    assert body["ornum"] == "4053001"  # right-justified in ORNUM, answered trimmed
    assert body["ponum"] == ""
    assert body["paidamt"] == "0.00"
    assert body["invdte"] is not None


def test_a_partly_paid_invoice_keeps_the_invariant(target):
    body = ok(target.call("GET", "/invoices/10003"))  # every fifth is 30 % paid
    check_invoice(body)
    assert dec(body["paidamt"]) > 0 and dec(body["balance"]) > 0


def test_the_paid_invoice_is_closed_and_the_credit_memo_is_open(target):
    paid = ok(target.call("GET", f"/invoices/{PAID_INVOICE}"))
    assert (paid["custno"], paid["invamt"], paid["paidamt"], paid["balance"]) == (
        "ZEROBL",
        "120.00",
        "120.00",
        "0.00",
    )
    assert paid["status"] == "closed"
    memo = ok(target.call("GET", f"/invoices/{CREDIT_MEMO}"))
    assert (memo["custno"], memo["artype"], memo["invamt"], memo["balance"]) == (
        "IRONWD",
        "C",
        "-75.00",
        "-75.00",
    )
    assert memo["status"] == "open"


@pytest.mark.parametrize(
    "invno", ["10001", " 10001", "10001 ", "     10001", " 10001 "]
)
def test_invoice_keys_are_normalised_in_the_path(target, invno):
    assert ok(target.call("GET", f"/invoices/{quote(invno)}"))["invno"] == "10001"


def test_letters_in_an_invoice_number_are_upper_cased(target):
    assert target.seed_invoice("ACME", "50.00", "ab12") == "AB12"
    for invno in ("AB12", "ab12", "%20Ab12"):
        assert ok(target.call("GET", f"/invoices/{invno}"))["invno"] == "AB12"
    rows = ok(target.get("/invoices", custno="acme"))["results"]
    assert "AB12" in [r["invno"] for r in rows]


@pytest.mark.parametrize(
    "invno", ["99999", "a/b", "10001/x", "12345678901", "%20", DELETED_INVOICE]
)
def test_an_unknown_deleted_or_too_long_invoice_is_404(target, invno):
    expect_error(target.call("GET", f"/invoices/{invno}"), 404, "INVOICE_NOT_FOUND")


def test_a_deleted_invoice_is_invisible(target):
    rows = ok(target.get("/invoices"))["results"]
    assert DELETED_INVOICE not in [r["invno"] for r in rows]
    target.delete_invoice("10001")
    expect_error(target.call("GET", "/invoices/10001"), 404, "INVOICE_NOT_FOUND")
    for query in ({}, {"custno": "ACME"}, {"custno": "ACME", "status": "open"}):
        rows = ok(target.get("/invoices", **query))["results"]
        assert "10001" not in [r["invno"] for r in rows], query
    rows = ok(target.call("GET", "/customers/ACME/open-items"))["results"]
    assert "10001" not in [r["invno"] for r in rows]


def test_the_list_is_every_live_invoice_in_invno_order(target):
    rows = ok(target.get("/invoices"))["results"]
    assert [r["invno"] for r in rows] == [*OPEN_INVOICES, PAID_INVOICE, CREDIT_MEMO]
    for row in rows:
        check_invoice(row)
    assert rows == ok(target.get("/invoices", status="all"))["results"]


def test_status_filters_open_and_closed(target):
    open_rows = ok(target.get("/invoices", status="open"))["results"]
    assert [r["invno"] for r in open_rows] == [*OPEN_INVOICES, CREDIT_MEMO]
    assert all(r["status"] == "open" for r in open_rows)
    closed = ok(target.get("/invoices", status="closed"))["results"]
    assert [r["invno"] for r in closed] == [PAID_INVOICE]


def test_custno_filters_and_is_normalised(target):
    rows = ok(target.get("/invoices", custno=" acme ", status="open"))["results"]
    assert rows and {r["custno"] for r in rows} == {"ACME"}
    assert [r["invno"] for r in rows] == sorted(r["invno"] for r in rows)
    # ACME gets every eleventh seeded invoice, round robin.
    assert [r["invno"] for r in rows] == [str(n) for n in range(10001, 10057, 11)]
    assert rows == ok(target.call("GET", "/customers/ACME/open-items"))["results"]
    assert ok(target.get("/invoices", custno="ZEROBL", status="open"))["results"] == []
    closed = ok(target.get("/invoices", custno="ZEROBL", status="closed"))["results"]
    assert [r["invno"] for r in closed] == [PAID_INVOICE]


def test_an_empty_custno_is_no_filter(target):
    assert (
        ok(target.get("/invoices", custno=""))["results"]
        == ok(target.get("/invoices"))["results"]
    )


@pytest.mark.parametrize("custno", ["NOSUCH", "TOOLONGX"])
def test_an_unknown_customer_in_the_search_is_404(target, custno):
    expect_error(target.get("/invoices", custno=custno), 404, "CUSTOMER_NOT_FOUND")


@pytest.mark.parametrize("status", ["paid", "", "opened", "1"])
def test_a_bad_status_is_400(target, status):
    expect_error(
        target.get("/invoices", status=status),
        400,
        "VALIDATION_ERROR",
        fields={"status"},
    )


def test_seeded_invoices_read_back_with_their_fields(target):
    target.seed_customer("NEWCO", "New Company Inc")
    invno = target.seed_invoice(
        "NEWCO",
        "250.00",
        "77001",
        invdte=target.period_date(-1, 3),
        paidamt="50.00",
        ornum="88",
        ponum="PO-7",
    )
    assert invno == "77001"
    body = ok(target.call("GET", "/invoices/77001"))
    check_invoice(body)
    assert body == {
        "invno": "77001",
        "custno": "NEWCO",
        "invamt": "250.00",
        "paidamt": "50.00",
        "balance": "200.00",
        "invdte": target.period_date(-1, 3).isoformat(),
        "artype": "",
        "status": "open",
        "ornum": "88",
        "ponum": "PO-7",
    }
    assert ok(target.call("GET", "/customers/NEWCO"))["balance"] == "200.00"
