"""The review item's page: candidates, and the decisions a reviewer makes from it."""

from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.urls import reverse

from integrations.models import Posting, ReviewDecision, ReviewItem
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from integrations.sandbox.sagepro.models import ArMast, CashReceipt
from mappings.models import MatchingRule
from tests.factories import make_connection, make_review_item, make_user

pytestmark = pytest.mark.django_db


def page_url(item):
    return reverse("admin:integrations_reviewitem_change", args=[item.pk])


def decide_url(item, decision):
    return reverse("admin:integrations_reviewitem_decide", args=[item.pk, decision])


def preview(client, item, decision, data):
    """Post a decision: the page answers with its outcome, nothing done yet."""
    response = client.post(decide_url(item, decision), data)
    assert response.status_code == 200
    assert "outcome" in response.context, messages_of(response)
    return response


def confirm(client, item, decision, data, *, follow=False, shown=None):
    """Post a decision and confirm the outcome it shows, as a reviewer does."""
    shown = shown or preview(client, item, decision, data)
    fingerprint = shown.context["outcome"].fingerprint
    return client.post(
        decide_url(item, decision), data | {"confirm": fingerprint}, follow=follow
    )


def item_for(txid, kind="unmatched"):
    return ReviewItem.objects.get(transaction__transaction_id=txid, kind=kind)


def receipts(txid):
    return CashReceipt.objects.filter(reference=txid, deleted=False)


def balance(invno):
    return ArMast.objects.get(invno=invno.rjust(10)).balance


def messages_of(response):
    return [str(m) for m in response.context["messages"]]


@pytest.fixture
def near_miss(pay, sage, paytrace_conn):
    """An unmatched $33.00 payment from ACME whose reference almost names an invoice
    (under a rule comparing references as written: the standard rule reads it)."""
    MatchingRule.objects.create(
        connection=paytrace_conn, name="as written", reference_mode="exact"
    )
    target = sage.seed_invoice("ACME", "33.00")
    txid = pay(f"INV-{int(target):010d}", "33.00", customer_id="ACME")
    return {"invno": target, "txid": txid, "item": item_for(txid)}


def test_the_page_of_an_unmatched_item_ranks_three_candidates(
    reviewer_client, near_miss
):
    response = reviewer_client.get(page_url(near_miss["item"]))

    assert response.status_code == 200
    candidates = response.context["candidates"]
    assert len(candidates) == 3
    assert candidates[0]["invoice"].invno == near_miss["invno"]
    assert candidates[0]["reference_match"] == "normalized"
    scores = [float(c["score"]) for c in candidates]
    assert scores == sorted(scores, reverse=True)
    best = {p["name"]: p["value"] for p in candidates[0]["parts"]}
    assert best["reference"] == "0.90"
    assert best["amount"] == "1.00"
    assert best["customer"] == "1.00"
    text = response.text
    assert f">{candidates[0]['score']}<" in text
    assert "Suggested actions:" in text
    assert text.count('class="default portal-apply"') == 1
    assert text.count("portal-apply") == 3
    for heading in ("Split across invoices", "Post on account", "Mark as duplicate"):
        assert heading in text


def test_apply_on_a_candidate_posts_one_receipt(
    reviewer_client, reviewer, near_miss, run_tasks
):
    item = near_miss["item"]

    shown = preview(reviewer_client, item, "apply", {"invno": near_miss["invno"]})
    assert not Posting.objects.filter(transaction=item.transaction).exists()
    response = confirm(
        reviewer_client,
        item,
        "apply",
        {"invno": near_miss["invno"]},
        follow=True,
        shown=shown,
    )
    run_tasks()

    assert response.redirect_chain[-1][0] == page_url(item)
    assert messages_of(response) == [
        f"Transaction {near_miss['txid']}: Applied to invoice {near_miss['invno']}. "
        "The receipt is queued for Sage Pro."
    ]
    assert receipts(near_miss["txid"]).count() == 1
    assert balance(near_miss["invno"]) == Decimal("0.00")
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert item.resolved_by == reviewer
    decision = item.decisions.get()
    assert (decision.user, decision.action) == (reviewer, "apply")


def test_a_double_click_on_apply_posts_once(reviewer_client, near_miss, run_tasks):
    item = near_miss["item"]

    shown = preview(reviewer_client, item, "apply", {"invno": near_miss["invno"]})
    data = {"invno": near_miss["invno"]}
    first = confirm(reviewer_client, item, "apply", data, shown=shown)
    second = confirm(reviewer_client, item, "apply", data, shown=shown, follow=True)
    run_tasks()

    assert first.status_code == 302
    assert "Applied to invoice" in messages_of(second)[-1]
    assert receipts(near_miss["txid"]).count() == 1
    assert Posting.objects.filter(transaction=item.transaction).count() == 1
    assert item.decisions.count() == 1


def test_two_reviewers_applying_to_different_invoices_post_once(
    reviewer_client, near_miss, sage, run_tasks
):
    other = sage.seed_invoice("ACME", "50.00")
    colleague = Client()
    colleague.force_login(make_user(group=FINANCE_REVIEWER))
    item = near_miss["item"]

    mine = preview(reviewer_client, item, "apply", {"invno": near_miss["invno"]})
    theirs = preview(colleague, item, "apply", {"invno": other})
    confirm(reviewer_client, item, "apply", {"invno": near_miss["invno"]}, shown=mine)
    late = confirm(
        colleague, item, "apply", {"invno": other}, shown=theirs, follow=True
    )
    run_tasks()

    assert "already resolved" in messages_of(late)[-1]
    assert receipts(near_miss["txid"]).count() == 1
    assert balance(other) == Decimal("50.00")


def test_the_split_form_posts_one_receipt_with_two_applications(
    reviewer_client, pay, sage, run_tasks
):
    a, b = sage.seed_invoice("ACME", "60.00"), sage.seed_invoice("ACME", "70.00")
    txid = pay("NO-SUCH-INVOICE", "100.00")
    item = item_for(txid)

    response = confirm(
        reviewer_client,
        item,
        "split",
        {"invno_1": a, "amount_1": "60.00", "invno_2": b, "amount_2": ""},
        follow=True,
    )
    run_tasks()

    assert f"Applied to invoices {a} (60.00), {b} (40.00)" in messages_of(response)[0]
    assert receipts(txid).count() == 1
    assert receipts(txid).get().lines.count() == 2
    assert (balance(a), balance(b)) == (Decimal("0.00"), Decimal("30.00"))
    page = reviewer_client.get(page_url(item)).text
    assert f"Applied to {a} (60.00), {b} (40.00)" in page


def test_a_split_with_an_amount_but_no_invoice_is_refused(reviewer_client, near_miss):
    item = near_miss["item"]

    response = reviewer_client.post(
        decide_url(item, "split"), {"amount_1": "10.00"}, follow=True
    )

    assert messages_of(response) == ["Row 1 has an amount but no invoice."]
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_an_overdrawn_split_says_why(reviewer_client, near_miss, sage):
    item = near_miss["item"]
    small = sage.seed_invoice("ACME", "5.00")

    response = reviewer_client.post(
        decide_url(item, "split"), {"invno_1": small, "amount_1": "6.00"}, follow=True
    )

    assert "more than invoice" in messages_of(response)[0]
    assert not Posting.objects.filter(transaction=item.transaction).exists()


def test_post_on_account_defaults_to_the_payments_customer(
    reviewer_client, pay, sage, run_tasks
):
    txid = pay("NO-SUCH-INVOICE", "45.00", customer_id="ACME")
    item = item_for(txid)
    page = reviewer_client.get(page_url(item))
    assert page.context["on_account_form"]["custno"].value() == "ACME"

    response = confirm(reviewer_client, item, "on_account", {"custno": ""}, follow=True)
    run_tasks()

    assert "Posted on account of customer ACME" in messages_of(response)[0]
    receipt = receipts(txid).get()
    assert receipt.unapplied == Decimal("45.00")
    assert receipt.custno.strip() == "ACME"


def test_mark_duplicate_records_the_note_and_posts_nothing(
    reviewer_client, pay, sage, reviewer
):
    item = item_for(pay("NOPE", "12.00"))

    shown = preview(reviewer_client, item, "duplicate", {"note": "refund at gateway"})
    for _ in range(2):  # pressed twice
        confirm(
            reviewer_client,
            item,
            "duplicate",
            {"note": "refund at gateway"},
            shown=shown,
        )

    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert item.resolution == "Marked as a duplicate: refund at gateway"
    assert item.decisions.get().user == reviewer
    assert not Posting.objects.filter(transaction=item.transaction).exists()


def test_notes_are_listed_with_who_and_when_newest_last(
    reviewer_client, near_miss, reviewer
):
    item = near_miss["item"]

    empty = reviewer_client.post(decide_url(item, "note"), {"note": " "}, follow=True)
    reviewer_client.post(decide_url(item, "note"), {"note": "Called the customer"})
    reviewer_client.post(decide_url(item, "note"), {"note": "They will pay the rest"})
    page = reviewer_client.get(page_url(item)).text

    assert messages_of(empty) == ["Note: This field is required."]
    assert [d.detail["note"] for d in item.decisions.all()] == [
        "Called the customer",
        "They will pay the rest",
    ]
    assert page.index("Called the customer") < page.index("They will pay the rest")
    assert reviewer.username in page
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_dismiss_from_the_page_needs_a_reason(reviewer_client, near_miss):
    item = near_miss["item"]

    without = reviewer_client.post(decide_url(item, "dismiss"), {}, follow=True)
    confirm(reviewer_client, item, "dismiss", {"reason": "Test charge"})

    assert messages_of(without) == ["Reason: This field is required."]
    item.refresh_from_db()
    assert item.state == ReviewItem.State.DISMISSED
    page = reviewer_client.get(page_url(item)).text
    assert "Dismissed: Test charge" in page
    assert "portal-apply" not in page  # nothing left to decide


def test_a_view_only_user_cannot_decide(near_miss):
    user = make_user()
    user.user_permissions.add(*Permission.objects.filter(codename="view_reviewitem"))
    browser = Client()
    browser.force_login(user)
    item = near_miss["item"]

    page = browser.get(page_url(item))
    response = browser.post(decide_url(item, "apply"), {"invno": near_miss["invno"]})

    assert page.status_code == 200
    assert "portal-apply" not in page.text
    assert response.status_code == 403
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN
    assert not ReviewDecision.objects.exists()


def test_decisions_are_post_only(reviewer_client, near_miss):
    response = reviewer_client.get(decide_url(near_miss["item"], "apply"))
    assert response.status_code == 405


def test_an_unknown_decision_is_not_found(reviewer_client, near_miss):
    response = reviewer_client.post(decide_url(near_miss["item"], "delete"))
    assert response.status_code == 404


def test_the_page_renders_when_sage_pro_is_down(reviewer_client, near_miss, settings):
    fault = Client().post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "unavailable", "seconds": 600},
        content_type="application/json",
        headers={"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"},
    )
    assert fault.status_code in (200, 201)

    response = reviewer_client.get(page_url(near_miss["item"]))

    assert response.status_code == 200
    assert "Candidates unavailable: " in response.text
    assert "Sage Pro is not available" in response.text


def test_a_dead_item_offers_retry(reviewer_client):
    item = make_review_item(kind=ReviewItem.Kind.DEAD, reason="Gave up")

    page = reviewer_client.get(page_url(item))

    assert page.status_code == 200
    assert "Retry once Sage Pro is reachable" in page.text
    assert decide_url(item, "retry") in page.text
    assert "Best candidate invoices" not in page.text


# The queue ---------------------------------------------------------------------------------


def test_the_queue_shows_a_suggested_action_per_item(reviewer_client):
    make_review_item(kind=ReviewItem.Kind.POSSIBLE_DUPLICATE)

    response = reviewer_client.get(reverse("admin:integrations_reviewitem_changelist"))

    assert "Mark as duplicate (refund at the gateway), or dismiss as genuine" in (
        response.text
    )


def test_bulk_mark_as_duplicate_asks_for_a_note_first(reviewer_client, pay, sage):
    items = [item_for(pay("NOPE", "12.00")), item_for(pay("NOPE", "13.00"))]
    changelist = reverse("admin:integrations_reviewitem_changelist")
    selection = {
        "action": "mark_duplicate",
        "_selected_action": [i.pk for i in items],
    }

    ask = reviewer_client.post(changelist, selection | {"index": "0"})
    without = reviewer_client.post(changelist, selection | {"confirm": "yes"})
    shown = reviewer_client.post(
        changelist, selection | {"confirm": "yes", "note": "charged twice"}
    )
    assert not ReviewItem.objects.filter(
        pk__in=[i.pk for i in items], state=ReviewItem.State.RESOLVED
    ).exists()
    done = reviewer_client.post(
        changelist,
        selection
        | {
            "confirm": "yes",
            "note": "charged twice",
            "confirmed": shown.context["fingerprint"],
        },
        follow=True,
    )

    assert 'name="note"' in ask.text
    assert "This field is required" in without.text
    assert "Mark as a duplicate: charged twice" in shown.text
    assert messages_of(done) == ["Marked 2 payments as duplicate."]
    assert set(
        ReviewItem.objects.filter(pk__in=[i.pk for i in items]).values_list(
            "resolution", flat=True
        )
    ) == {"Marked as a duplicate: charged twice"}


def test_bulk_post_on_account_reports_payments_without_a_customer(
    reviewer_client, pay, sage, run_tasks
):
    named = pay("NOPE", "20.00", customer_id="ACME")
    nameless = pay("NOPE", "21.00")

    selection = {
        "action": "post_on_account",
        "index": "0",
        "_selected_action": [item_for(named).pk, item_for(nameless).pk],
    }
    changelist = reverse("admin:integrations_reviewitem_changelist")
    shown = reviewer_client.post(changelist, selection)
    assert not receipts(named).exists()
    response = reviewer_client.post(
        changelist,
        selection | {"confirm": "yes", "confirmed": shown.context["fingerprint"]},
        follow=True,
    )
    run_tasks()

    nameless_warning = (
        f"Not posted, the payment names no customer: Transaction {nameless}. "
        "Post these from the item's page with a customer number."
    )
    assert nameless_warning in [str(m) for m in shown.context["messages"]]
    assert messages_of(response) == [
        nameless_warning,
        "Posted 1 payment on account as unapplied cash.",
    ]
    assert receipts(named).get().unapplied == Decimal("20.00")
    assert not receipts(nameless).exists()


# Matching rules ----------------------------------------------------------------------------


def test_integration_admins_edit_matching_rules(client):
    client.force_login(make_user(group=INTEGRATION_ADMIN))
    rule = MatchingRule.objects.create(
        connection=make_connection(),
        name="Web store, 1% tolerance",
        tolerance_type=MatchingRule.Tolerance.PERCENT,
        tolerance_value=Decimal("1.5"),
    )

    listing = client.get(reverse("admin:mappings_matchingrule_changelist"))
    change = client.get(reverse("admin:mappings_matchingrule_change", args=[rule.pk]))

    assert listing.status_code == 200
    assert "Web store, 1% tolerance" in listing.text
    assert "1.5 %" in listing.text
    assert change.status_code == 200
    assert "Apply without review when everything matches." in change.text


def test_reviewers_do_not_see_matching_rules(reviewer_client):
    response = reviewer_client.get(reverse("admin:mappings_matchingrule_changelist"))
    assert response.status_code == 403
