"""Contract 8: the change feeds `GET /invoices?changed_since=…` and
`GET /customers?changed_since=…` that the portal's mirror reads."""

import pytest

from tests.conformance.contract import (
    CREDIT_MEMO,
    CUSTOMER_FIELDS,
    DELETED_INVOICE,
    INVOICE_FIELDS,
    OPEN_INVOICES,
    PAID_INVOICE,
    SEEDED_CUSTOMERS,
    check_customer,
    check_invoice,
    expect_error,
    ok,
    receipt_body,
)

FEEDS = {"/invoices": "invno", "/customers": "custno"}


def page(target, path, cursor="", limit=None):
    params = {"changed_since": cursor}
    if limit is not None:
        params["limit"] = str(limit)
    body = ok(target.get(path, **params))
    assert set(body) == {"results", "next_cursor", "has_more"}, body
    assert isinstance(body["next_cursor"], str) and body["next_cursor"], body
    assert isinstance(body["has_more"], bool)
    return body


def read_all(target, path, cursor="", limit=500):
    """Every row from `cursor` on: (rows in order, the final cursor)."""
    rows = []
    while True:
        body = page(target, path, cursor, limit)
        assert len(body["results"]) <= limit
        rows += body["results"]
        cursor = body["next_cursor"]
        if not body["has_more"]:
            return rows, cursor


def keys(rows, path):
    return [row[FEEDS[path]] for row in rows]


def pay(target, key, custno, invno, amount):
    body = receipt_body(
        target,
        custno=custno,
        amount=amount,
        reference=f"pt-{key}",
        applications=[{"invno": invno, "amount": amount}],
    )
    return ok(target.post_receipt(key, body), 201)


@pytest.mark.parametrize("cursor", ["", "0"])
def test_the_invoice_feed_from_the_beginning_lists_every_row(target, cursor):
    rows, _ = read_all(target, "/invoices", cursor)
    assert sorted(keys(rows, "/invoices")) == sorted(
        [*OPEN_INVOICES, PAID_INVOICE, CREDIT_MEMO, DELETED_INVOICE]
    )
    for row in rows:
        assert set(row) == INVOICE_FIELDS | {"deleted"}
        if row["invno"] == DELETED_INVOICE:
            assert row["deleted"] is True
            # The contract defines `status` for live rows only; `deleted` is the news.
            assert (row["custno"], row["invamt"], row["balance"]) == (
                "ACME",
                "300.00",
                "300.00",
            )
        else:
            check_invoice(row)
            assert row["deleted"] is False
            single = ok(target.call("GET", f"/invoices/{row['invno']}"))
            assert {k: v for k, v in row.items() if k != "deleted"} == single
    paid = next(r for r in rows if r["invno"] == PAID_INVOICE)
    assert (paid["status"], paid["balance"]) == ("closed", "0.00")


@pytest.mark.parametrize("params", [{}, {"changed_since": ""}, {"changed_since": "0"}])
def test_the_customer_feed_from_the_beginning_lists_every_row(target, params):
    body = ok(target.get("/customers", **params))
    assert set(body) == {"results", "next_cursor", "has_more"}
    assert body["has_more"] is False
    rows = body["results"]
    assert len(rows) == SEEDED_CUSTOMERS
    for row in rows:
        assert set(row) == CUSTOMER_FIELDS | {"deleted"}
        assert row["deleted"] is False
        check_customer(row)
        single = ok(target.call("GET", f"/customers/{row['custno']}"))
        assert {k: v for k, v in row.items() if k != "deleted"} == single


@pytest.mark.parametrize("path", FEEDS)
@pytest.mark.parametrize("limit", [1, 7, 12, 1000])
def test_pages_follow_the_cursor_with_nothing_missed_or_repeated(target, path, limit):
    everything, _ = read_all(target, path)
    cursor, seen, pages = "", [], 0
    while True:
        body = page(target, path, cursor, limit)
        pages += 1
        assert len(body["results"]) <= limit
        seen += keys(body["results"], path)
        cursor = body["next_cursor"]
        if not body["has_more"]:
            break
        assert len(body["results"]) == limit  # a short page is the last one
    assert seen == keys(everything, path)
    assert len(set(seen)) == len(seen)
    # Nothing changed since: an empty page that keeps the cursor.
    assert page(target, path, cursor, limit) == {
        "results": [],
        "next_cursor": cursor,
        "has_more": False,
    }


def test_a_posting_shows_exactly_the_rows_it_changed(target):
    _, invoices_at = read_all(target, "/invoices")
    _, customers_at = read_all(target, "/customers")
    pay(target, "k1", "ACME", "10001", "10.00")
    pay(target, "k2", "BLUEOX", "10002", "5.00")
    rows, invoices_after = read_all(target, "/invoices", invoices_at)
    assert keys(rows, "/invoices") == ["10001", "10002"]  # commit order
    for row in rows:
        assert row == {
            **ok(target.call("GET", f"/invoices/{row['invno']}")),
            "deleted": False,
        }
    rows, customers_after = read_all(target, "/customers", customers_at)
    assert keys(rows, "/customers") == ["ACME", "BLUEOX"]
    for row in rows:
        single = ok(target.call("GET", f"/customers/{row['custno']}"))
        assert row == {**single, "deleted": False}
    assert rows[0]["last_payment_amount"] == "10.00"
    # Read again from the new cursors: nothing.
    assert read_all(target, "/invoices", invoices_after) == ([], invoices_after)
    assert read_all(target, "/customers", customers_after) == ([], customers_after)


def test_a_paid_invoice_comes_with_its_closed_state(target):
    _, cursor = read_all(target, "/invoices")
    balance = ok(target.call("GET", "/invoices/10001"))["balance"]
    pay(target, "k1", "ACME", "10001", balance)
    (row,) = read_all(target, "/invoices", cursor)[0]
    assert (row["invno"], row["status"], row["balance"], row["deleted"]) == (
        "10001",
        "closed",
        "0.00",
        False,
    )


def test_a_row_changed_again_comes_again_at_its_new_place(target):
    _, cursor = read_all(target, "/invoices")
    pay(target, "k1", "ACME", "10001", "1.00")
    rows, cursor = read_all(target, "/invoices", cursor)
    assert keys(rows, "/invoices") == ["10001"]
    pay(target, "k2", "BLUEOX", "10002", "1.00")
    pay(target, "k3", "ACME", "10001", "2.00")
    rows, _ = read_all(target, "/invoices", cursor)
    assert keys(rows, "/invoices") == ["10002", "10001"]
    assert rows[1] == {**ok(target.call("GET", "/invoices/10001")), "deleted": False}


def test_deleted_rows_appear_with_deleted_true(target):
    _, invoices_at = read_all(target, "/invoices")
    _, customers_at = read_all(target, "/customers")
    target.delete_invoice("10001")
    rows, _ = read_all(target, "/invoices", invoices_at)
    assert [(r["invno"], r["deleted"]) for r in rows] == [("10001", True)]
    target.seed_customer("GONE", "Gone Away Ltd")
    target.delete_customer("GONE")
    rows, _ = read_all(target, "/customers", customers_at)
    assert [(r["custno"], r["deleted"]) for r in rows][-1] == ("GONE", True)
    assert rows[-1]["company"] == "Gone Away Ltd"


def test_new_rows_appear(target):
    _, invoices_at = read_all(target, "/invoices")
    _, customers_at = read_all(target, "/customers")
    target.seed_customer("NEWCO", "New Company Inc")
    target.seed_invoice("NEWCO", "80.00", "70001")
    rows, _ = read_all(target, "/invoices", invoices_at)
    assert [(r["invno"], r["balance"], r["deleted"]) for r in rows] == [
        ("70001", "80.00", False)
    ]
    rows, _ = read_all(target, "/customers", customers_at)
    assert {r["custno"] for r in rows} == {"NEWCO"}
    assert rows[-1]["balance"] == "80.00"


@pytest.mark.parametrize("path", FEEDS)
@pytest.mark.parametrize("cursor", ["abc", "-1", "1.2.3", "x" * 40])
def test_a_malformed_cursor_is_400(target, path, cursor):
    expect_error(
        target.get(path, changed_since=cursor),
        400,
        "VALIDATION_ERROR",
        fields={"changed_since"},
    )


@pytest.mark.parametrize("path", FEEDS)
@pytest.mark.parametrize("limit", ["0", "1001", "-5", "ten", "", "2.5"])
def test_a_bad_limit_is_400(target, path, limit):
    expect_error(
        target.get(path, changed_since="", limit=limit),
        400,
        "VALIDATION_ERROR",
        fields={"limit"},
    )
