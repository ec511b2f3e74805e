"""Change feeds (`GET /invoices?changed_since=…`, `GET /customers?…`) and the
sandbox's latency fault."""

import threading
from decimal import Decimal

import pytest
from django.conf import settings
from django.db import OperationalError, connection, transaction

from integrations.connectors.base import ConnectorError
from integrations.connectors.sagepro import ChangePage, SageProConnector
from integrations.sandbox.sagepro import keys, views
from integrations.sandbox.sagepro.models import ArCust, ArMast
from integrations.sandbox.sagepro.seed import period_date, seed, seed_invoice

API = "/sandbox/sagepro/api/v1"
BASE_URL = f"http://testserver{API}"
AUTH = {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}


@pytest.fixture
def sandbox(db):
    seed()


@pytest.fixture
def gateway(http, sandbox):
    return SageProConnector(BASE_URL, settings.SANDBOX_SAGEPRO_API_KEY)


def get(client, path, **params):
    return client.get(f"{API}{path}", params, headers=AUTH)


def post(client, path, body, **headers):
    return client.post(
        f"{API}{path}",
        body,
        content_type="application/json",
        headers={**AUTH, **headers},
    )


def pay(client, invno, amount, key):
    body = {
        "custno": invoice(invno).custno.strip(),
        "date": period_date(0).isoformat(),
        "amount": amount,
        "method": "VISA",
        "reference": f"pt-{key}",
        "applications": [{"invno": invno, "amount": amount}],
    }
    response = post(client, "/cash-receipts", body, **{"Idempotency-Key": key})
    assert response.status_code == 201, response.json()
    return response.json()


def read_all(client, path, cursor="", limit=500):
    """Every page from `cursor` on: (rows in order, the final cursor)."""
    rows = []
    while True:
        page = get(client, path, changed_since=cursor, limit=limit).json()
        rows += page["results"]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            return rows, cursor


def invoice(invno):
    return ArMast.objects.get(invno=keys.pad_invno(invno))


# --- invoices ----------------------------------------------------------------------


def test_a_full_listing_has_every_invoice_paid_and_deleted_ones_too(sandbox, client):
    rows, _ = read_all(client, "/invoices", cursor="0")

    by_invno = {row["invno"]: row for row in rows}
    assert len(rows) == len(by_invno) == ArMast.objects.filter(company="01").count()
    assert by_invno["10057"]["status"] == "closed"  # fully paid
    assert by_invno["10057"]["balance"] == "0.00"
    assert by_invno["10059"]["deleted"] is True
    assert by_invno["10001"]["deleted"] is False
    single = get(client, "/invoices/10001").json()
    assert by_invno["10001"] == {**single, "deleted": False}


def test_rows_written_without_save_are_in_a_full_listing(sandbox, client):
    ArMast.objects.bulk_create(
        [
            ArMast(company="01", invno=keys.pad_invno(f"B{n}"), custno="ACME  ")
            for n in range(3)
        ]
    )

    rows, _ = read_all(client, "/invoices", cursor="", limit=7)

    assert {"B0", "B1", "B2"} <= {row["invno"] for row in rows}
    assert len(rows) == ArMast.objects.count()


def test_pages_miss_nothing_and_repeat_only_what_changed_again(sandbox, client):
    first = get(client, "/invoices", changed_since="0", limit=20).json()
    assert first["has_more"] is True
    seen = {row["invno"] for row in first["results"]}
    already_read = first["results"][0]["invno"]
    not_yet_read = "10050"
    assert not_yet_read not in seen
    # Changes between pages: one row already read, one not yet read, one new row.
    pay(client, already_read, "1.00", "k1")
    pay(client, not_yet_read, "2.00", "k2")
    new = seed_invoice("ACME", "12.00")

    rest, cursor = read_all(client, "/invoices", cursor=first["next_cursor"], limit=20)

    invnos = [row["invno"] for row in rest]
    assert invnos.count(already_read) == 1  # again, because it changed again
    assert invnos.count(not_yet_read) == 1  # once, at its new place
    assert new in invnos
    everything = [row["invno"] for row in first["results"]] + invnos
    assert set(everything) == {i.invno.strip() for i in ArMast.objects.all()}
    assert len(everything) == len(set(everything)) + 1  # only `already_read` twice
    last = {row["invno"]: row for row in first["results"] + rest}
    assert last[not_yet_read]["paidamt"] == f"{invoice(not_yet_read).paidamt:.2f}"
    assert last[already_read]["balance"] == f"{invoice(already_read).balance:.2f}"
    nothing = get(client, "/invoices", changed_since=cursor).json()
    assert nothing == {"results": [], "next_cursor": cursor, "has_more": False}


def test_a_paid_then_reversed_invoice_shows_each_change(sandbox, client):
    invno = seed_invoice("ACME", "40.00")
    _, cursor = read_all(client, "/invoices")

    receipt = pay(client, invno, "40.00", "k1")
    paid, cursor = read_all(client, "/invoices", cursor=cursor)
    client.delete(f"{API}/cash-receipts/{receipt['receipt_no']}", headers=AUTH)
    reopened, _ = read_all(client, "/invoices", cursor=cursor)

    assert [(r["invno"], r["status"], r["balance"]) for r in paid] == [
        (invno, "closed", "0.00")
    ]
    assert [(r["invno"], r["status"], r["balance"]) for r in reopened] == [
        (invno, "open", "40.00")
    ]


def test_deletes_and_queryset_updates_are_changes(sandbox, client):
    _, cursor = read_all(client, "/invoices")

    row = invoice("10002")
    row.deleted = True
    row.save()  # what an admin edit does
    ArMast.objects.filter(invno=keys.pad_invno("10003")).update(ponum="PO-7")
    rows, _ = read_all(client, "/invoices", cursor=cursor)

    assert [(r["invno"], r["deleted"], r["ponum"]) for r in rows] == [
        ("10002", True, ""),
        ("10003", False, "PO-7"),
    ]


def test_each_company_has_its_own_feed(sandbox, client):
    seed("02")
    _, cursor = read_all(client, "/invoices")

    seed_invoice("ACME", "5.00", company="02")
    own, _ = read_all(client, "/invoices", cursor=cursor)
    other = client.get(
        f"{API}/invoices",
        {"changed_since": "0", "limit": 1000},
        headers={**AUTH, "Sage-Company": "02"},
    ).json()

    assert own == []
    assert len(other["results"]) == ArMast.objects.filter(company="02").count()


@pytest.mark.parametrize("path", ["/invoices", "/customers"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"changed_since": "abc"}, "changed_since"),
        ({"changed_since": "1.2.3"}, "changed_since"),
        ({"changed_since": "-1.0"}, "changed_since"),
        ({"changed_since": "5"}, "changed_since"),
        ({"changed_since": "9" * 30 + ".1"}, "changed_since"),
        ({"changed_since": "0", "limit": "0"}, "limit"),
        ({"changed_since": "0", "limit": "1001"}, "limit"),
        ({"changed_since": "0", "limit": "²"}, "limit"),
        ({"changed_since": "0", "limit": "ten"}, "limit"),
    ],
)
def test_a_malformed_cursor_or_limit_is_a_clear_400(
    sandbox, client, path, params, field
):
    response = get(client, path, **params)

    assert response.status_code == 400
    assert response.json()["code"] == "VALIDATION_ERROR"
    assert list(response.json()["errors"]) == [field]


def test_the_search_without_changed_since_is_unchanged(sandbox, client):
    response = get(client, "/invoices", status="open", custno="ACME").json()

    assert set(response) == {"results"}
    assert all("deleted" not in row for row in response["results"])


# --- customers ---------------------------------------------------------------------


def test_customers_feed_lists_everyone_then_only_changes(sandbox, client):
    rows, cursor = read_all(client, "/customers", limit=5)
    assert len(rows) == ArCust.objects.count() == 12
    assert rows[0] == {
        **get(client, f"/customers/{rows[0]['custno']}").json(),
        "deleted": False,
    }

    pay(client, "10002", "3.00", "k1")  # BLUEOX's
    gone = ArCust.objects.get(custno=keys.pad_custno("ZEROBL"))
    gone.deleted = True
    gone.save()
    changed, _ = read_all(client, "/customers", cursor=cursor)

    assert [(r["custno"], r["deleted"]) for r in changed] == [
        ("BLUEOX", False),
        ("ZEROBL", True),
    ]
    assert changed[0]["last_payment_amount"] == "3.00"


def test_get_customers_without_a_cursor_is_the_full_listing(sandbox, client):
    response = client.get(f"{API}/customers", headers=AUTH)

    assert response.status_code == 200
    assert len(response.json()["results"]) == 12


# --- ordering under concurrency ------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_change_number_is_held_until_its_writer_commits():
    """A later writer cannot take a number while an earlier one is uncommitted, so
    numbers follow commit order and a reader never passes a row still to come."""
    if connection.vendor != "postgresql":
        pytest.skip("SQLite has one writer at a time: the order holds by construction")
    seed()
    holding, release = threading.Event(), threading.Event()

    def slow_writer():
        try:
            with transaction.atomic():
                row = ArMast.objects.select_for_update().get(invno="     10001")
                row.ponum = "first"
                row.save()
                holding.set()
                release.wait(30)
        finally:
            connection.close()

    writer = threading.Thread(target=slow_writer)
    writer.start()
    try:
        assert holding.wait(30)
        with pytest.raises(OperationalError), transaction.atomic():
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL lock_timeout = '200ms'")
            seed_invoice("ACME", "1.00")
    finally:
        release.set()
        writer.join()
    invno = seed_invoice("ACME", "1.00")
    assert invoice(invno).changeseq > invoice("10001").changeseq


# --- the connector -----------------------------------------------------------------


def test_the_connector_reads_both_feeds_page_by_page(gateway, client):
    page = gateway.list_invoice_changes(None, limit=10)
    assert isinstance(page, ChangePage)
    assert page.has_more is True
    assert len(page.results) == 10
    first = page.results[0]
    assert isinstance(first["invamt"], Decimal)
    assert first["invdte"] == invoice(first["invno"]).invdte
    assert first["deleted"] is False

    rows, cursor = list(page.results), page.next_cursor
    while page.has_more:
        page = gateway.list_invoice_changes(cursor, limit=10)
        rows += page.results
        cursor = page.next_cursor
    assert len(rows) == ArMast.objects.count()
    pay(client, "10001", "1.00", "k1")
    [changed] = gateway.list_invoice_changes(cursor).results
    assert changed["invno"] == "10001"
    assert changed["paidamt"] == invoice("10001").paidamt

    customers = gateway.list_customer_changes(None, limit=100)
    assert len(customers.results) == 12
    assert customers.has_more is False
    acme = next(c for c in customers.results if c["custno"] == "ACME")
    assert acme == {**gateway.get_customer("ACME"), "deleted": False}


def test_the_connector_reports_a_bad_cursor_as_a_permanent_error(gateway):
    with pytest.raises(ConnectorError) as caught:
        gateway.list_invoice_changes("not-a-cursor")

    assert caught.value.status == 400
    assert caught.value.code == "VALIDATION_ERROR"
    assert caught.value.transient is False


# --- latency fault -----------------------------------------------------------------


def test_a_latency_fault_delays_every_call_but_the_fault_endpoint(
    sandbox, client, monkeypatch
):
    pauses = []
    monkeypatch.setattr(views, "pause", pauses.append)

    set_to = post(client, "/_faults", {"mode": "latency", "ms": 50, "seconds": 600})
    shown = get(client, "/_faults").json()
    assert pauses == []

    assert get(client, "/invoices/10001").status_code == 200
    pay(client, "10001", "1.00", "k1")
    assert get(client, "/customers", changed_since="0").status_code == 200

    assert set_to.json()["latency_ms"] == 50
    assert shown["mode"] == "latency"
    assert shown["latency_ms"] == 50
    assert pauses == [0.05, 0.05, 0.05]

    post(client, "/_faults", {"mode": "none"})
    get(client, "/invoices/10001")
    assert get(client, "/_faults").json()["latency_ms"] == 0
    assert len(pauses) == 3


@pytest.mark.parametrize(
    "body",
    [
        {"mode": "latency"},
        {"mode": "latency", "ms": -1},
        {"mode": "latency", "ms": 10001},
        {"mode": "latency", "ms": "50"},
        {"mode": "latency", "ms": 1.5},
        {"mode": "latency", "ms": True},
    ],
)
def test_a_latency_outside_0_to_10000_ms_is_refused(sandbox, client, body):
    response = post(client, "/_faults", body)

    assert response.status_code == 400
    assert list(response.json()["errors"]) == ["ms"]
    assert get(client, "/_faults").json()["mode"] == "none"


def test_a_latency_fault_delays_the_connector_too(gateway, client, monkeypatch):
    pauses = []
    monkeypatch.setattr(views, "pause", pauses.append)
    post(client, "/_faults", {"mode": "latency", "ms": 10000, "seconds": 60})

    gateway.get_invoice("10001")
    gateway.list_customer_changes(None)

    assert pauses == [10.0, 10.0]
