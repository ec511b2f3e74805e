"""Finding a payment in the review queue and the payment list: search, filters,
columns, totals, paging, truthful statuses, and a query count that does not grow."""

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.db import connection as db_connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from integrations.admin.finding import amount_range
from integrations.models import Connection, Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from tests.factories import (
    make_connection,
    make_event,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = pytest.mark.django_db

QUEUE = "admin:integrations_reviewitem_changelist"
PAYMENTS = "admin:integrations_paymenttransaction_changelist"


@pytest.fixture
def reviewer():
    return make_user(group=FINANCE_REVIEWER, username="rita")


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


def found(response):
    return list(response.context["cl"].result_list)


def payer_record(name="", email=""):
    return {"billing_address": {"name": name}, "receipt_emailed_to": email}


# Reading a search term ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("term", "expected"),
    [
        ("67.22", (Decimal("67.22"), Decimal("67.22"))),
        ("$67.22", (Decimal("67.22"), Decimal("67.22"))),
        ("67.2", (Decimal("67.20"), Decimal("67.29"))),
        ("67", (Decimal("67.00"), Decimal("67.99"))),
        ("1,500.00", (Decimal("1500.00"), Decimal("1500.00"))),
        ("67.22 USD", (Decimal("67.22"), Decimal("67.22"))),
        ("INV-1", None),
        ("67.222", None),
        ("1,50", None),
    ],
)
def test_it_reads_an_amount_and_the_range_its_digits_cover(term, expected):
    assert amount_range(term) == expected


# The review queue ----------------------------------------------------------------------


def test_the_queue_finds_a_payment_by_amount_in_the_ways_people_type_it(
    reviewer_client,
):
    wanted = make_review_item(make_transaction(amount=Decimal("67.22")))
    make_review_item(make_transaction(amount=Decimal("67.29")))
    make_review_item(make_transaction(amount=Decimal("167.22")))

    for term in ("67.22", "$67.22"):
        assert found(reviewer_client.get(reverse(QUEUE), {"q": term})) == [wanted]
    near = found(reviewer_client.get(reverse(QUEUE), {"q": "67.2"}))
    assert len(near) == 2 and wanted in near


def test_the_queue_finds_a_payment_by_card_last_four(reviewer_client):
    wanted = make_review_item(make_transaction(card_last4="4242"))
    make_review_item(make_transaction(card_last4="1111"))

    assert found(reviewer_client.get(reverse(QUEUE), {"q": "4242"})) == [wanted]


def test_the_queue_finds_a_payment_by_customer_and_payer(reviewer_client):
    by_id = make_review_item(make_transaction(customer_reference="ACME01"))
    by_name = make_review_item(
        make_transaction(source_record=payer_record("Inland Supply Co"))
    )
    by_email = make_review_item(
        make_transaction(source_record=payer_record(email="ap@globex.example"))
    )
    posted_for = make_transaction()
    make_posting(posted_for, payload={"custno": "WIDGET"})
    by_receipt = make_review_item(posted_for)

    def search(term):
        return found(reviewer_client.get(reverse(QUEUE), {"q": term}))

    assert search("acme01") == [by_id]
    assert search("inland supply") == [by_name]
    assert search("globex") == [by_email]
    assert search("widget") == [by_receipt]


def test_the_queue_finds_a_payment_by_invoice_and_transaction_number(reviewer_client):
    wanted = make_review_item(
        make_transaction(invoice_reference="21003", transaction_id="500000777")
    )
    make_review_item(make_transaction(invoice_reference="21004"))

    assert found(reviewer_client.get(reverse(QUEUE), {"q": "21003"})) == [wanted]
    assert found(reviewer_client.get(reverse(QUEUE), {"q": "500000777"})) == [wanted]


def test_a_search_nobody_matches_lists_nothing_and_still_renders(reviewer_client):
    make_review_item()

    for term in ("no-such-thing", "99999999999999999999.99", "'", "$", "%"):
        response = reviewer_client.get(reverse(QUEUE), {"q": term})
        assert response.status_code == 200, term
    assert found(reviewer_client.get(reverse(QUEUE), {"q": "no-such-thing"})) == []


def test_assigned_to_me_shows_only_my_items(reviewer_client, reviewer):
    mine = make_review_item(assigned_to=reviewer)
    make_review_item(assigned_to=make_user())
    unassigned = make_review_item()

    assert found(reviewer_client.get(reverse(QUEUE), {"assigned": "me"})) == [mine]
    assert found(reviewer_client.get(reverse(QUEUE), {"assigned": "nobody"})) == [
        unassigned
    ]


def test_the_date_filter_reads_whole_days_in_the_business_time_zone(
    reviewer_client, settings
):
    settings.BUSINESS_TIME_ZONE = "America/Los_Angeles"
    # 2026-12-01 07:30 UTC is still November 30th in Los Angeles.
    late_november = make_review_item(
        make_transaction(created_at=datetime(2026, 12, 1, 7, 30, tzinfo=UTC))
    )
    december = make_review_item(
        make_transaction(created_at=datetime(2026, 12, 1, 9, 0, tzinfo=UTC))
    )

    response = reviewer_client.get(
        reverse(QUEUE), {"paid_from": "2026-12-01", "paid_to": "2026-12-01"}
    )
    november = reviewer_client.get(reverse(QUEUE), {"paid_to": "2026-11-30"})

    assert found(response) == [december]
    assert found(november) == [late_november]


def test_a_date_that_is_not_one_is_named_and_ignored(reviewer_client):
    item = make_review_item()

    response = reviewer_client.get(reverse(QUEUE), {"paid_from": "yesterday"})

    assert response.status_code == 200
    assert found(response) == [item]
    assert "“yesterday” is not a date" in response.text


def test_the_queue_shows_customer_payer_and_money_with_its_currency(reviewer_client):
    make_review_item(
        make_transaction(
            amount=Decimal("2405.51"),
            customer_reference="ACME01",
            source_record=payer_record("Acme Tools", "ap@acme.example"),
        )
    )

    text = reviewer_client.get(reverse(QUEUE)).text

    assert '<span class="money">$2,405.51</span>' in text
    assert "ACME01" in text
    assert 'Acme Tools<span class="portal-payer-email">ap@acme.example</span>' in text


def test_the_queue_shows_the_count_and_total_of_what_the_filter_selects(
    reviewer_client,
):
    for amount in ("100.00", "250.50"):
        make_review_item(make_transaction(amount=Decimal(amount)))
    make_review_item(make_transaction(amount=Decimal("75.00"), currency="MXN"))
    make_review_item(
        make_transaction(amount=Decimal("999.00")), state=ReviewItem.State.RESOLVED
    )

    response = reviewer_client.get(reverse(QUEUE))
    searched = reviewer_client.get(reverse(QUEUE), {"q": "250.50"})

    totals = response.context["totals"]
    assert totals["count"] == 3
    assert [row["total"] for row in totals["by_currency"]] == ["75.00 MXN", "$350.50"]
    assert "3 items" in response.text
    assert searched.context["totals"]["by_currency"][0]["total"] == "$250.50"


def test_the_queue_shows_fifty_items_a_page_and_no_show_all(reviewer_client):
    connection = make_connection()
    for _ in range(51):
        make_review_item(make_transaction(connection))

    response = reviewer_client.get(reverse(QUEUE))
    everything = reviewer_client.get(reverse(QUEUE), {"all": ""})

    assert len(found(response)) == 50
    assert len(found(everything)) == 50
    assert "Show all" not in response.text


def test_the_reason_column_says_what_is_wrong_in_plain_words(reviewer_client):
    make_review_item(
        kind=ReviewItem.Kind.VALIDATION,
        reason="Sage Pro refused the receipt: Sage Pro refused GET /customers/NOPE: "
        "no customer 'NOPE' [CUSTOMER_NOT_FOUND] (HTTP 404)",
        error_code="CUSTOMER_NOT_FOUND",
    )

    text = reviewer_client.get(reverse(QUEUE)).text

    assert "Sent and refused: Sage Pro has no customer NOPE." in text
    assert "Needs correcting before posting" in text


def test_the_item_page_keeps_the_technical_reason_one_click_away(reviewer_client):
    reason = (
        "Sage Pro refused the receipt: Sage Pro refused GET /customers/NOPE: "
        "no customer 'NOPE' [CUSTOMER_NOT_FOUND] (HTTP 404)"
    )
    item = make_review_item(
        kind=ReviewItem.Kind.VALIDATION, reason=reason, error_code="CUSTOMER_NOT_FOUND"
    )

    text = reviewer_client.get(
        reverse("admin:integrations_reviewitem_change", args=[item.pk])
    ).text

    assert "Sent and refused: Sage Pro has no customer NOPE." in text
    assert '<details class="portal-reason-technical"' in text
    assert "[CUSTOMER_NOT_FOUND] (HTTP 404)" in text


def _queries(client, name):
    client.get(reverse(name))  # warm the session and the permission cache
    with CaptureQueriesContext(db_connection) as captured:
        response = client.get(reverse(name))
    assert response.status_code == 200
    return len(captured.captured_queries)


def test_the_queue_costs_the_same_queries_at_5_and_at_60_items(reviewer_client):
    connection = make_connection()
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)
    me = make_user()

    def add(count):
        for n in range(count):
            txn = make_transaction(
                connection, source_record=payer_record(f"Payer {n}", "a@b.example")
            )
            make_posting(txn, sagepro=sagepro, payload={"custno": "ACME"})
            make_review_item(txn, assigned_to=me)

    add(5)
    small = _queries(reviewer_client, QUEUE)
    add(55)
    large = _queries(reviewer_client, QUEUE)

    assert small == large


# The payment list -----------------------------------------------------------------------


def test_the_payment_list_finds_by_amount_and_last_four(reviewer_client):
    wanted = make_transaction(amount=Decimal("67.22"), card_last4="4242")
    make_transaction(amount=Decimal("12.30"), card_last4="1111")

    assert found(reviewer_client.get(reverse(PAYMENTS), {"q": "$67.22"})) == [wanted]
    assert found(reviewer_client.get(reverse(PAYMENTS), {"q": "4242"})) == [wanted]


def test_a_payment_an_open_item_holds_reads_in_review_not_paid(reviewer_client):
    held = make_transaction(invoice_reference="HELD-1")
    make_review_item(held)
    posted = make_transaction(invoice_reference="POSTED-1")
    make_posting(posted, state=Posting.State.POSTED, document_number="R000777")
    queued = make_transaction(invoice_reference="QUEUED-1")
    make_posting(queued, state=Posting.State.PENDING)

    response = reviewer_client.get(reverse(PAYMENTS))
    rows = {txn.invoice_reference: txn for txn in response.context["cl"].result_list}
    admin = response.context["cl"].model_admin

    assert admin.status(rows["HELD-1"]) == "In review"
    assert admin.status(rows["POSTED-1"]) == "Posted"
    assert admin.status(rows["QUEUED-1"]) == "Queued"
    in_review = reviewer_client.get(reverse(PAYMENTS), {"where": "review"})
    assert found(in_review) == [held]


def test_the_payment_list_costs_the_same_queries_at_5_and_at_60_rows(reviewer_client):
    connection = make_connection()
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)

    def add(count):
        for _ in range(count):
            txn = make_transaction(connection, source_record=payer_record("P"))
            make_posting(txn, sagepro=sagepro, state=Posting.State.POSTED)
            make_review_item(txn)

    add(5)
    small = _queries(reviewer_client, PAYMENTS)
    add(55)
    large = _queries(reviewer_client, PAYMENTS)

    assert small == large


def test_a_user_who_cannot_open_connections_sees_the_connection_as_text(
    client, admin_client
):
    txn = make_transaction()
    viewer = make_user()
    viewer.user_permissions.add(
        Permission.objects.get(codename="view_paymenttransaction")
    )
    client.force_login(viewer)
    connection_url = reverse(
        "admin:integrations_connection_change", args=[txn.connection.pk]
    )
    page = reverse("admin:integrations_paymenttransaction_change", args=[txn.pk])

    as_viewer = client.get(page).text
    as_admin = admin_client.get(page).text

    assert connection_url not in as_viewer
    assert str(txn.connection) in as_viewer
    assert connection_url in as_admin


def test_the_preview_does_not_call_an_application_of_nothing_valid(
    reviewer_client, monkeypatch
):
    from integrations import documents
    from integrations.connectors.sagepro import Application, CashReceipt

    txn = make_transaction(amount=Decimal("50.00"), invoice_reference="21003")
    receipt = CashReceipt(
        custno="ACME",
        date=txn.posting_date(),
        amount=Decimal("50.00"),
        method="CC",
        reference=txn.transaction_id,
        applications=(Application("21003", Decimal("0.00")),),
    )
    real = documents.ReceiptDocument(receipt=receipt, values={})
    monkeypatch.setattr(documents, "preview_cash_receipt", lambda *a, **k: real)

    text = reviewer_client.get(
        reverse("admin:integrations_paymenttransaction_preview", args=[txn.pk])
    ).text

    assert "<strong>Valid:</strong>" not in text
    assert "It applies $0.00 to invoice 21003" in text


def test_the_preview_does_not_call_an_application_to_a_missing_invoice_valid(
    reviewer_client,
):
    # The payment's connection has no Sage Pro company: no invoice can be found.
    txn = make_transaction(amount=Decimal("67.22"), invoice_reference="PO 7781")

    text = reviewer_client.get(
        reverse("admin:integrations_paymenttransaction_preview", args=[txn.pk])
    ).text

    assert "<strong>Valid:</strong>" not in text
    assert "It applies $67.22 to invoice PO 7781, which Sage Pro does not have" in text


def test_the_preview_says_what_stays_unapplied(reviewer_client, monkeypatch):
    from integrations import documents
    from integrations.connectors.sagepro import Application, CashReceipt

    txn = make_transaction(amount=Decimal("50.00"), invoice_reference="21003")
    receipt = CashReceipt(
        custno="ACME",
        date=txn.posting_date(),
        amount=Decimal("50.00"),
        method="CC",
        reference=txn.transaction_id,
        applications=(Application("21003", Decimal("30.00")),),
    )
    document = documents.ReceiptDocument(receipt=receipt, values={})
    monkeypatch.setattr(documents, "preview_cash_receipt", lambda *a, **k: document)

    text = reviewer_client.get(
        reverse("admin:integrations_paymenttransaction_preview", args=[txn.pk])
    ).text

    assert "<strong>Valid:</strong>" in text
    assert (
        "$30.00 is applied to invoices; $20.00 stays on the receipt as unapplied cash."
    ) in text


def test_an_event_page_shows_the_connection_as_text_to_who_cannot_open_it(
    client, admin_client
):
    event = make_event()
    viewer = make_user()
    viewer.user_permissions.add(Permission.objects.get(codename="view_event"))
    client.force_login(viewer)
    connection_url = reverse(
        "admin:integrations_connection_change", args=[event.connection.pk]
    )
    page = reverse("admin:integrations_event_change", args=[event.pk])

    as_viewer = client.get(page)
    as_admin = admin_client.get(page)

    assert as_viewer.status_code == 200
    assert connection_url not in as_viewer.text
    assert str(event.connection) in as_viewer.text
    assert connection_url in as_admin.text


def test_both_lists_render_with_filter_counts_shown(reviewer_client):
    make_review_item(make_transaction(amount=Decimal("67.22")))

    for name in (QUEUE, PAYMENTS):
        response = reviewer_client.get(
            reverse(name), {"_facets": "1", "q": "67.22", "paid_from": "2020-01-01"}
        )
        assert response.status_code == 200, name
        assert len(found(response)) == 1, name
