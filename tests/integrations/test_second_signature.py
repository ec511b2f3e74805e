"""A finance manager's second signature on a reviewer's override (issue 16).

A reviewer's "Correct values and retry" is an override of what the rules produced:
it waits, with nothing stored on the receipt and nothing sent, until a finance
manager other than the requester signs it (then it is applied exactly as requested)
or refuses it with a reason. Each step shows on the item's decisions.
"""

from decimal import Decimal

import pytest
from django.test import Client

from integrations import documents, review
from integrations.models import PaymentTransaction, Posting, ReviewItem
from integrations.models.review import OverrideRequest
from integrations.roles import FINANCE_MANAGER, FINANCE_REVIEWER
from integrations.sandbox.sagepro.models import CashReceipt
from mappings.models import GlRule
from tests.factories import make_user
from tests.webhooks import event_body, paytrace_record, post_event, sign

pytestmark = pytest.mark.django_db
CHANGELIST = "/admin/integrations/reviewitem/"
WAITING = "Awaiting a finance manager's second signature"


@pytest.fixture
def stopped(client, paytrace_conn, secret, http, run_tasks, sage):
    """A $25.00 payment whose receipt stopped on an inactive GL account (6900-00):
    an open validation item with a posting, waiting for a correction."""
    GlRule.objects.create(
        connection=paytrace_conn, name="Old bank", priority=1, account="6900-00"
    )
    record = paytrace_record(
        amount=Decimal("25.00"), invoice_id=sage.seed_invoice("ACME", "500.00")
    )
    body = event_body("transaction.approved", record)
    assert (
        post_event(client, "paytrace-sandbox", body, sign(body, secret)).status_code
        == 202
    )
    run_tasks()
    txn = PaymentTransaction.objects.get(transaction_id=str(record["transaction_id"]))
    item = ReviewItem.objects.get(transaction=txn, kind=ReviewItem.Kind.VALIDATION)
    assert item.posting.state == Posting.State.NEEDS_REVIEW
    return item


@pytest.fixture
def reviewer():
    return make_user(group=FINANCE_REVIEWER, username="rita")


@pytest.fixture
def manager():
    return make_user(group=FINANCE_MANAGER, username="max")


def browser_of(user):
    browser = Client()
    browser.force_login(user)
    return browser


def receipts(item):
    return CashReceipt.objects.filter(
        reference=item.transaction.transaction_id, deleted=False
    )


def request_correction(browser, item, **changes):
    """Press "Correct values and retry…" and confirm the preview, as a reviewer does."""
    current = documents.stored_values(
        documents.CashReceipt.from_payload(item.posting.payload)
    )
    data = {
        "action": "correct_and_retry",
        "_selected_action": [item.pk],
        "confirm": "yes",
        **{
            n: "" if current[n] is None else str(current[n])
            for n in documents.CORRECTABLE_FIELDS
        },
        **changes,
    }
    shown = browser.post(CHANGELIST, data)
    assert shown.status_code == 200, shown
    return browser.post(
        CHANGELIST, data | {"confirmed": shown.context["fingerprint"]}, follow=True
    )


def decide(browser, item, decision, **data):
    return browser.post(f"{CHANGELIST}{item.pk}/decide/{decision}/", data, follow=True)


def actions(item):
    return list(item.decisions.values_list("action", flat=True))


# --- the request -------------------------------------------------------------------------


def test_a_correction_waits_for_a_signature_and_sends_nothing(
    stopped, reviewer, run_tasks
):
    response = request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    run_tasks()

    assert "awaiting a finance manager&#x27;s second signature" in response.text
    assert "Nothing was sent to Sage Pro" in response.text
    posting = Posting.objects.get(pk=stopped.posting_id)
    assert posting.overrides == {}
    assert posting.state == Posting.State.NEEDS_REVIEW
    assert not receipts(stopped).exists()
    waiting = OverrideRequest.objects.get(item=stopped)
    assert waiting.state == OverrideRequest.State.WAITING
    assert waiting.changes == {"gl_account": "1100-00"}
    assert waiting.requested_by == reviewer
    assert ["gl_account", "1100-00"] in waiting.document
    assert actions(stopped) == ["override_requested"]


def test_the_item_page_shows_the_wait_and_the_preview_to_a_manager(
    stopped, reviewer, manager
):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")

    page = browser_of(manager).get(f"{CHANGELIST}{stopped.pk}/change/")

    assert WAITING in page.text
    assert "gl_account → 1100-00" in page.text
    assert "The amount stays $25.00" in page.text  # the preview the reviewer saw
    assert "A finance manager other than you" not in page.text  # that was to her
    assert 'value="Sign and send"' in page.text
    assert 'value="Refuse"' in page.text


def test_a_managers_home_counts_the_corrections_waiting_for_their_signature(
    stopped, reviewer, manager
):
    home = browser_of(manager).get("/admin/")
    assert home.context["attention"]["signatures"].count == 0
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")

    home = browser_of(manager).get("/admin/")

    waiting = home.context["attention"]["signatures"]
    assert waiting.count == 1
    assert 'id="home-signatures-link"' in home.text
    listing = browser_of(manager).get(waiting.url)
    assert listing.context["cl"].result_count == 1
    # A reviewer cannot sign, so her home has no such panel; nor does a manager's own
    # request count as waiting for him.
    assert (
        browser_of(reviewer).get("/admin/").context["attention"]["signatures"] is None
    )
    OverrideRequest.objects.update(requested_by=manager)
    assert (
        browser_of(manager).get("/admin/").context["attention"]["signatures"].count == 0
    )


def test_the_same_request_pressed_twice_is_recorded_once(stopped, reviewer):
    browser = browser_of(reviewer)
    request_correction(browser, stopped, gl_account="1100-00")
    request_correction(browser, stopped, gl_account="1100-00")

    assert OverrideRequest.objects.filter(item=stopped).count() == 1
    assert actions(stopped) == ["override_requested"]


def test_another_correction_while_one_waits_is_refused(stopped, reviewer):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    colleague = make_user(group=FINANCE_REVIEWER, username="carl")

    response = request_correction(browser_of(colleague), stopped, gl_account="1000-00")

    assert "awaits a finance manager&#x27;s second signature" in response.text
    assert "requested by rita" in response.text
    assert list(OverrideRequest.objects.values_list("changes", flat=True)) == [
        {"gl_account": "1100-00"}
    ]


# --- the signature -----------------------------------------------------------------------


def test_a_manager_signs_and_the_correction_is_sent_as_requested(
    stopped, reviewer, manager, run_tasks
):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")

    response = decide(
        browser_of(manager),
        stopped,
        "sign_override",
        request=review.waiting_override(stopped).pk,
    )
    run_tasks()

    assert "signed the correction of gl_account → 1100-00 requested by rita" in (
        response.text
    )
    receipt = receipts(stopped).get()
    assert (receipt.glacnt.strip(), receipt.amount) == ("1100-00", Decimal("25.00"))
    signed = OverrideRequest.objects.get(item=stopped)
    assert (signed.state, signed.decided_by) == (OverrideRequest.State.SIGNED, manager)
    assert actions(stopped)[:3] == ["override_requested", "override_signed", "correct"]
    correct = stopped.decisions.get(action="correct")
    assert correct.detail["signed_by"] == "max"
    assert correct.detail["requested_by"] == "rita"
    assert "requested by rita, signed by max" in response.text  # the item's history


def test_the_requester_cannot_sign_their_own_even_as_a_superuser(stopped, run_tasks):
    boss = make_user(username="boss", is_superuser=True)
    browser = browser_of(boss)
    request_correction(browser, stopped, gl_account="1100-00")

    page = browser.get(f"{CHANGELIST}{stopped.pk}/change/")
    response = decide(
        browser,
        stopped,
        "sign_override",
        request=review.waiting_override(stopped).pk,
    )
    run_tasks()

    assert 'value="Sign and send"' not in page.text
    assert "You requested this correction" in page.text
    assert "You requested this correction" in response.text
    assert not receipts(stopped).exists()
    assert review.waiting_override(stopped) is not None


def test_a_reviewer_without_the_permission_cannot_sign(stopped, reviewer, run_tasks):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    colleague = make_user(group=FINANCE_REVIEWER)

    response = decide(
        browser_of(colleague),
        stopped,
        "sign_override",
        request=review.waiting_override(stopped).pk,
    )
    run_tasks()

    assert "Only a finance manager signs or refuses an override" in response.text
    assert not receipts(stopped).exists()
    assert Posting.objects.get(pk=stopped.posting_id).overrides == {}


def test_signing_twice_applies_once(stopped, reviewer, manager, run_tasks):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    waiting = review.waiting_override(stopped)
    other = make_user(group=FINANCE_MANAGER, username="mia")

    review.sign_override(waiting, manager)
    with pytest.raises(review.ReviewError, match="already signed and applied by max"):
        review.sign_override(waiting, other)
    run_tasks()

    assert receipts(stopped).count() == 1
    assert actions(stopped).count("correct") == 1


def test_a_receipt_changed_since_the_request_is_not_signed(
    stopped, reviewer, manager, run_tasks
):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    posting = Posting.objects.get(pk=stopped.posting_id)
    # The pipeline rebuilt the receipt meanwhile (another GL account chosen).
    Posting.objects.filter(pk=posting.pk).update(
        payload={**posting.payload, "gl_account": "1000-00"}
    )

    response = decide(
        browser_of(manager),
        stopped,
        "sign_override",
        request=review.waiting_override(stopped).pk,
    )
    run_tasks()

    assert "changed since the correction was requested" in response.text
    assert "requests the correction again" in response.text
    assert not receipts(stopped).exists()
    closed = OverrideRequest.objects.get(item=stopped)
    assert closed.state == OverrideRequest.State.OUTDATED
    assert "override_outdated" in actions(stopped)
    # Closed, so the reviewer can ask again on the receipt as it is now.
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    assert review.waiting_override(stopped) is not None


def test_a_receipt_posted_meanwhile_by_a_retry_is_not_corrected(
    stopped, reviewer, manager, run_tasks
):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    GlRule.objects.filter(account="6900-00").update(account="1000-00")
    review.retry_posting(stopped.posting)
    run_tasks()
    assert receipts(stopped).get().glacnt.strip() == "1000-00"

    with pytest.raises(review.OutcomeChanged, match="Nothing was sent"):
        review.sign_override(review.waiting_override(stopped), manager)
    run_tasks()

    assert receipts(stopped).get().glacnt.strip() == "1000-00"
    assert Posting.objects.get(pk=stopped.posting_id).overrides == {}


# --- the refusal -------------------------------------------------------------------------


def test_a_manager_refuses_with_a_reason_and_nothing_is_sent(
    stopped, reviewer, manager, run_tasks
):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    browser = browser_of(manager)
    pk = review.waiting_override(stopped).pk

    blank = decide(browser, stopped, "refuse_override", request=pk, reason=" ")
    response = decide(
        browser,
        stopped,
        "refuse_override",
        request=pk,
        reason="1100-00 is the Amex clearing account; use 1000-00",
    )
    run_tasks()

    assert "This field is required" in blank.text
    assert "refused the correction of gl_account → 1100-00" in response.text
    assert (
        "Correction refused: gl_account → 1100-00 (requested by rita). 1100-00 is"
        in (response.text)
    )
    refused = OverrideRequest.objects.get(item=stopped)
    assert (refused.state, refused.decided_by) == (
        OverrideRequest.State.REFUSED,
        manager,
    )
    assert not receipts(stopped).exists()
    stopped.refresh_from_db()
    assert stopped.state == ReviewItem.State.OPEN
    assert Posting.objects.get(pk=stopped.posting_id).overrides == {}


# --- the setting, the list and the queue -------------------------------------------------


def test_with_the_setting_off_a_correction_is_sent_at_once(
    settings, stopped, reviewer, run_tasks
):
    settings.OVERRIDE_SECOND_SIGNATURE = False

    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    run_tasks()

    assert receipts(stopped).get().glacnt.strip() == "1100-00"
    assert not OverrideRequest.objects.exists()


def test_the_queue_links_a_manager_to_the_overrides_awaiting_signature(
    stopped, reviewer, manager
):
    request_correction(browser_of(reviewer), stopped, gl_account="1100-00")
    browser = browser_of(manager)

    queue = browser.get(CHANGELIST)
    listed = browser.get("/admin/integrations/overriderequest/")

    assert "Overrides awaiting signature (1)" in queue.text
    assert listed.status_code == 200
    assert "Overrides awaiting signature" in listed.text
    assert f"Review item {stopped.pk} (sign here)" in listed.text
    assert "gl_account → 1100-00" in listed.text
    assert stopped.transaction.transaction_id in listed.text
