"""POST /api/mappings/suggest against hostile samples: a 400 naming the limit, quickly."""

import json
import time

import pytest

from mappings.suggest import (
    MAX_SAMPLE_DEPTH,
    MAX_SAMPLE_KEYS,
    Feedback,
    suggest_mappings,
)
from tests.mappings import test_suggest_api

pytestmark = pytest.mark.django_db

SUGGEST = test_suggest_api.SUGGEST
admin_user = test_suggest_api.admin_user  # fixtures
api = test_suggest_api.api


def nested(depth):
    sample = {"amount": "1.00"}
    for _ in range(depth - 1):
        sample = {"data": sample}
    return sample


def post_raw(api, body: str):
    return api.generic("POST", SUGGEST, body, content_type="application/json")


@pytest.mark.parametrize("depth", [600, 1_000, 100_000])
def test_a_body_nested_past_the_parser_gets_a_400_not_a_500(api, depth):
    sample = '{"a": ' * depth + "1" + "}" * depth
    body = '{"target": "cash_receipt", "sample": ' + sample + "}"

    response = post_raw(api, body)

    assert response.status_code == 400
    assert f"{MAX_SAMPLE_DEPTH} levels" in response.content.decode()


def test_a_sample_nested_deeper_than_a_record_gets_a_400_naming_the_limit(api):
    body = json.dumps({"target": "cash_receipt", "sample": nested(200)})

    response = post_raw(api, body)

    assert response.status_code == 400
    assert response.json() == {
        "sample": [
            f"The sample nests more than {MAX_SAMPLE_DEPTH} levels deep; send one "
            "source record."
        ]
    }


def test_a_sample_as_deep_as_the_limit_is_answered(api):
    body = json.dumps({"target": "cash_receipt", "sample": nested(MAX_SAMPLE_DEPTH)})

    assert post_raw(api, body).status_code == 200


def test_a_sample_with_20000_keys_gets_a_400_at_once(api):
    sample = {f"field_{i}": f"value {i}" for i in range(20_000)}
    started = time.monotonic()

    response = api.post(
        SUGGEST, {"target": "cash_receipt", "sample": sample}, format="json"
    )

    assert time.monotonic() - started < 5
    assert response.status_code == 400
    assert response.json()["sample"] == [
        f"The sample has more than {MAX_SAMPLE_KEYS} keys; send one source record."
    ]


def test_keys_are_counted_at_every_level(api):
    sample = {f"group_{i}": {f"k{j}": j for j in range(30)} for i in range(30)}

    response = api.post(
        SUGGEST, {"target": "cash_receipt", "sample": sample}, format="json"
    )

    assert response.status_code == 400
    assert f"more than {MAX_SAMPLE_KEYS} keys" in response.json()["sample"][0]


def test_a_sample_at_the_key_limit_is_answered_quickly(api):
    sample = {f"invoice_field_{i}": f"INV-{i}" for i in range(MAX_SAMPLE_KEYS)}
    started = time.monotonic()

    response = api.post(
        SUGGEST, {"target": "cash_receipt", "sample": sample}, format="json"
    )

    assert response.status_code == 200
    assert time.monotonic() - started < 5


def test_piles_of_feedback_do_not_slow_suggestions_down():
    sample = {f"field_{i}": "x" for i in range(MAX_SAMPLE_KEYS)}
    feedback = [Feedback("invno", f"other_{i}", True) for i in range(20_000)]
    feedback.append(Feedback("invno", "field_7", True))
    started = time.monotonic()

    suggestions = suggest_mappings("cash_receipt", sample, feedback)

    assert time.monotonic() - started < 5
    invno = next(s for s in suggestions if s.target_field == "invno")
    assert invno.source_path == "field_7"
    assert "admins accepted 1× 'field_7' for invno before" in invno.reasons
