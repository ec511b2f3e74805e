"""The read-only API: filters, who may read it, and flat query counts."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from integrations.models import Connection, PaymentStatus, Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from portal.models import ApiToken
from tests.factories import (
    make_connection,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = pytest.mark.django_db

TRANSACTIONS = "/api/transactions/"
REVIEW_ITEMS = "/api/review-items/"


@pytest.fixture
def api():
    return APIClient()


@pytest.fixture
def reviewer_api(api):
    api.force_authenticate(make_user(group=FINANCE_REVIEWER))
    return api


def results(response):
    assert response.status_code == 200, response.content
    return response.json()["results"]


def test_anonymous_callers_are_refused(api):
    make_transaction()

    assert api.get(TRANSACTIONS).status_code in (401, 403)
    assert api.get(REVIEW_ITEMS).status_code in (401, 403)


def test_a_user_without_the_view_permission_is_refused(api):
    api.force_authenticate(make_user())

    assert api.get(TRANSACTIONS).status_code == 403
    assert api.get(REVIEW_ITEMS).status_code == 403


def test_the_view_permission_is_checked_per_model(api):
    user = make_user()
    user.user_permissions.add(
        Permission.objects.get(codename="view_paymenttransaction")
    )
    api.force_authenticate(user)

    assert api.get(TRANSACTIONS).status_code == 200
    assert api.get(REVIEW_ITEMS).status_code == 403


def test_a_reviewer_reads_a_transaction_with_its_receipt(reviewer_api):
    connection = make_connection(slug="paytrace-main")
    txn = make_transaction(
        connection,
        transaction_id="987654",
        amount=Decimal("12.30"),
        invoice_reference="INV-42",
        customer_reference="ACME",
        card_last4="1111",
    )
    make_posting(txn, state=Posting.State.POSTED, document_number="R000042")
    make_review_item(
        txn, kind=ReviewItem.Kind.REVERSAL, reason="Refunded after posting"
    )
    make_review_item(txn, kind=ReviewItem.Kind.DEAD, state=ReviewItem.State.RESOLVED)

    [listed] = results(reviewer_api.get(TRANSACTIONS))
    detail = reviewer_api.get(f"{TRANSACTIONS}{txn.pk}/").json()

    assert listed == detail
    assert detail == {
        "id": txn.pk,
        "connection": "paytrace-main",
        "transaction_id": "987654",
        "transaction_type": "SALE",
        "amount": "12.30",
        "currency": "USD",
        "invoice_reference": "INV-42",
        "customer_reference": "ACME",
        "card_last4": "1111",
        "gateway_status": "settled",
        "mapped_status": "Paid",
        "created_at": detail["created_at"],
        "settled_at": detail["settled_at"],
        "posting_state": "posted",
        "document_number": "R000042",
        "open_review_kinds": ["reversal"],
    }
    assert detail["created_at"] and detail["settled_at"]


def test_a_transaction_without_a_posting_has_null_posting_fields(reviewer_api):
    make_transaction(mapped_status=PaymentStatus.FAILED, gateway_status="declined")

    [item] = results(reviewer_api.get(TRANSACTIONS))

    assert item["posting_state"] is None
    assert item["document_number"] is None
    assert item["settled_at"] is None
    assert item["open_review_kinds"] == []


def test_transactions_filter_by_id_status_and_invoice(reviewer_api):
    paid = make_transaction(transaction_id="111", invoice_reference="INV-1")
    failed = make_transaction(
        transaction_id="222",
        invoice_reference="INV-2",
        mapped_status=PaymentStatus.FAILED,
        gateway_status="declined",
    )
    make_transaction(transaction_id="333", invoice_reference="INV-1")

    def ids(**params):
        return {row["id"] for row in results(reviewer_api.get(TRANSACTIONS, params))}

    assert ids(transaction_id="111") == {paid.pk}
    assert ids(status="Failed") == {failed.pk}
    assert len(ids(status="Paid")) == 2
    assert len(ids(invoice="INV-1")) == 2
    assert ids(invoice="INV-1", transaction_id="333") == ids(transaction_id="333")
    assert ids(invoice="nope") == set()


def test_an_unknown_status_is_a_bad_request(reviewer_api):
    assert reviewer_api.get(TRANSACTIONS, {"status": "Lost"}).status_code == 400


def test_review_items_filter_by_kind_state_and_transaction(reviewer_api):
    txn = make_transaction(
        transaction_id="555", amount=Decimal("99.95"), invoice_reference="INV-9"
    )
    unmatched = make_review_item(txn, reason="Invoice INV-9 was not found in Sage Pro.")
    dead = make_review_item(kind=ReviewItem.Kind.DEAD, error_code="TIMEOUT")
    dismissed = make_review_item(
        state=ReviewItem.State.DISMISSED, resolution="Dismissed: test"
    )

    def ids(**params):
        return {row["id"] for row in results(reviewer_api.get(REVIEW_ITEMS, params))}

    assert ids(kind="dead") == {dead.pk}
    assert ids(state="dismissed") == {dismissed.pk}
    assert ids(state="open") == {unmatched.pk, dead.pk}
    assert ids(transaction_id="555") == {unmatched.pk}
    row = reviewer_api.get(f"{REVIEW_ITEMS}{unmatched.pk}/").json()
    assert row == {
        "id": unmatched.pk,
        "kind": "unmatched",
        "state": "open",
        "reason": "Invoice INV-9 was not found in Sage Pro.",
        "error_code": "",
        "transaction_id": "555",
        "amount": "99.95",
        "invoice_reference": "INV-9",
        "created_at": row["created_at"],
        "resolved_at": None,
        "resolution": "",
    }


def test_a_review_item_without_a_transaction_has_null_transaction_fields(reviewer_api):
    item = ReviewItem.objects.create(
        kind=ReviewItem.Kind.CARD_DATA, reason="Card number sent"
    )

    row = reviewer_api.get(f"{REVIEW_ITEMS}{item.pk}/").json()

    assert row["transaction_id"] is None
    assert row["amount"] is None
    assert row["invoice_reference"] is None


def test_the_api_is_read_only(reviewer_api):
    txn = make_transaction()
    item = make_review_item(txn)

    for path in (TRANSACTIONS, REVIEW_ITEMS):
        assert reviewer_api.post(path, {}, format="json").status_code in (403, 405)
    for path in (f"{TRANSACTIONS}{txn.pk}/", f"{REVIEW_ITEMS}{item.pk}/"):
        assert reviewer_api.patch(
            path, {"state": "resolved"}, format="json"
        ).status_code in (403, 405)
        assert reviewer_api.delete(path).status_code in (403, 405)
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_a_token_works_as_well_as_a_session(api):
    _, key = ApiToken.objects.create_token(make_user(group=FINANCE_REVIEWER))
    make_transaction()

    api.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    assert len(results(api.get(TRANSACTIONS))) == 1


def test_a_session_login_works(client):
    client.force_login(make_user(group=FINANCE_REVIEWER))
    make_review_item()

    response = client.get(REVIEW_ITEMS)

    assert response.status_code == 200
    assert response.json()["count"] == 1


@pytest.mark.parametrize("path", [TRANSACTIONS, REVIEW_ITEMS])
def test_query_count_does_not_grow_with_rows(
    reviewer_api, django_assert_max_num_queries, path
):
    connection = make_connection()
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)

    def add(count):
        for _ in range(count):
            txn = make_transaction(connection)
            make_posting(
                txn, sagepro=sagepro, state=Posting.State.POSTED, document_number="R1"
            )
            make_review_item(txn)

    add(2)
    with django_assert_max_num_queries(10) as small:
        assert len(results(reviewer_api.get(path))) == 2
    add(18)
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(results(reviewer_api.get(path))) == 20


def test_the_schema_describes_the_read_api(client):
    client.force_login(make_user(group=FINANCE_REVIEWER))

    as_json = client.get("/api/schema/", {"format": "json"})
    as_yaml = client.get("/api/schema/")

    assert as_json.status_code == 200
    schema = as_json.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/transactions/" in schema["paths"]
    assert "/api/review-items/{id}/" in schema["paths"]
    assert as_yaml.status_code == 200
    assert "/api/transactions/:" in as_yaml.content.decode()


def test_the_docs_page_serves_swagger_from_the_sidecar(client):
    client.force_login(make_user(group=FINANCE_REVIEWER))

    response = client.get("/api/docs/")

    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html
    assert "drf_spectacular_sidecar" in html
    assert "cdn.jsdelivr.net" not in html
