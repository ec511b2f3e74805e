"""Cash-receipt documents end to end: GL rules, mappings, validation, currency, preview."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model

from integrations import documents, processing, review
from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.roles import FINANCE_MANAGER
from integrations.sandbox.sagepro.models import CashReceipt
from mappings.models import CurrencyRate, FieldMapping, GlRule
from tests.factories import make_user
from tests.webhooks import event_body, paytrace_record, paytrace_time, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"
SAGE = "/sandbox/sagepro/api/v1"


@pytest.fixture
def deliver(client, paytrace_conn, secret, http, run_tasks):
    def _deliver(record, event_type="transaction.approved"):
        body = event_body(event_type, record)
        response = post_event(client, SLUG, body, sign(body, secret))
        run_tasks()
        return response

    return _deliver


@pytest.fixture
def admin_client(client, db):
    user = get_user_model().objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(user)
    return client


def receipts_for(record):
    return CashReceipt.objects.filter(
        reference=str(record["transaction_id"]), deleted=False
    )


def posting_for(record):
    return Posting.objects.get(
        transaction__transaction_id=str(record["transaction_id"])
    )


def amex_record(sage, amount="80.00", **fields):
    invno = sage.seed_invoice("ACME", "500.00")
    return paytrace_record(
        amount=Decimal(amount),
        invoice_id=invno,
        credit_card={"masked_number": "371111******1111"},  # American Express
        **fields,
    )


def correct_and_retry(admin_client, item, **values):
    """Press "Correct values and retry…" on one review item, as a reviewer would.

    A browser submits only the correctable fields (the others are disabled inputs).
    """
    posting = item.posting
    current = documents.stored_values(
        documents.CashReceipt.from_payload(posting.payload)
    )
    form = {
        name: "" if current[name] is None else str(current[name])
        for name in documents.CORRECTABLE_FIELDS
    }
    form.update(values)
    response = confirmed(
        admin_client,
        "/admin/integrations/reviewitem/",
        {
            "action": "correct_and_retry",
            "_selected_action": [item.pk],
            "confirm": "yes",
            **form,
        },
    )
    signed_by_a_manager(item)
    return response


def signed_by_a_manager(item):
    """A finance manager signs the correction the reviewer requested, if one waits
    (issue 16: nothing is sent before the second signature)."""
    waiting = review.waiting_override(item)
    if waiting is not None:
        review.sign_override(waiting, make_user(group=FINANCE_MANAGER))


def confirmed(browser, url, data, **kwargs):
    """Post a money action and confirm the outcome it shows, as a reviewer does
    (issue 13: nothing posts before its outcome was shown and confirmed)."""
    shown = browser.post(url, data, **kwargs)
    context = shown.context if shown.status_code == 200 else None
    if context is not None and context.get("fingerprint"):  # a bulk action's page
        data = data | {"confirmed": context["fingerprint"]}
    elif context is not None and context.get("outcome") is not None:
        data = data | {"confirm": context["outcome"].fingerprint}
    else:
        return shown
    return browser.post(url, data, **kwargs)


# --- GL rules -------------------------------------------------------------------------


def test_the_highest_priority_rule_wins_and_the_posting_keeps_the_trace(
    deliver, sage, paytrace_conn
):
    visa = GlRule.objects.create(
        connection=paytrace_conn,
        name="Visa and MC",
        priority=10,
        card_brands="VISA,MASTERCARD",
        account="1000-00",
    )
    amex = GlRule.objects.create(
        connection=paytrace_conn,
        name="Amex",
        priority=20,
        card_brands="AMEX",
        account="1100-00",
    )
    api = GlRule.objects.create(
        connection=paytrace_conn,
        name="Anything through the API",
        priority=30,
        channels="API",
        account="2100-00",
    )
    record = amex_record(sage)

    deliver(record)

    posting = posting_for(record)
    assert posting.state == Posting.State.POSTED
    assert posting.gl_account == "1100-00"
    assert posting.gl_rule == amex
    assert posting.payload["gl_account"] == "1100-00"
    assert posting.response["gl_account"] == "1100-00"  # the gateway echoes it
    assert posting.gl_trace == [
        {
            "rule": visa.pk,
            "name": "Visa and MC",
            "result": "skipped",
            "reason": "card brand AMEX not in VISA,MASTERCARD",
            "account": "1000-00",
        },
        {
            "rule": amex.pk,
            "name": "Amex",
            "result": "matched",
            "reason": "all conditions match",
            "account": "1100-00",
        },
        {
            "rule": api.pk,
            "name": "Anything through the API",
            "result": "skipped",
            "reason": f"would match, but rule #{amex.pk} Amex matched first",
            "account": "2100-00",
        },
    ]
    assert receipts_for(record).count() == 1


def test_no_matching_rule_books_to_the_suspense_account(deliver, sage, paytrace_conn):
    paytrace_conn.suspense_account = "9999-00"
    paytrace_conn.save()
    GlRule.objects.create(
        connection=paytrace_conn, name="Euro", currency="EUR", account="1000-00"
    )
    record = amex_record(sage)

    deliver(record)

    posting = posting_for(record)
    assert posting.state == Posting.State.POSTED
    assert posting.gl_account == "9999-00"
    assert posting.gl_rule is None
    assert posting.gl_trace[-1]["name"] == "suspense account"
    assert posting.gl_trace[-1]["result"] == "matched"


def test_rules_but_no_match_and_no_suspense_account_is_a_validation_item(
    deliver, sage, paytrace_conn
):
    GlRule.objects.create(
        connection=paytrace_conn, name="Euro", currency="EUR", account="1000-00"
    )
    record = amex_record(sage)

    deliver(record)

    posting = posting_for(record)
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code == "VALIDATION:gl_account"
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.VALIDATION)
    assert "gl_account" in item.reason
    assert not receipts_for(record).exists()


# --- validation, correction, retry ------------------------------------------------------


def test_an_inactive_account_stops_the_send_and_a_correction_posts_once(
    deliver, sage, paytrace_conn, admin_client, run_tasks
):
    GlRule.objects.create(
        connection=paytrace_conn, name="Old bank", priority=1, account="6900-00"
    )
    record = amex_record(sage)

    deliver(record)

    posting = posting_for(record)
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code == "ACCOUNT_INACTIVE"
    assert posting.attempts == 1
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.VALIDATION, state="open")
    assert item.reason.startswith("Not sent to Sage Pro: gl_account:")
    assert "6900-00" in item.reason
    assert "Old bank" in item.reason  # the rule that chose it
    assert not receipts_for(record).exists()

    response = correct_and_retry(admin_client, item, gl_account="1100-00")
    assert response.status_code == 302
    run_tasks()

    posting.refresh_from_db()
    assert posting.overrides == {"gl_account": "1100-00"}
    assert posting.state == Posting.State.POSTED
    assert posting.payload["gl_account"] == "1100-00"
    assert receipts_for(record).count() == 1
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert item.decisions.filter(action="correct").exists()


def test_a_locked_period_stops_the_send_and_a_corrected_date_posts_once(
    deliver, sage, admin_client, run_tasks
):
    two_months_ago = datetime.now(UTC) - timedelta(days=62)
    invno = sage.seed_invoice("ACME", "60.00")
    record = paytrace_record(
        invoice_id=invno,
        amount=Decimal("60.00"),
        created={"through": "API", "at": paytrace_time(two_months_ago)},
    )

    deliver(record)

    posting = posting_for(record)
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code in {"PERIOD_LOCKED", "PERIOD_CLOSED"}
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.VALIDATION, state="open")
    assert "date:" in item.reason
    assert not receipts_for(record).exists()

    correct_and_retry(admin_client, item, date=sage.today().isoformat())
    run_tasks()
    correct_and_retry(admin_client, item, date=sage.today().isoformat())  # twice
    run_tasks()

    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert posting.payload["date"] == sage.today().isoformat()
    assert receipts_for(record).count() == 1


def test_a_value_too_wide_for_sage_pro_is_caught_before_sending(
    deliver, sage, paytrace_conn, admin_client, run_tasks
):
    mapping = FieldMapping.objects.create(
        connection=paytrace_conn,
        target_field="reference",
        source_path="description",
        transforms=[{"op": "upper"}],
    )
    record = amex_record(sage, description="web order for acme supply co")

    deliver(record)

    posting = posting_for(record)
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code == "VALIDATION:reference"
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.VALIDATION, state="open")
    assert "reference: is 28 characters, Sage Pro takes at most 20" in item.reason
    assert f"FieldMapping #{mapping.pk}" in item.reason
    assert "WEB ORDER FOR ACME SUPPLY CO" in item.reason
    assert not CashReceipt.objects.exists()

    # The reference is not a reviewer's to change: the mapping is fixed.
    refused = correct_and_retry(admin_client, item, reference="WEB-123456789")
    assert "reference" in refused.text and "cannot be corrected" in refused.text
    mapping.is_active = False
    mapping.save()
    confirmed(
        admin_client,
        "/admin/integrations/reviewitem/",
        {"action": "retry", "_selected_action": [item.pk]},
    )
    run_tasks()

    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    assert receipts_for(record).count() == 1
    assert not CashReceipt.objects.filter(reference="WEB-123456789").exists()


def test_field_mappings_shape_the_document(sage, paytrace_conn):
    FieldMapping.objects.create(
        connection=paytrace_conn,
        target_field="invno",
        source_path="invoice_id",
        transforms=[
            {"op": "strip_prefixes", "prefixes": ["INV-"]},
            {"op": "strip_leading_zeros"},
            {"op": "pad", "width": 10, "align": "right"},
        ],
    )
    FieldMapping.objects.create(
        connection=paytrace_conn,
        target_field="date",
        source_path="created.at",
        transforms=[{"op": "date"}],
    )
    FieldMapping.objects.create(
        connection=paytrace_conn,
        target_field="method",
        source_path="transaction.card_brand",
        transforms=[{"op": "lookup", "table": {"Visa": "VISA"}, "default": "CARD"}],
    )
    txn = PaymentTransaction.objects.create(
        connection=paytrace_conn,
        transaction_id="777001",
        amount=Decimal("10.00"),
        card_brand="Visa",
        source_record={
            "invoice_id": "INV-0010001",
            "created": {"at": "3/9/2025 11:30:00 PM"},
        },
        created_at=datetime(2025, 3, 10, 6, 30, tzinfo=UTC),
    )

    document = documents.build_cash_receipt(txn, None)

    assert document.payload["applications"][0]["invno"] == "10001"
    assert document.values["invno"] == "     10001"
    assert document.payload["date"] == "2025-03-09"  # Los Angeles business day
    assert document.payload["method"] == "VISA"
    assert [use.row_id is not None for use in document.mappings] == [
        False,
        True,
        False,
        True,
        False,
        True,
    ]


def test_an_unknown_transform_names_the_mapping_row(sage, paytrace_conn):
    mapping = FieldMapping.objects.create(
        connection=paytrace_conn,
        target_field="custno",
        source_path="customer_id",
        transforms=[{"op": "reverse"}],
    )
    txn = PaymentTransaction.objects.create(
        connection=paytrace_conn, transaction_id="777002", amount=Decimal("10.00")
    )

    document = documents.build_cash_receipt(txn, None)

    (problem,) = [p for p in document.problems if p.field == "custno"]
    assert "unknown op 'reverse'" in problem.message
    assert f"FieldMapping #{mapping.pk}" in problem.rule


# --- currency -----------------------------------------------------------------------------


def euro_payment(paytrace_conn, sage, amount="100.00", invamt="500.00"):
    invno = sage.seed_invoice("ACME", invamt)
    return PaymentTransaction.objects.create(
        connection=paytrace_conn,
        transaction_id="880001",
        transaction_type="SALE",
        amount=Decimal(amount),
        currency="EUR",
        invoice_reference=invno,
        mapped_status="Paid",
        created_at=datetime.now(UTC),
    )


def test_a_foreign_payment_is_booked_in_the_base_currency_at_its_dates_rate(
    sage, paytrace_conn, http, run_tasks
):
    txn = euro_payment(paytrace_conn, sage, amount="100.05")
    today = sage.today()
    CurrencyRate.objects.create(
        currency="EUR", rate=Decimal("1.08335"), valid_on=today - timedelta(days=3)
    )
    CurrencyRate.objects.create(
        currency="EUR", rate=Decimal("1.10000"), valid_on=today - timedelta(days=20)
    )
    CurrencyRate.objects.create(
        currency="EUR", rate=Decimal("1.20000"), valid_on=today + timedelta(days=1)
    )

    processing.prepare_receipt(txn)
    run_tasks()

    posting = txn.postings.get()
    assert posting.state == Posting.State.POSTED
    # 100.05 × 1.08335 = 108.3891675 → 108.39, half-up, once.
    assert posting.payload["amount"] == "108.39"
    assert posting.payload["applications"][0]["amount"] == "108.39"
    assert posting.exchange_rate == Decimal("1.08335")
    assert posting.rate_on == today - timedelta(days=3)
    receipt = CashReceipt.objects.get(reference="880001")
    assert receipt.amount == Decimal("108.39")
    txn.refresh_from_db()
    assert (txn.amount, txn.currency) == (Decimal("100.05"), "EUR")  # original kept


def test_a_foreign_payment_without_a_rate_goes_to_review(
    sage, paytrace_conn, http, run_tasks
):
    txn = euro_payment(paytrace_conn, sage)
    CurrencyRate.objects.create(
        currency="EUR", rate=Decimal("1.1"), valid_on=sage.today() - timedelta(days=8)
    )

    processing.prepare_receipt(txn)
    run_tasks()

    posting = txn.postings.get()
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code == "VALIDATION:amount"
    item = ReviewItem.objects.get(kind=ReviewItem.Kind.VALIDATION)
    assert "EUR→USD" in item.reason
    assert sage.today().isoformat() in item.reason
    assert not CashReceipt.objects.exists()


# --- preview -------------------------------------------------------------------------------


def test_the_preview_shows_the_document_and_sends_nothing(
    sage, paytrace_conn, admin_client, http
):
    rule = GlRule.objects.create(
        connection=paytrace_conn, name="Cards", card_brands="VISA", account="1100-00"
    )
    invno = sage.seed_invoice("ACME", "40.00")
    txn = PaymentTransaction.objects.create(
        connection=paytrace_conn,
        transaction_id="990001",
        transaction_type="SALE",
        amount=Decimal("40.00"),
        invoice_reference=invno,
        card_brand="Visa",
        created_at=datetime.now(UTC),
    )

    response = admin_client.get(
        f"/admin/integrations/paymenttransaction/{txn.pk}/preview/"
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "&quot;gl_account&quot;: &quot;1100-00&quot;" in page
    assert f"#{rule.pk}" in page
    assert "Valid:" in page
    assert "→ Paid/post_receipt" in page or "No status-map row" in page
    assert not Posting.objects.exists()
    assert not CashReceipt.objects.exists()
    assert not any(call.request.method == "POST" for call in http.calls)
    change = admin_client.get(
        f"/admin/integrations/paymenttransaction/{txn.pk}/change/"
    )
    assert b"Preview the Sage Pro document" in change.content


def test_the_gl_rule_tester_explains_a_pasted_record(
    sage, paytrace_conn, admin_client, http
):
    GlRule.objects.create(
        connection=paytrace_conn, name="Visa", card_brands="VISA", account="1000-00"
    )
    GlRule.objects.create(
        connection=paytrace_conn, name="Amex", card_brands="AMEX", account="1100-00"
    )
    record = event_body("transaction.approved", amex_record(sage))

    response = admin_client.post(
        "/admin/mappings/glrule/test/",
        {"connection": paytrace_conn.pk, "record": record},
    )

    assert response.status_code == 200
    page = response.content.decode()
    assert "Account <strong>1100-00</strong>" in page
    assert "card brand AMEX not in VISA" in page
    assert not Posting.objects.exists()
    assert not PaymentTransaction.objects.exists()


def test_a_gl_rule_is_checked_against_the_chart_when_saved(
    sage, paytrace_conn, admin_client, http
):
    url = "/admin/mappings/glrule/add/"
    form = {"connection": paytrace_conn.pk, "name": "Old", "priority": 10}

    inactive = admin_client.post(url, {**form, "account": "6900-00"})
    assert "inactive in Sage Pro" in inactive.content.decode()
    missing = admin_client.post(url, {**form, "account": "1050-00"})
    assert "not in Sage Pro" in missing.content.decode()
    assert not GlRule.objects.exists()

    saved = admin_client.post(url, {**form, "account": "110000"})
    assert saved.status_code == 302
    assert GlRule.objects.get().account == "110000"


# --- the gateway contract --------------------------------------------------------------


def post_receipt(client, settings, key, **fields):
    body = {
        "custno": "ACME",
        "date": fields.pop("date"),
        "amount": "10.00",
        "method": "CARD",
        "reference": key,
        **fields,
    }
    return client.post(
        f"{SAGE}/cash-receipts",
        body,
        content_type="application/json",
        headers={
            "Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}",
            "Idempotency-Key": key,
        },
    )


def test_the_gateway_checks_and_echoes_the_gl_account(client, settings, sage):
    today = sage.today().isoformat()

    unknown = post_receipt(client, settings, "k1", date=today, gl_account="1050-00")
    assert (unknown.status_code, unknown.json()["code"]) == (422, "ACCOUNT_NOT_FOUND")
    inactive = post_receipt(client, settings, "k2", date=today, gl_account="690000")
    assert (inactive.status_code, inactive.json()["code"]) == (422, "ACCOUNT_INACTIVE")
    assert not CashReceipt.objects.exists()

    created = post_receipt(client, settings, "k3", date=today, gl_account="110000")
    assert created.status_code == 201
    assert created.json()["gl_account"] == "1100-00"
    replay = post_receipt(client, settings, "k3", date=today, gl_account="1100-00")
    assert replay.status_code == 200
    assert replay.json()["gl_account"] == "1100-00"
    other = post_receipt(client, settings, "k3", date=today, gl_account="1000-00")
    assert (other.status_code, other.json()["code"]) == (409, "IDEMPOTENCY_CONFLICT")
    plain = post_receipt(client, settings, "k4", date=today)
    assert plain.status_code == 201
    assert plain.json()["gl_account"] == ""
