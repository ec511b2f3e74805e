"""Safe money actions (issue 13): every decision that posts or closes money shows its
outcome first and happens only once confirmed; an application follows the pipeline's
rules; another customer's invoice takes a tick and a note; closing needs a reason; a
decision that posted nothing can be reopened; and no path lets a reviewer change the
amount of a receipt."""

from decimal import Decimal

import pytest
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from integrations import review
from integrations.models import MirroredInvoice, PaymentTransaction, Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER
from integrations.sandbox.sagepro.models import ArMast
from mappings.models import SuggestionFeedback
from tests.factories import make_user
from tests.integrations.test_deadletters import make_dead_postings
from tests.integrations.test_review_admin import (
    balance,
    confirm,
    decide_url,
    item_for,
    messages_of,
    page_url,
    preview,
    receipts,
)

pytestmark = pytest.mark.django_db

CHANGELIST = "/admin/integrations/reviewitem/"


def open_items(txid, kind):
    return ReviewItem.objects.filter(
        transaction__transaction_id=txid, kind=kind, state=ReviewItem.State.OPEN
    )


# --- preview, then confirm ------------------------------------------------------------


def test_nothing_is_posted_until_the_shown_outcome_is_confirmed(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "80.00")
    txid = pay("NOPE", "80.00")
    item = item_for(txid)

    shown = preview(reviewer_client, item, "apply", {"invno": invno})
    forged = reviewer_client.post(
        decide_url(item, "apply"), {"invno": invno, "confirm": "guessed"}
    )
    run_tasks()

    assert "Apply $80.00 to invoice" in shown.text
    assert "Balance before" in shown.text
    assert "Confirm and post the receipt" in shown.text
    assert forged.status_code == 200  # shown again, not posted
    assert "changed since the preview" in forged.text
    assert not Posting.objects.filter(transaction__transaction_id=txid).exists()
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_applying_part_of_a_payment_keeps_the_rest_with_an_overpayment_item(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "672.35")
    txid = pay("NOPE", "672.35")
    item = item_for(txid)
    data = {"invno_1": invno, "amount_1": "60.00"}

    shown = preview(reviewer_client, item, "split", data)
    outcome = shown.context["outcome"]
    assert outcome.unapplied == Decimal("612.35")
    assert "$612.35 stays unapplied cash" in shown.text
    assert "An overpayment review item for the $612.35" in shown.text
    assert not open_items(txid, ReviewItem.Kind.OVERPAYMENT).exists()

    confirm(reviewer_client, item, "split", data, shown=shown)
    run_tasks()

    receipt = receipts(txid).get()
    assert (receipt.applied, receipt.unapplied) == (
        Decimal("60.00"),
        Decimal("612.35"),
    )
    opened = open_items(txid, ReviewItem.Kind.OVERPAYMENT).get()
    assert "612.35 kept as unapplied cash" in opened.reason
    assert opened.posting == Posting.objects.get(transaction__transaction_id=txid)
    item.refresh_from_db()
    assert "612.35 stays unapplied cash" in item.resolution


def test_apply_over_the_balance_applies_up_to_it_and_opens_an_item_for_the_rest(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "151.61")
    txid = pay("NOPE", "515.65", customer_id="ACME")
    item = item_for(txid)

    shown = preview(reviewer_client, item, "apply", {"invno": invno})
    line = shown.context["outcome"].lines[0]
    assert (line.balance, line.applied, line.balance_after) == (
        Decimal("151.61"),
        Decimal("151.61"),
        Decimal("0.00"),
    )
    assert "$364.04 stays unapplied cash" in shown.text
    confirm(reviewer_client, item, "apply", {"invno": invno}, shown=shown)
    run_tasks()

    assert balance(invno) == Decimal("0.00")
    assert receipts(txid).get().unapplied == Decimal("364.04")
    assert open_items(txid, ReviewItem.Kind.OVERPAYMENT).count() == 1


def test_a_balance_that_changed_since_the_preview_shows_the_new_outcome(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "90.00")
    txid = pay("NOPE", "90.00")
    item = item_for(txid)
    shown = preview(reviewer_client, item, "apply", {"invno": invno})
    # Someone else's receipt paid part of it in the meantime (Sage Pro and mirror).
    ArMast.objects.filter(invno=invno.rjust(10)).update(balance=Decimal("40.00"))
    MirroredInvoice.objects.filter(invno=invno).update(balance=Decimal("40.00"))

    again = confirm(reviewer_client, item, "apply", {"invno": invno}, shown=shown)
    run_tasks()

    assert again.status_code == 200
    assert "changed since the preview" in again.text
    assert again.context["outcome"].unapplied == Decimal("50.00")
    assert not Posting.objects.filter(transaction__transaction_id=txid).exists()


# --- another customer's invoice --------------------------------------------------------


def test_another_customers_invoice_needs_the_tick_and_a_note(
    reviewer_client, pay, sage, run_tasks
):
    theirs = sage.seed_invoice("BLUEOX", "40.00")
    txid = pay("NOPE", "40.00", customer_id="ACME")
    item = item_for(txid)

    refused = reviewer_client.post(decide_url(item, "apply"), {"invno": theirs})
    tick_only = reviewer_client.post(
        decide_url(item, "apply"), {"invno": theirs, "other_customer": "on"}
    )
    data = {
        "invno": theirs,
        "other_customer": "on",
        "other_note": "ACME pays for BLUEOX",
    }
    shown = preview(reviewer_client, item, "apply", data)
    confirm(reviewer_client, item, "apply", data, shown=shown)
    run_tasks()

    assert (
        "Invoice customer BLUEOX is not the payer's customer ACME"
        in (messages_of(refused)[0])
    )
    assert refused.context["apply_form"]["invno"].value() == theirs  # kept
    assert "Write why the payment goes to another customer" in tick_only.text
    assert "Note: ACME pays for BLUEOX" in shown.text
    decision = item.decisions.get(action="apply")
    assert decision.detail["other_customer"] is True
    assert decision.detail["note"] == "ACME pays for BLUEOX"
    assert receipts(txid).get().custno.strip() == "BLUEOX"


def test_the_function_refuses_another_customers_invoice_without_a_note(pay, sage):
    theirs = sage.seed_invoice("BLUEOX", "40.00")
    item = item_for(pay("NOPE", "40.00", customer_id="ACME"))

    with pytest.raises(review.AnotherCustomerError):
        review.apply_review_item(item, theirs, other_customer=True, note=" ")

    assert not Posting.objects.filter(transaction=item.transaction).exists()


# --- closing needs a reason -------------------------------------------------------------


def test_mark_duplicate_needs_a_reason_on_the_page_in_bulk_and_in_the_function(
    reviewer_client, pay, sage
):
    item = item_for(pay("NOPE", "888.23"))

    page = reviewer_client.post(decide_url(item, "duplicate"), {"note": ""})
    bulk = reviewer_client.post(
        CHANGELIST,
        {"action": "mark_duplicate", "_selected_action": [item.pk], "confirm": "yes"},
    )
    with pytest.raises(review.ReviewError, match="Say why"):
        review.mark_duplicate(item, None, "  ")

    assert "Reason: This field is required." in messages_of(page)
    assert "This field is required" in bulk.text
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_closing_an_unmatched_payment_says_it_will_not_be_booked(
    reviewer_client, pay, sage
):
    item = item_for(pay("NOPE", "888.23"))

    shown = preview(reviewer_client, item, "dismiss", {"reason": "test charge"})

    assert "not booked in Sage Pro at all" in shown.text
    assert "Nothing is posted to Sage Pro." in shown.text


# --- reopen -----------------------------------------------------------------------------


def reopen_url(item):
    return reverse("admin:integrations_reviewitem_reopen", args=[item.pk])


def test_a_dismissed_item_is_reopened_with_a_recorded_reason(
    reviewer_client, pay, sage, reviewer
):
    item = item_for(pay("NOPE", "20.00"))
    review.dismiss_review_item(item, "looked like a test", reviewer)

    without = reviewer_client.post(reopen_url(item), {"reason": ""})
    reviewer_client.post(reopen_url(item), {"reason": "it was a real payment"})
    reviewer_client.post(reopen_url(item), {"reason": "it was a real payment"})

    assert "This field is required" in without.text
    item.refresh_from_db()
    assert (item.state, item.resolution) == (ReviewItem.State.OPEN, "")
    reopened = item.decisions.get(action="reopen")  # pressed twice: one reopen
    assert reopened.user == reviewer
    assert reopened.detail["reason"] == "it was a real payment"
    assert "Dismissed: looked like a test" in reopened.detail["previous"]
    page = reviewer_client.get(page_url(item)).text
    assert "Reopened: it was a real payment" in page


def test_an_application_never_sent_is_stopped_when_its_item_is_reopened(
    reviewer, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "30.00")
    txid = pay("NOPE", "50.00", customer_id="ACME")
    item = item_for(txid)
    posting = review.apply_review_item(item, invno, reviewer)  # queued, not sent yet
    Posting.objects.filter(pk=posting.pk).update(state=Posting.State.FAILED)
    assert open_items(txid, ReviewItem.Kind.OVERPAYMENT).exists()

    review.reopen_review_item(item, "wrong invoice", reviewer)
    run_tasks()

    posting.refresh_from_db()
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert not receipts(txid).exists()
    assert not open_items(txid, ReviewItem.Kind.OVERPAYMENT).exists()
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN
    # Decided again: the stopped posting carries the new receipt.
    other = sage.seed_invoice("ACME", "50.00")
    review.apply_review_item(item, other, reviewer)
    run_tasks()
    assert receipts(txid).get().applied == Decimal("50.00")


def test_a_posted_decision_is_not_reopened_and_the_page_explains_the_reversal(
    reviewer_client, reviewer, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "33.00")
    txid = pay("NOPE", "33.00")
    item = item_for(txid)
    review.apply_review_item(item, invno, reviewer)
    run_tasks()
    number = Posting.objects.get(transaction__transaction_id=txid).document_number

    page = reviewer_client.get(reopen_url(item))
    refused = reviewer_client.post(reopen_url(item), {"reason": "wrong invoice"})

    assert f"This decision posted receipt {number} for $33.00" in page.text
    assert f"reverse receipt {number} in Sage Pro" in page.text
    assert 'name="reason"' not in page.text
    assert refused.status_code == 200
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert not item.decisions.filter(action="reopen").exists()


# --- the retry is logged once, the History button leads somewhere ------------------------


def test_one_retry_click_is_logged_once(reviewer_client, pay, sage, run_tasks):
    txn = PaymentTransaction.objects.get(transaction_id=pay("NOPE", "12.00"))
    posting = Posting.objects.create(
        transaction=txn,
        sagepro=txn.connection.sagepro,
        kind=Posting.Kind.CASH_RECEIPT,
        idempotency_key="retry-once",
        state=Posting.State.DEAD,
        payload={},
    )
    item = ReviewItem.open(txn, ReviewItem.Kind.DEAD, "gave up", posting=posting)

    shown = preview(reviewer_client, item, "retry", {})
    confirm(reviewer_client, item, "retry", {}, shown=shown)
    confirm(reviewer_client, item, "retry", {}, shown=shown)  # pressed twice

    assert "Send receipt posting" in shown.text

    assert list(item.decisions.values_list("action", flat=True)) == ["retry"]


def test_the_history_button_opens_the_payments_history(reviewer_client, pay, sage):
    item = item_for(pay("NOPE", "12.00"))

    page = reviewer_client.get(page_url(item)).text

    txn_url = reverse(
        "admin:integrations_paymenttransaction_change", args=[item.transaction.pk]
    )
    assert f'href="{txn_url}#history-group"' in page
    assert f'href="{page_url(item)}history/"' not in page


# --- the item page helps decide ---------------------------------------------------------


def test_the_page_shows_the_payer_and_the_customer_it_maps_to(
    reviewer_client, pay, sage
):
    item = item_for(
        pay("NOPE", "12.00", customer_id="ACME", receipt_emailed_to="ap@acme.test")
    )

    page = reviewer_client.get(page_url(item))

    assert page.context["payer"]["name"] == "Ada Buyer"
    assert page.context["payer"]["email"] == "ap@acme.test"
    assert page.context["identity"].custno == "ACME"
    assert "•••• 1111" in page.text


def test_candidates_rank_the_payers_invoices_first_in_a_stable_order(
    reviewer_client, pay, sage
):
    for _ in range(3):
        sage.seed_invoice("ACME", "70.00")
    item = item_for(pay("NOPE", "70.00", customer_id="ACME"))

    orders = [
        [
            c["invoice"].invno
            for c in reviewer_client.get(page_url(item)).context["candidates"]
        ]
        for _ in range(3)
    ]

    assert orders[0] == orders[1] == orders[2]
    first = reviewer_client.get(page_url(item)).context["candidates"]
    assert all(c["invoice"].custno == "ACME" for c in first)
    same_score = [c for c in first if c["score"] == first[0]["score"]]
    numbers = [c["invoice"].invno for c in same_score]
    assert numbers == sorted(numbers, key=lambda n: (len(n), n))


def test_the_invoice_search_finds_an_open_invoice_by_amount_and_applies_it(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("DELTA", "67.22")
    item = item_for(pay("NOPE", "67.22"))
    review.search_invoices(item.transaction.connection.sagepro, invno)  # mirror it

    found = reviewer_client.get(page_url(item), {"invoice_q": "67.22"})
    by_number = reviewer_client.get(page_url(item), {"invoice_q": invno})

    assert [i["invno"] for i in found.context["invoice_results"]] == [invno]
    assert by_number.context["invoice_results"][0]["custno"] == "DELTA"
    assert "portal-search-apply" in found.text
    shown = preview(reviewer_client, item, "apply", {"invno": invno})
    assert shown.context["outcome"].lines[0].invno == invno


def test_a_possible_duplicate_names_the_earlier_payment(reviewer_client, pay, sage):
    invno = sage.seed_invoice("ACME", "44.00")
    first = pay(invno, "44.00", customer_id="ACME")
    second = pay(invno, "44.00", customer_id="ACME")
    item = ReviewItem.objects.get(
        transaction__transaction_id=second, kind=ReviewItem.Kind.POSSIBLE_DUPLICATE
    )

    page = reviewer_client.get(page_url(item))

    earlier = [
        r["transaction"].transaction_id for r in page.context["earlier_payments"]
    ]
    assert earlier == [first]
    assert "The earlier payment it may repeat" in page.text


def test_the_split_form_keeps_what_was_typed_after_a_refusal(
    reviewer_client, pay, sage
):
    small = sage.seed_invoice("ACME", "5.00")
    item = item_for(pay("NOPE", "20.00", customer_id="ACME"))

    response = reviewer_client.post(
        decide_url(item, "split"), {"invno_1": small, "amount_1": "6.00"}
    )

    assert response.status_code == 200
    assert "more than invoice" in messages_of(response)[0]
    form = response.context["split_form"]
    assert (form["invno_1"].value(), form["amount_1"].value()) == (small, "6.00")
    assert f'value="{small}"' in response.text


# --- amounts are never a reviewer's to change ----------------------------------------------


def test_a_tampered_amount_on_an_item_form_is_ignored(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "500.00")
    txid = pay("NOPE", "150.00", customer_id="ACME")
    item = item_for(txid)
    data = {"invno": invno, "amount": "1.00", "AMOUNT": "1.00"}

    confirm(reviewer_client, item, "apply", data)
    run_tasks()

    receipt = receipts(txid).get()
    assert receipt.amount == Decimal("150.00")
    assert receipt.applied == Decimal("150.00")


def test_correct_and_retry_refuses_amount_and_ignores_AMOUNT(
    reviewer_client, pay, sage, run_tasks
):
    txn = PaymentTransaction.objects.get(
        transaction_id=pay("NOPE", "1500.00", customer_id="ACME")
    )
    review.post_on_account(item_for(txn.transaction_id), custno="ACME")
    posting = txn.postings.get()
    Posting.objects.filter(pk=posting.pk).update(state=Posting.State.NEEDS_REVIEW)
    item = ReviewItem.open(txn, ReviewItem.Kind.VALIDATION, "fix it", posting=posting)
    current = review.correction_values(item)
    base = {
        "action": "correct_and_retry",
        "_selected_action": [item.pk],
        "confirm": "yes",
        "date": str(current["date"]),
        "method": current["method"] or "",
        "gl_account": current["gl_account"] or "",
    }

    refused = reviewer_client.post(CHANGELIST, base | {"amount": "1.00"})
    shown = reviewer_client.post(CHANGELIST, base | {"AMOUNT": "1.00"})
    reviewer_client.post(
        CHANGELIST,
        base | {"AMOUNT": "1.00", "confirmed": shown.context["fingerprint"]},
    )
    run_tasks()

    assert "cannot be corrected here" in refused.text
    assert "The amount stays $1,500.00" in shown.text
    posting.refresh_from_db()
    assert "amount" not in posting.overrides and "AMOUNT" not in posting.overrides
    assert receipts(txn.transaction_id).get().amount == Decimal("1500.00")


def test_a_bulk_action_with_an_amount_posts_the_payments_amount(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "500.00")
    txid = pay("NOPE", "75.00", customer_id="ACME")
    selection = {
        "action": "apply_to_invoice",
        "_selected_action": [item_for(txid).pk],
        "confirm": "yes",
        "invno": invno,
        "amount": "1.00",
    }

    shown = reviewer_client.post(CHANGELIST, selection)
    reviewer_client.post(
        CHANGELIST, selection | {"confirmed": shown.context["fingerprint"]}
    )
    run_tasks()

    assert 'name="amount"' not in shown.text  # never carried to the confirmation
    assert receipts(txid).get().amount == Decimal("75.00")


def test_the_apis_refuse_to_change_an_amount(reviewer, pay, sage):
    txid = pay("NOPE", "64.00")
    txn = PaymentTransaction.objects.get(transaction_id=txid)
    item = item_for(txid)
    api = APIClient()
    api.force_authenticate(reviewer)

    answers = [
        api.patch(f"/api/transactions/{txn.pk}/", {"amount": "1.00"}, format="json"),
        api.put(f"/api/transactions/{txn.pk}/", {"amount": "1.00"}, format="json"),
        api.post("/api/transactions/", {"amount": "1.00"}, format="json"),
        api.patch(f"/api/review-items/{item.pk}/", {"amount": "1.00"}, format="json"),
        api.post(
            "/api/mappings/feedback",
            {
                "target": "cash_receipt",
                "target_field": "amount",
                "source_path": "tax_amount",
                "accepted": True,
            },
            format="json",
        ),
    ]

    assert [a.status_code for a in answers] == [405, 405, 405, 405, 403]
    txn.refresh_from_db()
    assert txn.amount == Decimal("64.00")
    assert not SuggestionFeedback.objects.exists()


def test_a_dead_letter_replay_sends_the_payments_amount(
    admin_client, client, secret, paytrace_conn, sage, http, run_tasks
):
    (txid,) = make_dead_postings(client, secret, sage, run_tasks, ["300.00"])
    posting = Posting.objects.get(transaction__transaction_id=txid)
    selection = {
        "action": "replay_selected",
        "_selected_action": [posting.pk],
        "amount": "1.00",
    }

    shown = admin_client.post("/admin/integrations/deadletter/", selection)
    admin_client.post(
        "/admin/integrations/deadletter/",
        selection | {"confirmed": shown.context["fingerprint"]},
    )
    run_tasks()

    assert "$300.00" in shown.text
    assert receipts(txid).get().amount == Decimal("300.00")


def test_a_colleague_cannot_confirm_into_an_item_already_decided(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "25.00")
    item = item_for(pay("NOPE", "25.00"))
    colleague = Client()
    colleague.force_login(make_user(group=FINANCE_REVIEWER))
    theirs = preview(colleague, item, "dismiss", {"reason": "test"})
    confirm(reviewer_client, item, "apply", {"invno": invno})

    late = confirm(colleague, item, "dismiss", {"reason": "test"}, shown=theirs)
    run_tasks()

    assert "already resolved" in messages_of(late)[-1]
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED


@pytest.mark.parametrize(
    "query", ["1e999999", "NaN", "-Infinity", "$1,234.567", "'; drop table", "x" * 200]
)
def test_a_hostile_invoice_search_is_answered_not_crashed(
    reviewer_client, pay, sage, query
):
    item = item_for(pay("NOPE", "12.00"))

    page = reviewer_client.get(page_url(item), {"invoice_q": query})

    assert page.status_code == 200
    assert page.context["invoice_results"] == []


def test_a_bulk_apply_to_one_invoice_posts_what_its_confirmation_showed(
    reviewer_client, pay, sage, run_tasks
):
    invno = sage.seed_invoice("ACME", "100.00")
    first, second = pay("NOPE", "60.00"), pay("NOPE", "70.00")
    selection = {
        "action": "apply_to_invoice",
        "_selected_action": [item_for(first).pk, item_for(second).pk],
        "confirm": "yes",
        "invno": invno,
    }

    shown = reviewer_client.post(CHANGELIST, selection)
    reviewer_client.post(
        CHANGELIST, selection | {"confirmed": shown.context["fingerprint"]}
    )
    run_tasks()

    applied = {
        outcome.transaction_id: (outcome.lines[0].applied, outcome.unapplied)
        for _, outcome, _ in shown.context["rows"]
    }
    assert applied == {
        first: (Decimal("60.00"), Decimal("0.00")),
        second: (Decimal("40.00"), Decimal("30.00")),
    }
    assert "Total of the payments: $130.00; stays unapplied cash: $30.00" in (
        shown.text
    )
    assert balance(invno) == Decimal("0.00")
    assert (receipts(second).get().applied, receipts(second).get().unapplied) == (
        Decimal("40.00"),
        Decimal("30.00"),
    )
    assert open_items(second, ReviewItem.Kind.OVERPAYMENT).count() == 1
