"""Anonymous callers get 401 with a challenge, signed-in callers without permission 403,
and the OpenAPI schema says so (with the 400, 404 and 414 answers)."""

import pytest
from rest_framework.test import APIClient

from tests.factories import make_user

pytestmark = pytest.mark.django_db

READ = ["/api/transactions/", "/api/review-items/"]
MAPPING = ["/api/mappings/suggest", "/api/mappings/feedback"]


@pytest.mark.parametrize("path", READ)
def test_anonymous_readers_get_401_with_a_token_challenge(path):
    response = APIClient().get(path)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize("path", MAPPING)
def test_anonymous_mapping_callers_get_401_with_a_token_challenge(path):
    response = APIClient().post(path, {}, format="json")

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Token"


@pytest.mark.parametrize(("method", "path"), [("get", p) for p in READ])
def test_signed_in_users_without_permission_get_403(method, path):
    api = APIClient()
    api.force_login(make_user())

    assert getattr(api, method)(path).status_code == 403


@pytest.mark.parametrize("path", MAPPING)
def test_signed_in_users_who_cannot_edit_mappings_get_403(path):
    api = APIClient()
    api.force_login(make_user())

    assert api.post(path, {}, format="json").status_code == 403


@pytest.fixture
def schema(client):
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200
    return response.json()


@pytest.mark.parametrize(
    ("path", "method", "codes"),
    [
        ("/api/transactions/", "get", {"200", "400", "401", "403", "404", "414"}),
        ("/api/transactions/{id}/", "get", {"200", "401", "403", "404", "414"}),
        ("/api/review-items/", "get", {"200", "400", "401", "403", "404", "414"}),
        ("/api/review-items/{id}/", "get", {"200", "401", "403", "404", "414"}),
        ("/api/mappings/suggest", "post", {"200", "400", "401", "403", "414"}),
        ("/api/mappings/feedback", "post", {"201", "400", "401", "403", "414"}),
    ],
)
def test_the_schema_documents_every_answer(schema, path, method, codes):
    responses = schema["paths"][path][method]["responses"]

    assert set(responses) == codes
    assert "WWW-Authenticate" in responses["401"]["description"]
    assert "permission" in responses["403"]["description"]


def test_the_schema_documents_414_on_the_webhooks_too(schema):
    for path, operations in schema["paths"].items():
        for operation in operations.values():
            assert "414" in operation["responses"], path
