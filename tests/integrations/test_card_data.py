"""Card numbers, everywhere: one masking function, a storage-wide net, clean logs.

Each form an outside attack planted is sent through a real entry point (a signed
webhook, a silent post, the review page, the feedback API, django-q2's task store),
and then every column of every table is read back: no planted card number may be in
any of them, in whatever shape.
"""

import json
import logging
import time
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from integrations.carddata import policy_for
from integrations.models import (
    Event,
    InboundDelivery,
    PaymentTransaction,
    Posting,
    WebhookSecret,
)
from integrations.redaction import (
    RedactingFormatter,
    luhn_valid,
    mask_card_numbers,
    mask_value,
    redact_data,
    redact_headers,
    redact_text,
)
from integrations.roles import FINANCE_REVIEWER
from tests.factories import (
    make_connection,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)
from tests.support.cardsweep import digits_of, sweep_database
from tests.webhooks import event_body, paytrace_record, post_event, sign

SLUG = "paytrace-sandbox"
VISA = "4111111111111111"
MASTERCARD = "5555555555554444"
MASTERCARD_2 = "5105105105105100"
VISA_13 = "4222222222222"
AMEX = "378282246310005"
# Every planted number; the sweep looks for all of them after each test.
CARDS = [VISA, MASTERCARD, MASTERCARD_2, VISA_13, AMEX, "6011111111111117"]


def assert_no_card_numbers_stored():
    findings = sweep_database(CARDS)
    assert not findings, "\n".join(map(str, findings))


# --- the detector, one form at a time ---------------------------------------------------


@pytest.mark.parametrize(
    ("text", "last4"),
    [
        (VISA, "1111"),
        ("4111 1111 1111 1111", "1111"),
        ("4111-1111-1111-1111", "1111"),
        ("4111.1111.1111.1111", "1111"),
        ("4111  1111  1111  1111", "1111"),
        ("4111/1111/1111/1111", "1111"),
        ("4111\n1111\r\n1111\t1111", "1111"),
        ("4111\\n1111\\n1111\\n1111", "1111"),  # newlines escaped in JSON text
        ("4111_1111:1111,1111", "1111"),
        ("4111\ufffd1111\ufffd1111\ufffd1111", "1111"),  # replacement characters
        ("\\u0034\\u0031\\u0031\\u0031" + "1" * 12, "1111"),
        # JSON text inside a JSON string: the escapes are escaped once more
        ("\\\\u0034\\\\u0031\\\\u0031\\\\u0031" + "1" * 12, "1111"),
        ('\\"\\\\u0035\\\\u0031\\\\u0030\\\\u0035' + "105105105100", "5100"),
        ("[4111, 1111, 1111, 1111]", "1111"),
        ('["4111", "1111", "1111", "1111"]', "1111"),
        ("[[4111],[1111],[1111],[1111]]", "1111"),
        ("5105105105105100.0", "5100"),
        ("4.222222222222e12", "2222"),
        ("5.1051051051051E+15", "5100"),
        ("5555555555554444²", "4444"),
        ("５５５５５５５５５５５５４４４４", "４４４４"),
        ("٤١١١١١١١١١١١١١١١", "١١١١"),
        ("msg_4111111111111111", "1111"),
        ("card4111111111111111!", "1111"),
        (AMEX, "0005"),
        ("30569309025904", "5904"),  # Diners
        ("6011111111111117", "1117"),  # Discover
        ("3530111333300000", "0000"),  # JCB
        ("2223003122003222", "3222"),  # Mastercard 2-series
        ("6200000000000005", "0005"),  # UnionPay
    ],
)
def test_it_masks_a_card_number_in_any_form_keeping_the_last_four(text, last4):
    masked, found = mask_card_numbers(text)

    assert found
    assert last4 in masked
    assert not any(card in digits_of(masked) for card in [*CARDS, "3056930902"])
    assert "*" in masked


@pytest.mark.parametrize(
    "text",
    [
        "2026-12-06 03:14:15",
        "2026-12-06T03:14:15.123456+00:00",
        "12/6/2026 3:14:15 AM",
        "1234567890123456",  # not Luhn-valid
        "9111111111111111",  # Luhn-valid, but no card brand starts with 9
        "1796542455",  # a webhook timestamp
        "125.50 USD, tax 10.04",
        "+1 (509) 555-0134",
        "pt1-600000001-cash_receipt-4a1f0c2e9b8d7e6f",
        "msg_4111111111111111a0b1c2d3e4f5a6b7",  # uuid4().hex: a run of digits by chance
        "4111111111111111a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e2f3",  # SHA-256
        "41111111-1111-1111-4111-111111111111",  # a dashed uuid
        "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4=",
    ],
)
def test_it_leaves_timestamps_amounts_keys_and_hashes_alone(text):
    assert mask_card_numbers(text) == (text, False)


def test_every_unicode_digit_is_known_below_u_20000():
    import unicodedata

    beyond = [
        c
        for c in range(0x20000, 0x110000)
        if unicodedata.digit(chr(c), None) is not None
    ]
    assert beyond == []


def test_luhn_valid_reads_any_digits():
    assert luhn_valid(VISA)
    assert luhn_valid("４１１１１１１１１１１１１１１１")
    assert not luhn_valid("4111111111111112")


def test_parsed_json_is_masked_in_keys_numbers_and_digit_group_arrays():
    data = {
        VISA: "key",
        "groups": [4111, 1111, 1111, 1111],
        "as_float": Decimal("5105105105105100.0"),
        "as_exponent": Decimal("4.222222222222E+12"),
        "as_int": 378282246310005,
        "amount": Decimal("125.50"),
        "transaction_id": 600000001,
        "nested": [{"deep": ["4111 1111 1111 1111"]}],
        "credit_card": {"number": VISA, "masked_number": "************1111"},
    }

    masked, found = redact_data(data)

    assert found
    assert not any(card in digits_of(json.dumps(masked, default=str)) for card in CARDS)
    assert masked["amount"] == Decimal("125.50")
    assert masked["transaction_id"] == 600000001
    assert masked["groups"][-1] == 1111
    assert masked["credit_card"]["masked_number"] == "************1111"


def test_nesting_thousands_deep_does_not_exhaust_the_stack():
    deep: list = [VISA]
    for _ in range(20_000):
        deep = [deep]

    masked, found = mask_value(deep)

    assert found
    for _ in range(20_000):
        masked = masked[0]
    assert masked == ["************1111"]


def test_header_names_and_values_are_masked():
    headers, found = redact_headers(
        {f"X-{VISA}": "yes", "Webhook-Id": f"msg_{MASTERCARD}", "Authorization": "x"}
    )

    assert found
    assert headers == {
        "X-************1111": "yes",
        "Webhook-Id": "msg_************4444",
        "Authorization": "[REDACTED]",
    }


@pytest.mark.parametrize(
    "hostile",
    [
        "4" * 262_144,
        "4111 " * 52_428,
        VISA * 16_384,
        "\\u0034" * 43_690,
        "-" * 262_144,
        "1 " * 131_072,
        "1." * 131_072,
        "1e1" * 87_381,
        '"a":' * 65_536,
        "a=" * 131_072,
        "\\" * 262_144,
        "4111,\n    " * 26_214,
    ],
)
def test_a_256_kib_hostile_body_is_masked_in_linear_time(hostile):
    started = time.perf_counter()
    redact_text(hostile)
    elapsed = time.perf_counter() - started

    assert elapsed < 3.0  # a quadratic pattern takes minutes here


# --- the storage-wide net ---------------------------------------------------------------


@pytest.mark.django_db
def test_a_card_number_saved_through_any_orm_path_is_masked_in_the_column():
    event = Event.objects.create(
        connection=make_connection(),
        event_id="evt_1",
        type="transaction.approved",
        occurred_at=timezone.now(),
        transaction_id="600000001",
        payload={"memo": f"card {VISA}"},
        last_error=f"bad input {MASTERCARD}",
    )
    Event.objects.filter(pk=event.pk).update(last_traceback=f"ValueError: {AMEX}")
    InboundDelivery.objects.bulk_create(
        [InboundDelivery(body=VISA_13, headers={}, signature_result="invalid")]
    )
    delivery = InboundDelivery.objects.get()
    delivery.failure_detail = MASTERCARD_2
    InboundDelivery.objects.bulk_update([delivery], ["failure_detail"])

    assert_no_card_numbers_stored()
    event.refresh_from_db()
    assert event.payload == {"memo": "card ************1111"}
    assert event.last_error == "bad input ************4444"
    assert event.transaction_id == "600000001"


@pytest.mark.django_db
def test_two_card_shaped_ids_with_the_same_last_four_stay_two_rows():
    connection = make_connection()
    first = make_transaction(connection, transaction_id=VISA)
    second = make_transaction(connection, transaction_id="4012888888881881")
    other_visa_ending_1111 = "4000000006001111"
    assert luhn_valid(other_visa_ending_1111)
    third = make_transaction(connection, transaction_id=other_visa_ending_1111)

    stored = set(
        PaymentTransaction.objects.filter(
            pk__in=[first.pk, second.pk, third.pk]
        ).values_list("transaction_id", flat=True)
    )

    assert len(stored) == 3
    assert all(value.endswith(("1111", "1881")) for value in stored)
    assert not any(
        card in digits_of(value)
        for value in stored
        for card in (VISA, "4012888888881881", other_visa_ending_1111)
    )


@pytest.mark.django_db
def test_secrets_idempotency_keys_and_password_hashes_are_stored_unchanged():
    connection = make_connection(password=f"api-key-{VISA}")
    secret = WebhookSecret.objects.create(
        connection=connection, secret=f"whsec_{VISA}{VISA}"
    )
    posting = make_posting(
        make_transaction(connection), idempotency_key=f"pt1-{VISA}-cash_receipt-ab12"
    )
    user = make_user(password=VISA)

    connection.refresh_from_db()
    secret.refresh_from_db()
    posting.refresh_from_db()
    user.refresh_from_db()
    assert connection.password == f"api-key-{VISA}"
    assert secret.secret == f"whsec_{VISA}{VISA}"
    assert posting.idempotency_key == f"pt1-{VISA}-cash_receipt-ab12"
    assert user.check_password(VISA)


@pytest.mark.django_db
def test_the_net_leaves_exempt_columns_and_numbers_alone():
    from django.contrib.auth.models import User
    from django.contrib.sessions.models import Session
    from django_q.models import OrmQ, Task

    assert policy_for(User._meta.get_field("password")) is None
    assert policy_for(Session._meta.get_field("session_data")) is None
    assert policy_for(OrmQ._meta.get_field("payload")) is None
    assert policy_for(Task._meta.get_field("id")) is None
    assert policy_for(Posting._meta.get_field("idempotency_key")) is None
    assert policy_for(Posting._meta.get_field("unapplied_amount")) is None
    assert policy_for(Task._meta.get_field("result")) == "plain"
    assert policy_for(Event._meta.get_field("event_id")) == "keyed"


@pytest.mark.django_db
def test_a_failed_task_result_is_pickled_without_the_card_number():
    from django_q.brokers import get_broker
    from django_q.models import Task
    from django_q.monitor import save_task

    save_task(
        {
            "id": "0123456789abcdef0123456789abcdef",
            "name": "process_event-1",
            "func": "integrations.tasks.process_event",
            "args": (1,),
            "kwargs": {},
            "started": timezone.now(),
            "stopped": timezone.now(),
            "result": f"ValueError: '{VISA}' is not a number : Traceback ...{VISA}",
            "success": False,
            "sync": True,
        },
        get_broker(),
    )

    task = Task.objects.get()
    assert task.result == (
        "ValueError: '************1111' is not a number : Traceback ...************1111"
    )
    assert task.args == (1,)
    assert_no_card_numbers_stored()


# --- through the real entry points ------------------------------------------------------


def _record_body(record_json_fragment: str, **record) -> str:
    """A signed-webhook body whose record carries `"memo": <fragment>` verbatim."""
    body = event_body("transaction.approved", paytrace_record(**record))
    return body.replace('"description": ""', f'"memo": {record_json_fragment}', 1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    "fragment",
    [
        '"4111.1111.1111.1111"',
        '"4111  1111  1111  1111"',
        '"4111/1111/1111/1111"',
        '"4111\\n1111\\n1111\\n1111"',
        '"\\u0034\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031'
        '\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031\\u0031"',
        "[4111, 1111, 1111, 1111]",
        '["4111", "1111", "1111", "1111"]',
        "5105105105105100.0",
        "4.222222222222e12",
        "378282246310005",
        '{"4111111111111111": "a card number as a key"}',
        '"５５５５５５５５５５５５４４４４"',
        '"5555555555554444²"',
    ],
)
def test_a_signed_webhook_carrying_a_card_number_stores_none(
    client, paytrace_conn, secret, http, run_tasks, fragment
):
    body = _record_body(fragment)
    assert json.loads(body)["data"]["memo"] is not None

    response = post_event(client, SLUG, body, sign(body, secret))
    run_tasks()

    assert response.status_code < 500
    assert InboundDelivery.objects.count() == 1
    assert_no_card_numbers_stored()


@pytest.mark.django_db
def test_a_card_number_as_webhook_id_header_name_or_transaction_id_is_not_stored(
    client, paytrace_conn, secret, http, run_tasks
):
    as_id = event_body("transaction.approved", paytrace_record())
    as_header = event_body("transaction.approved", paytrace_record())
    as_txid = event_body(
        "transaction.approved", paytrace_record(transaction_id=int(MASTERCARD))
    )

    responses = [
        post_event(client, SLUG, as_id, sign(as_id, secret, msg_id=VISA)),
        post_event(
            client, SLUG, as_header, {**sign(as_header, secret), f"X-{AMEX}": "1"}
        ),
        post_event(client, SLUG, as_txid, sign(as_txid, secret)),
    ]
    run_tasks()

    assert all(r.status_code < 500 for r in responses)
    assert InboundDelivery.objects.count() == 3
    assert_no_card_numbers_stored()


@pytest.mark.django_db
def test_a_card_number_in_the_url_slug_or_echoed_by_a_field_error_is_not_stored(
    client, paytrace_conn, secret
):
    body = event_body("transaction.approved", paytrace_record())
    bad_type = body.replace('"transaction.approved"', f'"{VISA}"', 1)
    bad_date = body.replace('"occurred_at": "', f'"occurred_at": "{MASTERCARD} ', 1)

    responses = [
        post_event(client, VISA, body, sign(body, secret)),
        post_event(client, SLUG, bad_type, sign(bad_type, secret)),
        post_event(client, SLUG, bad_date, sign(bad_date, secret)),
    ]

    assert [r.status_code for r in responses] == [404, 400, 400]
    assert InboundDelivery.objects.count() == 3
    assert_no_card_numbers_stored()


@pytest.mark.django_db
@pytest.mark.parametrize("junk", [b"\xff", b"\xed\xa0\x80", "\ufffd".encode()])
def test_a_card_number_split_by_invalid_bytes_is_not_stored(
    client, paytrace_conn, junk
):
    pan = VISA.encode()
    body = b'{"type": "x", "note": "' + pan[:9] + junk + pan[9:] + b'"}'

    response = client.post(
        f"/webhooks/paytrace/{SLUG}/", data=body, content_type="application/json"
    )

    assert response.status_code in (400, 401)
    assert InboundDelivery.objects.count() == 1
    assert_no_card_numbers_stored()


@pytest.mark.django_db
@pytest.mark.parametrize(
    "transaction_id",
    [VISA, "５５５５５５５５５５５５４４４４", "5555555555554444²", f"{AMEX}\u00a0"],
)
def test_a_silent_post_naming_a_card_number_stores_none(
    client, paytrace_conn, http, run_tasks, transaction_id
):
    response = client.post(
        f"/webhooks/paytrace/{SLUG}/silent-post/",
        {"parmList": f"TRANSACTIONID~{transaction_id}|APPMSG~APPROVED|"},
    )
    run_tasks()

    assert response.status_code < 500
    assert InboundDelivery.objects.count() == 1
    assert_no_card_numbers_stored()


@pytest.mark.django_db
def test_reviewer_notes_and_dismiss_reasons_are_stored_masked(client):
    reviewer = make_user(group=FINANCE_REVIEWER)
    client.force_login(reviewer)
    item = make_review_item()

    def decide(decision, data):
        url = reverse("admin:integrations_reviewitem_decide", args=[item.pk, decision])
        shown = client.post(url, data)
        outcome = shown.context.get("outcome") if shown.context else None
        if outcome is None:  # a note is added at once
            return shown
        # A dismissal is shown first, then confirmed (issue 13).
        return client.post(url, data | {"confirm": outcome.fingerprint})

    decide("note", {"note": f"Customer read out {VISA} on the phone"})
    decide("dismiss", {"reason": f"Test charge on 4111 1111 1111 1111 ({AMEX})"})

    item.refresh_from_db()
    assert item.state == item.State.DISMISSED
    notes = [d.detail for d in item.decisions.order_by("pk")]
    assert notes[0]["note"] == "Customer read out ************1111 on the phone"
    assert_no_card_numbers_stored()


@pytest.mark.django_db
def test_suggestion_feedback_source_path_is_stored_masked():
    user = make_user(username="ines")
    user.user_permissions.add(Permission.objects.get(codename="change_fieldmapping"))
    api = APIClient()
    api.force_authenticate(user)

    response = api.post(
        "/api/mappings/feedback",
        {
            "target": "cash_receipt",
            "target_field": "invno",
            "source_path": f"data.{VISA}.invoice",
            "accepted": True,
        },
        format="json",
    )

    assert response.status_code == 201, response.content
    assert VISA not in response.content.decode()  # nor shown back
    assert response.json()["source_path"].endswith(f"{VISA[-4:]}.invoice")
    assert_no_card_numbers_stored()


# --- logs -------------------------------------------------------------------------------


def test_a_traceback_repeating_a_card_number_is_logged_masked(caplog):
    logger = logging.getLogger("integrations.test_card_data")
    formatter = RedactingFormatter("%(levelname)s %(message)s")
    try:
        int(f"{VISA}x")
    except ValueError:
        with caplog.at_level(logging.ERROR, logger=logger.name):
            logger.exception("event %s crashed on %s", 7, MASTERCARD, stack_info=True)
    record = caplog.records[-1]

    line = formatter.format(record)

    assert "event 7 crashed on ************4444" in line
    assert "************1111" in line  # the exception text, masked
    assert VISA not in line and MASTERCARD not in line
    assert VISA not in (record.exc_text or "")
    assert MASTERCARD not in record.getMessage()
    assert VISA not in (record.stack_info or "")


def test_the_log_formatter_masks_what_reaches_it_by_another_way():
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "%s", (VISA,), None)

    assert RedactingFormatter("%(message)s").format(record) == "************1111"


def test_the_production_log_lines_go_through_the_masking_formatter():
    from django.utils.module_loading import import_string

    from portal import settings as production

    handler = production.LOGGING["handlers"]["console"]
    formatter = production.LOGGING["formatters"][handler["formatter"]]
    assert import_string(formatter["()"]) is RedactingFormatter


def test_a_list_of_transaction_ids_is_stored_as_ids_not_masked_as_a_split_card():
    """Sequential 9-digit ids (a settlement batch's transaction list) join into
    Luhn-valid runs; they are ids, not the groups of a card number."""
    ids = [str(500000000 + i) for i in range(30)]

    masked, found = mask_value(ids)

    assert (masked, found) == (ids, False)
    # The groups of a real split card number are still masked.
    groups, found = mask_value(["4111", "1111", "1111", "1111"])
    assert found and groups[-1] == "1111" and "4111" not in groups
