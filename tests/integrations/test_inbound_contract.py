"""The inbound contract: hostile deliveries are refused at the edge with the field
named, every request keeps its delivery row, and what passes cannot crash a worker."""

import json
from datetime import UTC, date, datetime
from decimal import Decimal
from unittest import mock

import pytest
from django.db import IntegrityError
from django.test import Client
from django_q.models import OrmQ
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrations.connectors.paytrace import (
    TEXT_LIMITS,
    InvalidRecord,
    normalize_record,
    parse_amount,
)
from integrations.inbound import (
    EVENT_RULES,
    MAX_DEPTH,
    RECORD_RULES,
    EventSerializer,
    RecordSerializer,
    exceeds_depth,
    load_json,
    secret_problem,
    validate_event,
)
from integrations.models import Event, InboundDelivery, PaymentTransaction
from tests.webhooks import event_body, paytrace_record, post_event, sign

SLUG = "paytrace-sandbox"
PAN = "4111111111111111"
LA = "America/Los_Angeles"


def _deliver(client, body: str, secret: str, **headers):
    signed = sign(body, secret, **headers)
    return post_event(client, SLUG, body, signed)


def _body_with(record_changes: dict, raw_replacements: dict | None = None) -> str:
    record = paytrace_record(**record_changes)
    body = event_body("transaction.approved", record)
    for placeholder, literal in (raw_replacements or {}).items():
        body = body.replace(json.dumps(placeholder), literal)
    return body


def _field(errors: dict, path: str):
    node = errors
    for part in path.split("."):
        node = node[part]
    return node


# --- the record's fields ---------------------------------------------------------------

BAD_FIELDS = [
    # money: finite, ASCII decimal notation, at most 2 places, within 14 digits
    ("tax_amount", "1e20"),
    ("tax_amount", "1e309"),
    ("tax_amount", "NaN"),
    ("tax_amount", "Infinity"),
    ("tax_amount", "١٢.٥٠"),  # Arabic-Indic digits
    ("tax_amount", "１２.５０"),  # full-width digits
    ("tax_amount", "12.345"),
    ("tax_amount", "-1.00"),
    ("amount", "12,50"),
    ("amount", Decimal("10.005")),
    ("amount", Decimal("1000000000000.00")),
    ("amount", True),
    # ids: ASCII digits
    ("transaction_id", "٣٤٥٦٧"),
    ("transaction_id", "123456\n"),
    ("transaction_id", "1" * 21),
    ("transaction_id", -5),
    # integers, objects, dates
    ("response_code", "abc"),
    ("response_code", 1.5),
    ("credit_card", "x"),
    ("created", "x"),
    ("created.at", "3/4/2026 0:07:09 AM"),
    ("created.at", "2026-03-04T14:07:09Z"),
    ("created.at", "2/30/2026 1:00:00 PM"),
    ("created.at", "12/31/9999 11:59:59 PM"),
    ("settled", "13/40/2025 1:00:00 PM"),
    ("settled", 20260304),
    # text: type and the width of the column it fills
    ("invoice_id", "x" * 61),
    ("invoice_id", {"a": 1}),
    ("customer_id", ["1"]),
    ("status_code", "GB" + "1" * 30),
    ("transaction_type", "ß" * 20),  # "SS" * 20 once upper-cased
    ("credit_card.masked_number", "*" * 41),
    ("description", "x" * 1001),
]


def _set(record: dict, path: str, value) -> None:
    *parents, leaf = path.split(".")
    node = record
    for parent in parents:
        node = node[parent]
    node[leaf] = value


@pytest.mark.django_db
@pytest.mark.parametrize(("path", "value"), BAD_FIELDS)
def test_a_field_the_pipeline_cannot_read_is_refused_naming_it(
    client, paytrace_conn, secret, path, value
):
    record = paytrace_record()
    _set(record, path, value)
    body = event_body("transaction.approved", record)

    response = _deliver(client, body, secret)

    assert response.status_code == 400
    answer = response.json()
    assert answer["reason"] == "invalid_shape"
    assert f"data.{path}" in answer["detail"]
    assert _field(answer["errors"], f"data.{path}")
    delivery = InboundDelivery.objects.get()
    assert delivery.failure_reason == "invalid_shape"
    assert path.split(".")[-1] in delivery.failure_detail
    assert Event.objects.count() == 0
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("literal", "field"),
    [("1e20", "amount"), ("1E+2", "amount"), ("1.5e1", "tax_amount")],
)
def test_a_json_number_in_exponent_notation_is_no_amount(
    client, paytrace_conn, secret, literal, field
):
    body = _body_with({field: "@number@"}, {"@number@": literal})
    response = _deliver(client, body, secret)
    assert response.status_code == 400
    assert f"data.{field}" in response.json()["detail"]


@pytest.mark.django_db
def test_a_valid_record_with_every_field_the_pipeline_reads_is_accepted(
    client, paytrace_conn, secret
):
    record = paytrace_record(
        transaction_id="500000777",
        amount=Decimal("999999999999.99"),
        tax_amount="0.10",
        response_code=101,
        settled="3/4/2026 8:15:00 PM",
        masked_card_number="xxxxxxxxxxxx1111",
        invoice_id="x" * 60,
    )
    response = _deliver(client, event_body("transaction.approved", record), secret)
    assert response.status_code == 202
    assert Event.objects.get().transaction_id == "500000777"


# --- bodies that broke the edge itself --------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_refused_and_recorded(
    client, paytrace_conn, secret, literal
):
    body = _body_with({"csc_response": "@x@"}, {"@x@": literal})
    response = _deliver(client, body, secret)

    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_json"
    assert InboundDelivery.objects.get().failure_reason == "invalid_json"
    assert Event.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "nested",
    [
        "[" * 1000 + "]" * 1000,
        '{"a":' * 1000 + "1" + "}" * 1000,
        "[" * 100_000,  # never closed
        "[" * (MAX_DEPTH - 1) + "]" * (MAX_DEPTH - 1),  # 33 with the body and data
    ],
)
def test_deep_nesting_is_refused_without_recursing(
    client, paytrace_conn, secret, nested
):
    body = _body_with({"extra": "@deep@"}, {"@deep@": nested})
    response = _deliver(client, body, secret)

    assert response.status_code == 400
    assert response.json()["reason"] == "too_deep"
    assert InboundDelivery.objects.get().failure_reason == "too_deep"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "escape",
    [
        r'"\ud800"',
        r'"tail \udfff"',
        r'"\u0000"',
        r'{"\ud83d": 1}',  # a key
        r'["ok", "\ud800x"]',  # inside an array
    ],
)
def test_unstorable_escapes_anywhere_in_the_body_are_refused(
    client, paytrace_conn, secret, escape
):
    body = _body_with({"billing_address": "@x@"}, {"@x@": escape})
    response = _deliver(client, body, secret)

    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_json"
    assert InboundDelivery.objects.get().response_status == 400


@pytest.mark.django_db
def test_a_lone_surrogate_in_a_field_the_pipeline_reads_is_refused(
    client, paytrace_conn, secret
):
    body = _body_with({"description": "@x@"}, {"@x@": r'"\ud800"'})
    assert _deliver(client, body, secret).status_code == 400


@pytest.mark.django_db
def test_invalid_utf8_is_refused_and_recorded(client, paytrace_conn, secret):
    body = event_body("transaction.approved", paytrace_record()).encode()
    body = body.replace(b'"SALE"', b'"SA\xffLE"')
    response = client.post(
        f"/webhooks/paytrace/{SLUG}/",
        data=body,
        content_type="application/json",
        headers=sign(body.decode("latin-1"), secret),
    )
    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_encoding"
    assert InboundDelivery.objects.get().body_size == len(body)


@pytest.mark.django_db
def test_a_database_refusal_is_not_mistaken_for_a_duplicate(paytrace_conn, secret):
    client = Client(raise_request_exception=False)
    body = event_body("transaction.approved", paytrace_record())
    # The event's insert (one statement, `insert_row`) is refused by the database.
    with mock.patch(
        "integrations.models.inbound.insert_row",
        side_effect=IntegrityError("CHECK constraint failed"),
    ):
        response = _deliver(client, body, secret)

    assert response.status_code == 500
    assert response.json()["reason"] == "event_not_stored"
    delivery = InboundDelivery.objects.get()
    assert delivery.failure_reason == "event_not_stored"
    assert delivery.event is None


# --- ids ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_webhook_ids_over_200_characters_are_refused_not_cut_into_a_collision(
    client, paytrace_conn, secret
):
    shared = "msg_" + "a" * 196
    first = _deliver(
        client,
        event_body("transaction.approved", paytrace_record()),
        secret,
        msg_id=shared,
    )
    second = _deliver(
        client,
        event_body("transaction.approved", paytrace_record()),
        secret,
        msg_id=shared + "b",
    )

    assert first.status_code == 202
    assert second.status_code == 400
    assert second.json()["reason"] == "invalid_webhook_id"
    assert "200" in second.json()["detail"]
    refused = InboundDelivery.objects.get(response_status=400)
    assert refused.webhook_id == shared  # a cut copy, for the record only
    assert Event.objects.count() == 1


@pytest.mark.django_db
def test_a_card_number_as_webhook_id_is_refused_and_stored_masked(
    client, paytrace_conn, secret
):
    body = event_body("transaction.approved", paytrace_record())
    response = _deliver(client, body, secret, msg_id=PAN)

    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_webhook_id"
    assert PAN not in response.content.decode()
    delivery = InboundDelivery.objects.get()
    assert delivery.webhook_id.endswith("1111") and PAN not in delivery.webhook_id
    assert delivery.contains_card_data
    assert Event.objects.count() == 0


@pytest.mark.django_db
def test_ids_holding_a_card_shaped_run_are_stored_masked_and_never_merged(
    client, paytrace_conn, secret
):
    # Random hex ids sometimes hold a Luhn-valid run of digits; so may a hostile id.
    # Both PANs end in 1111: plain masking would make the two ids one.
    other = "4000000000061111"
    ids = [f"msg_{PAN}", f"msg_{other}"]
    for msg_id in ids:
        body = event_body("transaction.approved", paytrace_record())
        assert _deliver(client, body, secret, msg_id=msg_id).status_code == 202

    stored = list(Event.objects.values_list("event_id", flat=True))
    assert len(set(stored)) == 2
    assert not any(PAN in e or other in e for e in stored)
    assert all(e.endswith("1111") for e in stored)
    body = event_body("transaction.approved", paytrace_record())
    again = _deliver(client, body, secret, msg_id=ids[0])
    assert again.json()["status"] == "duplicate"


@pytest.mark.django_db
def test_a_card_shaped_transaction_id_is_refused_never_merged(
    client, paytrace_conn, secret
):
    for pan in (PAN, "4012888888881881"):  # same last four
        body = event_body("transaction.approved", paytrace_record(transaction_id=pan))
        response = _deliver(client, body, secret)
        assert response.status_code == 400
        assert "data.transaction_id" in response.json()["detail"]
        assert pan not in response.content.decode()
    assert Event.objects.count() == 0
    assert PaymentTransaction.objects.count() == 0
    for delivery in InboundDelivery.objects.all():
        assert PAN not in delivery.body and "4012888888881881" not in delivery.body


@pytest.mark.django_db
def test_refusals_never_echo_the_value_they_refused(client, paytrace_conn, secret):
    record = paytrace_record()
    body = event_body(PAN, record)  # the event type is where DRF echoed input
    response = _deliver(client, body, secret)

    assert response.status_code == 400
    assert PAN not in response.content.decode()
    assert PAN not in InboundDelivery.objects.get().failure_detail


@pytest.mark.django_db
def test_a_card_number_in_the_slug_or_a_header_name_is_stored_masked(
    client, paytrace_conn, secret
):
    body = event_body("transaction.approved", paytrace_record())
    response = client.post(
        f"/webhooks/paytrace/{PAN}/",
        data=body,
        content_type="application/json",
        headers={**sign(body, secret), f"X-{PAN}": "1"},
    )

    assert response.status_code == 404
    assert PAN not in response.content.decode()
    delivery = InboundDelivery.objects.get()
    assert PAN not in delivery.connection_slug
    assert PAN not in json.dumps(delivery.headers)


# --- silent posts ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "transaction_id",
    [
        "²³",  # "²³".isdigit() is True
        "５５５",  # full-width: int() reads them
        "5555555555554444²",
        "5555555555554444",  # a card number
        "1" * 21,
        "",
    ],
)
def test_a_silent_post_needs_an_ascii_numeric_transaction_id(
    client, paytrace_conn, transaction_id
):
    response = client.post(
        f"/webhooks/paytrace/{SLUG}/silent-post/",
        {"parmList": f"TRANSACTIONID~{transaction_id}|APPMSG~APPROVED|"},
    )

    assert response.status_code == 400
    assert response.json()["reason"] == "invalid_shape"
    delivery = InboundDelivery.objects.get()
    assert delivery.failure_reason == "invalid_shape"
    assert "5555555555554444" not in delivery.body + delivery.webhook_id
    assert OrmQ.objects.count() == 0


@pytest.mark.django_db
@pytest.mark.parametrize(
    "encoded",
    ["3761+1114+3528+249", "%33%37%36%31%31%31%31%34%33%35%32%38%32%34%39"],
)
def test_a_card_number_hidden_by_form_encoding_is_masked_in_a_silent_post(
    client, paytrace_conn, encoded
):
    body = f"parmList=TRANSACTIONID~123%7CCARDNUMBER~{encoded}%7C"
    response = client.post(
        f"/webhooks/paytrace/{SLUG}/silent-post/",
        data=body,
        content_type="application/x-www-form-urlencoded",
    )

    assert response.status_code == 202
    delivery = InboundDelivery.objects.get()
    assert "376111143528249" not in delivery.body.replace(" ", "")
    assert delivery.contains_card_data


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", b'{"parmList": "TRANSACTIONID~1|"}'),
        ("multipart/form-data; boundary=x", b"--x\r\nbroken"),
        ("application/x-www-form-urlencoded", b"parmList=%FF%FE&" + b"a=1&" * 1200),
    ],
)
def test_a_silent_post_that_is_not_a_form_is_refused_and_recorded(
    client, paytrace_conn, content_type, body
):
    response = client.post(
        f"/webhooks/paytrace/{SLUG}/silent-post/", data=body, content_type=content_type
    )
    assert response.status_code == 400
    assert InboundDelivery.objects.get().response_status == 400


# --- secrets ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("secret", "message"),
    [
        ("whsec_", "Nothing follows"),
        ("whsec_a", "not valid base64"),
        ("whsec_!!!!", "not valid base64"),
        ("whsec_c2hvcnQ=", "at least 24"),
        ("dGVzdC13ZWJob29rLXNlY3JldC0xMjM0NTY3ODkw", "starts with whsec_"),
    ],
)
def test_a_malformed_secret_is_refused_when_saved(paytrace_conn, secret, message):
    from integrations.admin.connections import WebhookSecretForm
    from integrations.models import WebhookSecret

    form = WebhookSecretForm(
        data={"label": "new", "secret": secret, "is_active": "on"},
        instance=WebhookSecret(connection=paytrace_conn),
    )
    assert not form.is_valid()
    assert message in " ".join(form.errors["secret"])


def test_a_good_secret_is_accepted(paytrace_conn, secret):
    from integrations.admin.connections import WebhookSecretForm
    from integrations.models import WebhookSecret

    form = WebhookSecretForm(
        data={"label": "new", "secret": secret, "is_active": "on"},
        instance=WebhookSecret(connection=paytrace_conn),
    )
    assert form.is_valid(), form.errors
    assert secret_problem(secret) is None


@pytest.mark.django_db
@pytest.mark.parametrize("bad", ["whsec_", "whsec_a", "whsec_é"])
def test_a_stored_bad_secret_is_skipped_and_older_secrets_still_verify(
    client, paytrace_conn, secret, bad
):
    paytrace_conn.webhook_secrets.create(label="newest, broken", secret=bad)
    body = event_body("transaction.approved", paytrace_record())

    response = _deliver(client, body, secret)

    assert response.status_code == 202
    assert InboundDelivery.objects.get().signature_result == "valid"


@pytest.mark.django_db
def test_only_bad_secrets_answer_401_with_a_reason_not_500(
    client, paytrace_conn, secret
):
    paytrace_conn.webhook_secrets.update(is_active=False)
    paytrace_conn.webhook_secrets.create(label="broken", secret="whsec_")
    body = event_body("transaction.approved", paytrace_record())

    response = _deliver(client, body, secret)

    assert response.status_code == 401
    assert response.json()["reason"] == "no_usable_secret"
    assert InboundDelivery.objects.get().failure_reason == "no_usable_secret"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "header", ["v1", "v1,", "v1,abc!!", "garbage", "v1,abc= v1", "1,abc="]
)
def test_a_garbled_signature_header_is_named_malformed(
    client, paytrace_conn, secret, header
):
    body = event_body("transaction.approved", paytrace_record())
    headers = {**sign(body, secret), "webhook-signature": header}
    response = post_event(client, SLUG, body, headers)
    assert response.status_code == 401
    assert response.json()["reason"] == "malformed_signature_header"


@pytest.mark.django_db
def test_several_signatures_in_one_header_still_verify(client, paytrace_conn, secret):
    body = event_body("transaction.approved", paytrace_record())
    headers = sign(body, secret)
    other = sign(
        body, "whsec_b3RoZXItc2VjcmV0LW90aGVyLXNlY3JldA==", headers["webhook-id"]
    )
    headers["webhook-signature"] = (
        f"{other['webhook-signature']} {headers['webhook-signature']}"
    )
    assert post_event(client, SLUG, body, headers).status_code == 202


# --- the worker's reader ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"tax_amount": "1e20"}, "tax_amount"),
        ({"amount": Decimal("1E+20")}, "amount"),
        ({"amount": "١٢٣"}, "amount"),
        ({"response_code": "abc"}, "response_code"),
        ({"credit_card": "x"}, "credit_card"),
        ({"created": {"at": "3/4/2026 0:07:09 AM"}}, "created.at"),
        ({"created": {"at": "12/31/9999 11:59:59 PM"}}, "created.at"),
        ({"settled": 5}, "settled"),
        ({"transaction_id": "²³"}, "transaction_id"),
        ({"transaction_id": None}, "transaction_id"),
        ({"invoice_id": "x" * 61}, "invoice_id"),
        ({"status_message": "ok\x00"}, "status_message"),
        ({"customer_id": "\ud800"}, "customer_id"),
        ({"description": {"a": 1}}, "description"),
        ({"status_code": "GB" + "9" * 21}, "status_code"),
    ],
)
def test_normalize_record_names_the_malformed_field(changes, field):
    record = {**paytrace_record(), **changes}
    with pytest.raises(InvalidRecord) as caught:
        normalize_record(record, LA)
    assert caught.value.field == field
    assert isinstance(caught.value, ValueError)


def test_normalize_record_refuses_what_is_not_a_record():
    with pytest.raises(InvalidRecord):
        normalize_record(["not", "a", "record"], LA)


@pytest.mark.parametrize("text", ["١٢٣", "１２３", "1e5", "Infinity", "NaN", "²"])
def test_parse_amount_reads_only_ascii_decimal_notation(text):
    with pytest.raises(ValueError):
        parse_amount(text)


def test_text_limits_fit_the_columns_they_fill():
    columns = {
        "transaction_type": "transaction_type",
        "invoice_id": "invoice_reference",
        "customer_id": "customer_reference",
        "customer_reference_id": "customer_po",
        "approval_code": "approval_code",
        "status_code": "status_code",
        "status_message": "status_message",
        "created.through": "channel",
    }
    for field, column in columns.items():
        width = PaymentTransaction._meta.get_field(column).max_length
        assert TEXT_LIMITS[field] == width, field


def test_the_schema_documents_the_fields_the_contract_checks():
    assert set(EventSerializer().fields) == set(EVENT_RULES)
    assert set(RecordSerializer().fields) == set(RECORD_RULES)


@pytest.mark.django_db
def test_the_schema_names_the_new_refusals(client):
    schema = client.get("/api/schema/", {"format": "json"}).json()
    answers = schema["paths"]["/webhooks/paytrace/{slug}/"]["post"]["responses"]
    for reason in ("too_deep", "invalid_webhook_id", "invalid_shape"):
        assert reason in answers["400"]["description"]
    for reason in ("malformed_signature_header", "no_usable_secret"):
        assert reason in answers["401"]["description"]


# --- properties -------------------------------------------------------------------------------

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.decimals(allow_nan=False, allow_infinity=False, places=None),
    st.sampled_from(
        [
            "",
            "0.00",
            "12.5",
            "999999999999.99",
            "1e20",
            "١٢",
            "GB812",
            "GB" + "1" * 25,
            "Y",
            "SALE",
            "ß" * 20,
            "3/4/2026 2:07:09 PM",
            "3/4/2026 0:07:09 AM",
            "12/31/2999 11:59:59 PM",
            "11/2/2025 1:30:00 AM",
            "3/9/2025 2:30:00 AM",
            "500000123",
            "1111",
            "************1111",
        ]
    ),
    st.text(max_size=70),
)
_values = st.one_of(
    _scalars,
    st.dictionaries(st.sampled_from(["at", "through", "masked_number"]), _scalars),
)
_FIELDS = [
    "transaction_id",
    "transaction_type",
    "amount",
    "tax_amount",
    "invoice_id",
    "customer_reference_id",
    "customer_id",
    "description",
    "credit_card",
    "masked_card_number",
    "approval_code",
    "approval_message",
    "status_code",
    "status_message",
    "response_code",
    "created",
    "settled",
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    overrides=st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=6),
    time_zone=st.sampled_from(["America/Los_Angeles", "UTC", "Pacific/Kiritimati"]),
)
def test_anything_the_edge_accepts_normalises_without_an_exception(
    overrides, time_zone
):
    record = {**paytrace_record(), **overrides}
    # Through JSON text, as the edge reads it: numbers with a fraction become Decimal.
    text = json.dumps(
        {
            "type": "transaction.approved",
            "occurred_at": "2026-03-04T14:07:09Z",
            "data": record,
        },
        default=str,
    )
    try:
        body = load_json(text)
    except ValueError:
        return
    _, errors = validate_event(body, time_zone)
    if not errors:
        normalize_record(body["data"], time_zone)
    else:
        # What the edge refuses, the worker's reader refuses with InvalidRecord or
        # the edge named a stricter rule; never a crash of another kind.
        try:
            normalize_record(body["data"], time_zone)
        except InvalidRecord:
            pass


@settings(max_examples=300, deadline=None)
@given(overrides=st.dictionaries(st.sampled_from(_FIELDS), _values, max_size=8))
def test_normalize_record_raises_nothing_but_invalid_record(overrides):
    record = {**paytrace_record(), **overrides}
    try:
        normalize_record(record, LA)
    except InvalidRecord:
        pass


_json = st.recursive(
    st.one_of(st.none(), st.integers(), st.text(alphabet='[]{}"\\ab,:')),
    lambda children: st.one_of(
        st.lists(children, max_size=3),
        st.dictionaries(
            st.text(alphabet='[]{}"\\ab', max_size=4), children, max_size=3
        ),
    ),
    max_leaves=60,
)


def _depth(value) -> int:
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    return 0


@settings(max_examples=300, deadline=None)
@given(value=_json, limit=st.integers(min_value=0, max_value=6))
def test_the_depth_check_agrees_with_the_parsed_depth(value, limit):
    assert exceeds_depth(json.dumps(value), limit) == (_depth(value) > limit)


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet='[]{}"\\ ,:1a', max_size=400))
def test_the_depth_check_never_lets_json_loads_recurse_past_the_cap(text):
    if not exceeds_depth(text, 8):
        try:
            value = json.loads(text)
        except ValueError:
            return
        assert _depth(value) <= 8


@pytest.mark.django_db
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    fragment=st.one_of(
        st.text(max_size=40).map(json.dumps),
        st.sampled_from(
            ["NaN", "1e999", "-0", r'"\udc00"', "[" * 40, '{"a":' * 40, "1" * 5000]
        ),
    ),
    field=st.sampled_from(_FIELDS + ["extra"]),
)
def test_every_signed_hostile_body_gets_a_row_and_no_server_error(
    paytrace_conn, secret, fragment, field
):
    client = Client(raise_request_exception=False)
    before = InboundDelivery.objects.count()
    body = _body_with({field: "@x@"}, {"@x@": fragment})
    response = _deliver(client, body, secret, timestamp=datetime.now(UTC))
    assert response.status_code < 500
    assert InboundDelivery.objects.count() == before + 1


@pytest.mark.django_db
def test_a_raw_nul_byte_in_a_body_is_recorded_without_it(client, paytrace_conn, secret):
    body = event_body("transaction.approved", paytrace_record()).replace(
        '"SALE"', '"SA\x00LE"'
    )
    response = _deliver(client, body, secret)

    assert response.status_code == 400
    delivery = InboundDelivery.objects.get()
    assert delivery.failure_reason == "invalid_json"
    assert "\x00" not in delivery.body and "SA\ufffdLE" in delivery.body


def test_one_malformed_polled_record_does_not_fail_the_whole_export(http):
    from integrations.connectors.paytrace import PayTraceConnector

    url = "https://api.sandbox.paytrace.com"
    http.add(
        "POST",
        f"{url}/oauth/token",
        json={"access_token": "tok-1", "token_type": "bearer", "expires_in": 7200},
    )
    good, bad = paytrace_record(amount="12.50"), paytrace_record(amount="abc")
    http.add(
        "POST",
        f"{url}/v1/transactions/export/by_date_range",
        body=json.dumps({"success": True, "transactions": [good, bad]}, default=str),
        content_type="application/json",
    )
    connector = PayTraceConnector(url, "apiuser", "secret", "INTEGRATOR1")

    records = connector.export_by_date_range(date(2026, 3, 1), date(2026, 3, 2))

    assert normalize_record(records[0], LA).amount == Decimal("12.50")
    with pytest.raises(InvalidRecord, match="amount"):
        normalize_record(records[1], LA)
