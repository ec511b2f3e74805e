"""POST /api/mappings/suggest and /api/mappings/feedback: shape, learning, refusals."""

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from integrations.roles import FINANCE_REVIEWER
from mappings.models import SuggestionFeedback
from portal.models import ApiToken
from tests.factories import make_user
from tests.mappings.test_suggest import V1_EXPECTED, V1_RECORD

pytestmark = pytest.mark.django_db

SUGGEST = "/api/mappings/suggest"
FEEDBACK = "/api/mappings/feedback"


def mapping_admin(**fields):
    user = make_user(**fields)
    user.user_permissions.add(Permission.objects.get(codename="change_fieldmapping"))
    return user


@pytest.fixture
def admin_user():
    return mapping_admin(username="ines")


@pytest.fixture
def api(admin_user):
    client = APIClient()
    client.force_authenticate(admin_user)
    return client


def suggest(api, sample=V1_RECORD, target="cash_receipt"):
    response = api.post(SUGGEST, {"target": target, "sample": sample}, format="json")
    assert response.status_code == 200, response.content
    return {s["target_field"]: s for s in response.json()["suggestions"]}


def test_it_answers_a_suggestion_per_cash_receipt_field(api):
    response = api.post(
        SUGGEST, {"target": "cash_receipt", "sample": V1_RECORD}, format="json"
    )

    assert response.status_code == 200
    suggestions = response.json()["suggestions"]
    assert [s["target_field"] for s in suggestions] == list(V1_EXPECTED)
    invno = suggestions[-2]
    assert invno["target_field"] == "invno"
    assert invno["source_path"] == "invoice_id"
    assert 0 < invno["confidence"] <= 1
    assert invno["reasons"] and all(isinstance(r, str) for r in invno["reasons"])
    assert set(invno) == {
        "target_field",
        "source_path",
        "confidence",
        "reasons",
        "alternatives",
    }


def test_the_v1_record_gets_the_right_top_1_for_every_field(api):
    got = {field: s["source_path"] for field, s in suggest(api).items()}

    assert got == V1_EXPECTED


def test_feedback_is_stored_with_the_user(api, admin_user):
    response = api.post(
        FEEDBACK,
        {
            "target": "cash_receipt",
            "target_field": "invno",
            "source_path": "data.invoiceId",
            "accepted": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    body = response.json()
    assert body["source_key"] == "invoice_id"
    row = SuggestionFeedback.objects.get(pk=body["id"])
    assert (row.document, row.target_field, row.source_path, row.accepted) == (
        "cash_receipt",
        "invno",
        "data.invoiceId",
        True,
    )
    assert row.source_key == "invoice_id"
    assert row.user == admin_user


def test_a_rejection_changes_the_next_answer(api):
    assert suggest(api)["custno"]["source_path"] == "customer_id"

    api.post(
        FEEDBACK,
        {
            "target": "cash_receipt",
            "target_field": "custno",
            "source_path": "customer_id",
            "accepted": False,
        },
        format="json",
    )

    assert suggest(api)["custno"]["source_path"] == "customer_reference_id"


def test_an_acceptance_changes_the_next_answer_for_a_similar_source(api):
    v3_like = {
        "data": {
            "transaction_id": 600000321,
            "amount": "89.00",
            "invoice_number": "10045",
            "customer_id": "BLUEOX",
            "customer_reference_id": "PO-12",
        }
    }
    assert suggest(api, v3_like)["custno"]["source_path"] == "data.customer_id"

    # Accepted on the v1 record, whose path has no `data.` parent.
    api.post(
        FEEDBACK,
        {
            "target": "cash_receipt",
            "target_field": "custno",
            "source_path": "customer_reference_id",
            "accepted": True,
        },
        format="json",
    )

    custno = suggest(api, v3_like)["custno"]
    assert custno["source_path"] == "data.customer_reference_id"
    assert any("accepted" in r for r in custno["reasons"])


def test_feedback_for_another_document_is_ignored(api):
    SuggestionFeedback.objects.create(
        document="sales_order",
        target_field="custno",
        source_path="customer_id",
        source_key="customer_id",
        accepted=False,
    )

    assert suggest(api)["custno"]["source_path"] == "customer_id"


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"target": "journal", "sample": {}}, "target", "Unknown target 'journal'"),
        ({"target": "cash_receipt", "sample": [1, 2]}, "sample", "JSON object"),
        ({"target": "cash_receipt", "sample": "x"}, "sample", "JSON object"),
        ({"target": "cash_receipt"}, "sample", "required"),
    ],
)
def test_bad_suggestion_requests_are_400s(api, body, field, message):
    response = api.post(SUGGEST, body, format="json")

    assert response.status_code == 400
    assert message in " ".join(response.json()[field])


def test_bad_feedback_is_a_400(api):
    response = api.post(
        FEEDBACK,
        {
            "target": "cash_receipt",
            "target_field": "ordamt",
            "source_path": "total",
            "accepted": True,
        },
        format="json",
    )

    assert response.status_code == 400
    assert "not a field of cash_receipt" in response.json()["target_field"][0]
    assert not SuggestionFeedback.objects.exists()


def test_a_reviewer_without_the_permission_is_refused():
    client = APIClient()
    client.force_authenticate(make_user(group=FINANCE_REVIEWER))

    assert (
        client.post(
            SUGGEST, {"target": "cash_receipt", "sample": {}}, format="json"
        ).status_code
        == 403
    )
    response = client.post(
        FEEDBACK,
        {
            "target": "cash_receipt",
            "target_field": "invno",
            "source_path": "invoice_id",
            "accepted": True,
        },
        format="json",
    )
    assert response.status_code == 403
    assert not SuggestionFeedback.objects.exists()


def test_anonymous_callers_are_refused():
    response = APIClient().post(
        SUGGEST, {"target": "cash_receipt", "sample": {}}, format="json"
    )

    assert response.status_code in (401, 403)


def test_a_token_works_and_a_superuser_may_suggest():
    user = make_user(is_superuser=True)
    _, key = ApiToken.objects.create_token(user)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")

    response = client.post(
        SUGGEST, {"target": "customer", "sample": V1_RECORD}, format="json"
    )

    assert response.status_code == 200
    got = {s["target_field"]: s["source_path"] for s in response.json()["suggestions"]}
    assert got["city"] == "billing_address.city"


def test_session_auth_needs_the_csrf_token(admin_user):
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(admin_user)

    response = client.post(
        SUGGEST, {"target": "cash_receipt", "sample": V1_RECORD}, format="json"
    )

    assert response.status_code == 403
    assert "CSRF" in response.json()["detail"]
