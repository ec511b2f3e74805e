"""A reviewer cannot change money or identity.

The receipt is always for what PayTrace collected; the customer, invoice and reference
change only through the apply decisions. Every path a reviewer has is tried: the
"Correct values and retry" form, stored overrides sent by a bulk action, the split
form, the other bulk actions and the read API.
"""

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.test import Client
from rest_framework.test import APIClient

from integrations import documents, reconciliation, review
from integrations.models import PaymentTransaction, Posting, ReviewDecision, ReviewItem
from integrations.roles import FINANCE_MANAGER, FINANCE_REVIEWER
from integrations.sandbox.sagepro.models import CashReceipt
from mappings.models import FieldMapping, GlRule
from tests.factories import make_review_item, make_transaction, make_user
from tests.webhooks import event_body, paytrace_record, paytrace_time, post_event, sign

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/integrations/reviewitem/"


@pytest.fixture
def reviewer_client():
    browser = Client()
    browser.force_login(make_user(group=FINANCE_REVIEWER))
    return browser


@pytest.fixture
def pay(client, paytrace_conn, secret, http, run_tasks, sage):
    """Deliver an approved payment; return its transaction."""

    def _pay(amount="25.00", **fields):
        fields.setdefault("invoice_id", sage.seed_invoice("ACME", "500.00"))
        record = paytrace_record(amount=Decimal(amount), **fields)
        body = event_body("transaction.approved", record)
        assert (
            post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
            == 202
        )
        run_tasks()
        return PaymentTransaction.objects.get(
            transaction_id=str(record["transaction_id"])
        )

    return _pay


@pytest.fixture
def stopped(pay, paytrace_conn):
    """A $25.00 payment whose receipt stopped on an inactive GL account: a validation
    item with a posting, the case the attack used."""
    GlRule.objects.create(
        connection=paytrace_conn, name="Old bank", priority=1, account="6900-00"
    )
    txn = pay("25.00")
    item = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.VALIDATION)
    assert item.posting.state == Posting.State.NEEDS_REVIEW
    return item


def receipts(txn):
    return CashReceipt.objects.filter(reference=txn.transaction_id, deleted=False)


def correct(browser, item, **fields):
    """Submit "Correct values and retry…" for one item, as a browser would: the
    editable fields with their current values, changed by `fields`."""
    current = documents.stored_values(
        documents.CashReceipt.from_payload(item.posting.payload)
    )
    editable = {
        name: "" if current[name] is None else str(current[name])
        for name in ("date", "method", "gl_account")
    }
    response = confirmed(
        browser,
        CHANGELIST,
        {
            "action": "correct_and_retry",
            "_selected_action": [item.pk],
            "confirm": "yes",
            **editable,
            **fields,
        },
    )
    # Issue 16: a correction waits for a finance manager's second signature.
    waiting = review.waiting_override(item)
    if waiting is not None:
        review.sign_override(waiting, make_user(group=FINANCE_MANAGER))
    return response


def bulk(browser, action, items, **fields):
    return confirmed(
        browser,
        CHANGELIST,
        {"action": action, "_selected_action": [i.pk for i in items], **fields},
        follow=True,
    )


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


# --- the "Correct values and retry" form -----------------------------------------------


def test_the_correction_form_shows_money_and_identity_read_only(
    reviewer_client, stopped
):
    response = reviewer_client.post(
        CHANGELIST, {"action": "correct_and_retry", "_selected_action": [stopped.pk]}
    )

    assert response.status_code == 200
    form = response.context["form"]
    for name in ("amount", "custno", "invno", "reference"):
        assert form.fields[name].disabled, name
    for name in ("date", "method", "gl_account"):
        assert not form.fields[name].disabled, name
    assert form["amount"].initial == "25.00"
    assert 'name="amount" value="25.00"' in response.text
    assert "disabled" in response.text


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("amount", "400.00"),
        ("custno", "BLUEOX"),
        ("invno", "99999"),
        ("reference", "600000001"),
    ],
)
def test_a_tampered_correction_of_money_or_identity_is_refused_and_sends_nothing(
    reviewer_client, stopped, run_tasks, name, value
):
    posting = stopped.posting

    response = correct(reviewer_client, stopped, gl_account="1100-00", **{name: value})
    run_tasks()

    assert response.status_code == 200  # the form again, with the refusal
    assert f"{name}" in response.context["form"].errors
    assert "cannot be corrected here" in response.text
    posting.refresh_from_db()
    assert posting.overrides == {}
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert not receipts(posting.transaction).exists()
    assert not stopped.decisions.filter(action="correct").exists()


def test_correcting_a_25_payment_to_400_with_every_field_posts_nothing(
    reviewer_client, stopped, run_tasks
):
    """Correct and retry with amount=400.00 against a 25.00 payment, every other
    field sent as the form used to show it."""
    current = documents.stored_values(
        documents.CashReceipt.from_payload(stopped.posting.payload)
    )
    every = {k: "" if v is None else str(v) for k, v in current.items()}
    every |= {"amount": "400.00", "gl_account": "1100-00"}

    response = correct(reviewer_client, stopped, **every)
    run_tasks()

    assert not CashReceipt.objects.filter(amount=Decimal("400.00")).exists()
    assert "amount" in response.context["form"].errors


def test_a_correction_of_the_gl_account_still_posts_the_payment_amount(
    reviewer_client, stopped, run_tasks
):
    response = correct(reviewer_client, stopped, gl_account="1100-00")
    run_tasks()

    assert response.status_code == 302
    posting = stopped.posting
    posting.refresh_from_db()
    assert posting.state == Posting.State.POSTED
    receipt = receipts(posting.transaction).get()
    assert receipt.amount == Decimal("25.00")
    assert receipt.glacnt.strip() == "1100-00"


@pytest.mark.parametrize(
    ("days", "message"),
    [
        (-1, "is before the payment's date"),
        (1, "is after today"),
    ],
)
def test_a_corrected_date_outside_the_payment_and_today_is_refused(
    reviewer_client, stopped, run_tasks, days, message
):
    txn = stopped.transaction
    payment_day = txn.posting_date()
    day = payment_day + timedelta(days=days)

    response = correct(reviewer_client, stopped, date=day.isoformat())
    run_tasks()

    assert response.status_code == 200
    (refusal,) = response.context["form"].non_field_errors()
    assert refusal.startswith("Nothing was saved or sent: date:")
    assert message in refusal
    stopped.posting.refresh_from_db()
    assert stopped.posting.overrides == {}
    assert not receipts(txn).exists()


def test_a_date_correction_reaches_at_most_a_quarter_past_the_payment():
    payment_day, today = date(2026, 1, 10), date(2026, 12, 6)
    limit = payment_day + timedelta(days=documents.DATE_CORRECTION_MAX_DAYS)

    assert (
        documents.override_problems({"date": limit.isoformat()}, payment_day, today)
        == []
    )
    (late,) = documents.override_problems(
        {"date": (limit + timedelta(days=1)).isoformat()}, payment_day, today
    )
    assert late.field == "date"
    assert "more than 92 days after the payment's date 2026-01-10" in late.message
    (garbled,) = documents.override_problems({"date": "next week"}, payment_day, today)
    assert garbled.message == "must be a date as YYYY-MM-DD"


def test_a_corrected_date_moves_a_receipt_out_of_a_locked_period(
    reviewer_client, pay, sage, run_tasks
):
    """The date stays correctable, forwards: the legitimate use."""
    txn = pay(
        "60.00",
        created={
            "through": "API",
            "at": paytrace_time(datetime.now(UTC) - timedelta(days=62)),
        },
    )
    item = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.VALIDATION)

    correct(reviewer_client, item, date=sage.today().isoformat())
    run_tasks()

    receipt = receipts(txn).get()
    assert (receipt.paydate, receipt.amount) == (sage.today(), Decimal("60.00"))


# --- stored overrides and bulk actions --------------------------------------------------


def test_a_stored_override_of_the_amount_is_refused_when_a_bulk_retry_sends_it(
    reviewer_client, stopped, run_tasks
):
    """An override written outside the form (imported, edited in the database) cannot
    post a changed amount: the document refuses it and names the field."""
    posting = stopped.posting
    Posting.objects.filter(pk=posting.pk).update(
        overrides={"amount": "400.00", "gl_account": "1100-00"}
    )

    bulk(reviewer_client, "retry", [stopped])
    run_tasks()

    posting.refresh_from_db()
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert posting.last_error_code == "OVERRIDE:amount"
    assert not receipts(posting.transaction).exists()
    item = ReviewItem.objects.get(posting=posting, state=ReviewItem.State.OPEN)
    assert "amount: cannot be corrected" in item.reason
    assert "400.00" in item.reason

    # Saving the correction form drops the stored amount; the payment's amount posts.
    correct(reviewer_client, item, gl_account="1100-00")
    run_tasks()

    posting.refresh_from_db()
    assert posting.overrides == {"gl_account": "1100-00"}
    assert receipts(posting.transaction).get().amount == Decimal("25.00")


@pytest.mark.parametrize("name", ["custno", "invno", "reference"])
def test_stored_overrides_of_identity_are_refused(stopped, run_tasks, name):
    posting = stopped.posting
    Posting.objects.filter(pk=posting.pk).update(overrides={name: "OTHER"})

    review.retry_review_item(stopped)
    run_tasks()

    posting.refresh_from_db()
    assert posting.last_error_code == f"OVERRIDE:{name}"
    assert not receipts(posting.transaction).exists()


def test_a_field_mapping_cannot_make_the_receipt_differ_from_the_payment(
    pay, paytrace_conn
):
    FieldMapping.objects.create(
        connection=paytrace_conn,
        target_field="amount",
        transforms=[{"op": "constant", "value": "400.00"}],
    )

    txn = pay("25.00")

    posting = txn.postings.get()
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert "is not the payment's amount 25.00" in posting.last_error
    assert not receipts(txn).exists()


def test_bulk_apply_posts_each_payment_for_its_own_amount(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "500.00")
    first, second = pay("25.00", invoice_id="NOPE"), pay("31.40", invoice_id="NOPE")
    items = list(ReviewItem.objects.filter(transaction__in=[first, second]))

    response = bulk(
        reviewer_client, "apply_to_invoice", items, confirm="yes", invno=invno
    )
    run_tasks()

    assert "Applied 2 payments" in response.text
    assert receipts(first).get().amount == Decimal("25.00")
    assert receipts(second).get().amount == Decimal("31.40")


def test_bulk_correct_and_retry_takes_one_item_only(reviewer_client, stopped, pay):
    other = make_review_item(make_transaction(), kind=ReviewItem.Kind.VALIDATION)

    response = bulk(
        reviewer_client,
        "correct_and_retry",
        [stopped, other],
        confirm="yes",
        amount="400.00",
    )

    assert "Choose one review item" in response.text
    stopped.posting.refresh_from_db()
    assert stopped.posting.overrides == {}


# --- split -------------------------------------------------------------------------------


def test_a_split_cannot_apply_more_than_the_payment(reviewer_client, pay, sage):
    a, b = sage.seed_invoice("ACME", "60.00"), sage.seed_invoice("ACME", "70.00")
    txn = pay("100.00", invoice_id="NOPE")
    item = ReviewItem.objects.get(transaction=txn)
    url = f"{CHANGELIST}{item.pk}/decide/split/"

    response = reviewer_client.post(
        url,
        {"invno_1": a, "amount_1": "60.00", "invno_2": b, "amount_2": "70.00"},
        follow=True,
    )

    assert "add up to more than the payment of 100.00" in response.text
    assert not Posting.objects.filter(transaction=txn).exists()


def test_a_split_receipt_is_for_the_whole_payment(
    reviewer_client, pay, sage, run_tasks
):
    """Applications plus unapplied cash add up to exactly the payment."""
    a = sage.seed_invoice("ACME", "60.00")
    txn = pay("100.00", invoice_id="NOPE")
    item = ReviewItem.objects.get(transaction=txn)

    confirmed(
        reviewer_client,
        f"{CHANGELIST}{item.pk}/decide/split/",
        {"invno_1": a, "amount_1": "40.00"},
    )
    run_tasks()

    receipt = receipts(txn).get()
    assert receipt.amount == Decimal("100.00")
    assert (receipt.applied, receipt.unapplied) == (Decimal("40.00"), Decimal("60.00"))


@pytest.mark.parametrize("amount", ["10.005", "NaN", "Infinity"])
def test_a_split_amount_that_is_not_in_cents_is_refused(pay, sage, amount):
    a = sage.seed_invoice("ACME", "60.00")
    item = ReviewItem.objects.get(transaction=pay("100.00", invoice_id="NOPE"))

    with pytest.raises(review.ReviewError, match="not an amount in cents"):
        review.apply_review_item_split(item, [(a, Decimal(amount))])


def test_a_rebuilt_receipt_stays_on_the_account_it_was_posted_on(
    reviewer_client, pay, sage, paytrace_conn, run_tasks
):
    """Correcting a receipt posted on account must not move it to the invoice the
    payment names (and to that invoice's customer)."""
    blueox = sage.seed_invoice("BLUEOX", "500.00")
    txn = pay("25.00", invoice_id=blueox, customer_id="ACME")
    item = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.UNMATCHED)
    GlRule.objects.create(
        connection=paytrace_conn, name="Old bank", priority=1, account="6900-00"
    )
    review.post_on_account(item, custno="ACME")
    run_tasks()
    stopped = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.VALIDATION)

    Posting.objects.filter(pk=stopped.posting_id).update(
        overrides={"gl_account": "1100-00"}
    )
    review.retry_review_item(stopped)
    run_tasks()

    receipt = receipts(txn).get()
    assert receipt.custno.strip() == "ACME"
    assert (receipt.amount, receipt.unapplied) == (Decimal("25.00"), Decimal("25.00"))
    assert not receipt.lines.exists()


def test_a_corrected_split_keeps_its_applications(pay, sage, paytrace_conn, run_tasks):
    a, b = sage.seed_invoice("ACME", "60.00"), sage.seed_invoice("ACME", "70.00")
    txn = pay("100.00", invoice_id="NOPE")
    GlRule.objects.create(
        connection=paytrace_conn, name="Old bank", priority=1, account="6900-00"
    )
    review.apply_review_item_split(
        ReviewItem.objects.get(transaction=txn), [(a, Decimal("60.00")), (b, None)]
    )
    run_tasks()
    stopped = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.VALIDATION)

    Posting.objects.filter(pk=stopped.posting_id).update(
        overrides={"gl_account": "1100-00"}
    )
    review.retry_review_item(stopped)
    run_tasks()

    receipt = receipts(txn).get()
    assert (receipt.amount, receipt.applied) == (Decimal("100.00"), Decimal("100.00"))
    assert sorted(line.amount for line in receipt.lines.all()) == [
        Decimal("40.00"),
        Decimal("60.00"),
    ]


# --- reconciliation -------------------------------------------------------------------


def test_a_receipt_for_another_amount_is_not_reconciled_as_posted(pay, paytrace_conn):
    """Whatever wrote it (a reviewer's correction, or an edit in Sage Pro), a receipt
    for more than PayTrace collected is not filed under "posted"."""
    txn = pay("25.00")
    receipts(txn).update(amount=Decimal("400.00"))
    today = reconciliation.business_today()

    run = reconciliation.reconcile(paytrace_conn, today, today)

    line = run.lines.get(transaction_id=txn.transaction_id)
    assert line.bucket == reconciliation.Bucket.IN_REVIEW
    assert "is for 400.00, but PayTrace collected 25.00" in line.detail
    assert run.buckets[reconciliation.Bucket.POSTED]["count"] == 0


# --- the read API ------------------------------------------------------------------------


@pytest.mark.parametrize("as_superuser", [False, True])
def test_the_read_api_has_no_write_path(stopped, as_superuser):
    api = APIClient()
    user = (
        make_user(is_superuser=True)
        if as_superuser
        else make_user(group=FINANCE_REVIEWER)
    )
    api.force_authenticate(user)
    txn, posting = stopped.transaction, stopped.posting
    change = {"amount": "400.00", "state": "resolved", "overrides": {"amount": "400"}}
    paths = [
        "/api/transactions/",
        "/api/review-items/",
        f"/api/transactions/{txn.pk}/",
        f"/api/review-items/{stopped.pk}/",
    ]

    for path in paths:
        for method in (api.post, api.put, api.patch, api.delete):
            response = method(path, change, format="json")
            assert response.status_code in (403, 405), (method, path)

    txn.refresh_from_db()
    stopped.refresh_from_db()
    posting.refresh_from_db()
    assert txn.amount == Decimal("25.00")
    assert stopped.state == ReviewItem.State.OPEN
    assert posting.overrides == {}
    assert not ReviewDecision.objects.exists()


def test_a_reviewer_cannot_write_mapping_feedback_through_the_api(reviewer_client):
    response = reviewer_client.post(
        "/api/mappings/feedback",
        {
            "target": "cash_receipt",
            "target_field": "amount",
            "source_path": "tax_amount",
            "accepted": True,
        },
        content_type="application/json",
    )

    assert response.status_code == 403


# --- month-end (issue 13): a reviewer starts and reads runs, never changes one ---------


def test_a_reviewer_reaches_month_end_but_cannot_change_a_run_or_its_amounts(
    reviewer_client, paytrace_conn
):
    from integrations.models import ReconciliationLine, ReconciliationRun

    run = ReconciliationRun.objects.create(
        connection=paytrace_conn,
        date_from=date(2026, 11, 1),
        date_to=date(2026, 11, 30),
        state=ReconciliationRun.State.DONE,
        buckets={"posted": {"count": 1, "amount": "25.00"}},
    )
    line = ReconciliationLine.objects.create(
        run=run, bucket="posted", transaction_id="1001", amount=Decimal("25.00")
    )
    base = "/admin/integrations"

    for url in (
        f"{base}/reconciliationrun/",
        f"{base}/reconciliationrun/start/",
        f"{base}/reconciliationrun/{run.pk}/change/",
        f"{base}/reconciliationrun/{run.pk}/csv/",
        f"{base}/reconciliationline/?run__id__exact={run.pk}",
        f"{base}/reconciliationline/{line.pk}/change/",
        f"{base}/connection/{paytrace_conn.pk}/change/",
    ):
        assert reviewer_client.get(url).status_code == 200, url

    change = {"amount": "1.00", "bucket": "dead", "state": "failed"}
    assert (
        reviewer_client.post(f"{base}/reconciliationline/{line.pk}/change/", change)
    ).status_code == 403
    assert (
        reviewer_client.post(f"{base}/reconciliationrun/{run.pk}/change/", change)
    ).status_code == 403
    assert reviewer_client.get(f"{base}/reconciliationrun/add/").status_code == 403
    assert (
        reviewer_client.post(
            f"{base}/reconciliationrun/{run.pk}/delete/", {"post": "yes"}
        )
    ).status_code == 403
    line.refresh_from_db()
    run.refresh_from_db()
    assert (line.amount, line.bucket) == (Decimal("25.00"), "posted")
    assert run.state == ReconciliationRun.State.DONE
    # The start form takes a period, never an amount.
    form = reviewer_client.get(f"{base}/reconciliationrun/start/").context["form"]
    assert set(form.fields) == {"connection", "month", "date_from", "date_to"}
