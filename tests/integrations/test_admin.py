"""The finance UI: who sees what, write-only secrets, and the review actions."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.urls import reverse
from django.utils import timezone

from integrations import review
from integrations.admin.base import format_age
from integrations.models import (
    Connection,
    PaymentStatus,
    Posting,
    ReviewDecision,
    ReviewItem,
)
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from tests.factories import (
    make_connection,
    make_delivery,
    make_event,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
    make_webhook_secret,
)

pytestmark = pytest.mark.django_db

API_KEY = "s3cret-api-key"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1zaG93"


def url(name, *args):
    return reverse(f"admin:integrations_{name}", args=args)


@pytest.fixture
def reviewer():
    return make_user(group=FINANCE_REVIEWER)


@pytest.fixture
def reviewer_client(client, reviewer):
    client.force_login(reviewer)
    return client


@pytest.fixture
def integration_admin_client(client):
    client.force_login(make_user(group=INTEGRATION_ADMIN))
    return client


@pytest.fixture
def connection_with_secrets():
    connection = make_connection(password=API_KEY)
    make_webhook_secret(connection, label="current", secret=WEBHOOK_SECRET)
    return connection


def connection_form_data(connection, **overrides):
    """What the browser posts from the change page, as a person left it."""
    secrets = list(connection.webhook_secrets.all())
    data = {
        "name": connection.name,
        "slug": connection.slug,
        "kind": connection.kind,
        "environment": connection.environment,
        "is_active": "on",
        "base_url": connection.base_url,
        "username": connection.username,
        "password": "",
        "integrator_id": connection.integrator_id,
        "company_id": connection.company_id,
        "transport": connection.transport,
        "agent": "",
        "sagepro": "",
        "payment_method": connection.payment_method,
        "time_zone": connection.time_zone,
        "webhook_secrets-TOTAL_FORMS": str(len(secrets) + 1),
        "webhook_secrets-INITIAL_FORMS": str(len(secrets)),
        "webhook_secrets-MIN_NUM_FORMS": "0",
        "webhook_secrets-MAX_NUM_FORMS": "1000",
    }
    for i, secret in enumerate(secrets):
        data |= {
            f"webhook_secrets-{i}-id": str(secret.pk),
            f"webhook_secrets-{i}-connection": str(connection.pk),
            f"webhook_secrets-{i}-label": secret.label,
            f"webhook_secrets-{i}-is_active": "on",
            f"webhook_secrets-{i}-expires_at_0": "",
            f"webhook_secrets-{i}-expires_at_1": "",
        }
    new = len(secrets)
    data |= {
        f"webhook_secrets-{new}-id": "",
        f"webhook_secrets-{new}-connection": str(connection.pk),
        f"webhook_secrets-{new}-label": "",
        f"webhook_secrets-{new}-secret": "",
        f"webhook_secrets-{new}-is_active": "on",
        f"webhook_secrets-{new}-expires_at_0": "",
        f"webhook_secrets-{new}-expires_at_1": "",
    }
    return data | overrides


# Who sees what ---------------------------------------------------------------------------


def test_it_names_the_product_in_the_header(reviewer_client):
    response = reviewer_client.get(reverse("admin:index"))

    assert response.status_code == 200
    assert "Payments portal" in response.text


def test_a_reviewer_can_open_transactions_and_review_items(reviewer_client):
    item = make_review_item()
    posting = make_posting(item.transaction, state=Posting.State.FAILED)

    pages = [
        url("paymenttransaction_changelist"),
        url("paymenttransaction_change", item.transaction.pk),
        url("reviewitem_changelist"),
        url("reviewitem_change", item.pk),
        url("posting_changelist"),
        url("posting_change", posting.pk),
    ]
    for page in pages:
        assert reviewer_client.get(page).status_code == 200, page


def test_a_reviewer_sees_transactions_read_only(reviewer_client):
    txn = make_transaction()

    response = reviewer_client.get(url("paymenttransaction_change", txn.pk))

    assert response.context["has_change_permission"] is False
    assert 'name="_save"' not in response.text
    assert (
        reviewer_client.post(url("paymenttransaction_change", txn.pk), {}).status_code
        == 403
    )
    assert reviewer_client.get(url("paymenttransaction_add")).status_code == 403


def test_a_reviewer_sees_connections_read_only_without_secrets(
    reviewer_client, connection_with_secrets
):
    # Issue 13: month-end and every transaction link to the connection, so reviewers
    # may view it (no 403); they still cannot add or change one, nor see a secret.
    pk = connection_with_secrets.pk

    assert reviewer_client.get(url("connection_changelist")).status_code == 200
    assert reviewer_client.get(url("connection_add")).status_code == 403
    page = reviewer_client.get(url("connection_change", pk))
    assert page.status_code == 200
    assert 'name="_save"' not in page.text
    assert API_KEY not in page.text and WEBHOOK_SECRET not in page.text


def test_every_page_renders_for_a_superuser(admin_client, connection_with_secrets):
    txn = make_transaction(connection=connection_with_secrets)
    txn.record("received", "First seen")
    posting = make_posting(txn, state=Posting.State.POSTED, document_number="R000123")
    event = make_event(connection_with_secrets, last_traceback="Traceback ...\nBoom")
    delivery = make_delivery(connection_with_secrets, event=event)
    item = make_review_item(txn)
    ReviewDecision.objects.create(item=item, action="note", detail={"x": 1})
    pages = {
        "connection": connection_with_secrets.pk,
        "inbounddelivery": delivery.pk,
        "event": event.pk,
        "paymenttransaction": txn.pk,
        "posting": posting.pk,
        "reviewitem": item.pk,
    }
    for model, pk in pages.items():
        assert admin_client.get(url(f"{model}_changelist")).status_code == 200, model
        response = admin_client.get(url(f"{model}_change", pk))
        assert response.status_code == 200, model
        assert API_KEY not in response.text
        assert WEBHOOK_SECRET not in response.text
    assert admin_client.get(url("connection_add")).status_code == 200
    assert (
        admin_client.get(reverse("admin:mappings_statusmap_changelist")).status_code
        == 200
    )


# Write-only secrets ------------------------------------------------------------------------


def test_the_connection_page_never_shows_a_stored_secret(
    integration_admin_client, connection_with_secrets
):
    response = integration_admin_client.get(
        url("connection_change", connection_with_secrets.pk)
    )

    assert response.status_code == 200
    assert API_KEY not in response.text
    assert WEBHOOK_SECRET not in response.text
    assert "Leave blank to keep the current value" in response.text
    assert ">set<" in response.text


def test_a_view_only_user_sees_only_whether_secrets_are_set(
    client, connection_with_secrets
):
    user = make_user()
    user.user_permissions.add(
        *Permission.objects.filter(
            codename__in=["view_connection", "view_webhooksecret"]
        )
    )
    client.force_login(user)

    response = client.get(url("connection_change", connection_with_secrets.pk))

    assert response.status_code == 200
    assert API_KEY not in response.text
    assert WEBHOOK_SECRET not in response.text
    assert "set" in response.text


def test_the_connection_list_never_shows_a_stored_secret(
    integration_admin_client, connection_with_secrets
):
    response = integration_admin_client.get(
        url("connection_changelist"), {"q": "s3cret"}
    )

    assert response.status_code == 200
    assert API_KEY not in response.text


def test_saving_with_a_blank_password_keeps_the_stored_one(
    integration_admin_client, connection_with_secrets
):
    connection = connection_with_secrets
    data = connection_form_data(connection, name="Renamed", password="")

    response = integration_admin_client.post(
        url("connection_change", connection.pk), data
    )

    assert response.status_code == 302, response.context and response.context["errors"]
    connection.refresh_from_db()
    assert connection.name == "Renamed"
    assert connection.password == API_KEY
    assert connection.webhook_secrets.get().secret == WEBHOOK_SECRET


def test_a_new_password_replaces_the_stored_one_without_echoing_it(
    integration_admin_client, connection_with_secrets
):
    connection = connection_with_secrets
    data = connection_form_data(connection, password="n3w-api-key")

    response = integration_admin_client.post(
        url("connection_change", connection.pk), data, follow=True
    )

    connection.refresh_from_db()
    assert connection.password == "n3w-api-key"
    assert "n3w-api-key" not in response.text
    assert "was changed successfully" in response.text


def test_a_new_webhook_secret_is_entered_once_and_never_shown(
    integration_admin_client, connection_with_secrets
):
    connection = connection_with_secrets
    data = connection_form_data(connection)
    data |= {
        "webhook_secrets-1-label": "next",
        "webhook_secrets-1-secret": "whsec_bmV4dC1zZWNyZXQtbmV4dC1zZWNyZXQtbmV4dA==",
    }

    response = integration_admin_client.post(
        url("connection_change", connection.pk), data, follow=True
    )

    assert response.status_code == 200
    assert {s.label: s.secret for s in connection.webhook_secrets.all()} == {
        "current": WEBHOOK_SECRET,
        "next": "whsec_bmV4dC1zZWNyZXQtbmV4dC1zZWNyZXQtbmV4dA==",
    }
    page = integration_admin_client.get(url("connection_change", connection.pk))
    for text in (response.text, page.text):
        assert "whsec_bmV4dC1zZWNyZXQtbmV4dC1zZWNyZXQtbmV4dA==" not in text
        assert WEBHOOK_SECRET not in text


def test_a_new_webhook_secret_needs_a_value(
    integration_admin_client, connection_with_secrets
):
    connection = connection_with_secrets
    data = connection_form_data(connection) | {"webhook_secrets-1-label": "next"}

    response = integration_admin_client.post(
        url("connection_change", connection.pk), data
    )

    assert response.status_code == 200
    assert connection.webhook_secrets.count() == 1
    assert WEBHOOK_SECRET not in response.text


def test_a_failed_save_does_not_echo_the_typed_password(
    integration_admin_client, connection_with_secrets
):
    connection = connection_with_secrets
    data = connection_form_data(connection, password="typed-key", base_url="not a url")

    response = integration_admin_client.post(
        url("connection_change", connection.pk), data
    )

    assert response.status_code == 200
    assert "typed-key" not in response.text
    connection.refresh_from_db()
    assert connection.password == API_KEY


# Transactions ----------------------------------------------------------------------------


def test_the_transaction_list_shows_what_finance_needs(reviewer_client):
    posted = make_transaction(amount=Decimal("150.25"), card_last4="4242")
    make_posting(posted, state=Posting.State.POSTED, document_number="R000777")
    make_transaction(mapped_status=PaymentStatus.FAILED, gateway_status="declined")

    response = reviewer_client.get(url("paymenttransaction_changelist"))

    text = response.text
    assert posted.transaction_id in text
    assert "$150.25" in text
    assert "•••• 4242" in text
    assert "R000777" in text
    assert "Posted" in text
    assert "Failed" in text


def test_the_transaction_list_filters_and_searches(reviewer_client):
    paid = make_transaction(invoice_reference="INV-PAID")
    failed = make_transaction(
        mapped_status=PaymentStatus.FAILED, invoice_reference="INV-FAIL"
    )
    changelist = url("paymenttransaction_changelist")

    by_status = reviewer_client.get(changelist, {"mapped_status__exact": "Failed"})
    by_invoice = reviewer_client.get(changelist, {"q": "INV-PAID"})

    assert list(by_status.context["cl"].result_list) == [failed]
    assert list(by_invoice.context["cl"].result_list) == [paid]


def test_the_transaction_list_query_count_does_not_grow_with_rows(
    reviewer_client, django_assert_max_num_queries
):
    connection = make_connection()
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)

    def add(count):
        for _ in range(count):
            txn = make_transaction(connection)
            make_posting(
                txn, sagepro=sagepro, state=Posting.State.POSTED, document_number="R1"
            )

    add(2)
    reviewer_client.get(url("paymenttransaction_changelist"))  # warm the session
    with django_assert_max_num_queries(20) as small:
        reviewer_client.get(url("paymenttransaction_changelist"))
    add(18)
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = reviewer_client.get(url("paymenttransaction_changelist"))
    assert response.context["cl"].result_count == 20


def test_the_transaction_page_shows_history_postings_and_review_items(reviewer_client):
    txn = make_transaction()
    txn.record("received", "First seen in transaction.approved")
    txn.record("status_changed", "unknown → settled")
    make_posting(txn, state=Posting.State.FAILED, last_error="Sage Pro timed out")
    make_review_item(txn, kind=ReviewItem.Kind.DEAD, reason="Gave up after 8 attempts")

    text = reviewer_client.get(url("paymenttransaction_change", txn.pk)).text

    assert text.index("First seen in transaction.approved") < text.index(
        "unknown → settled"
    )
    assert "Sage Pro timed out" in text
    assert "Gave up after 8 attempts" in text


# Postings ----------------------------------------------------------------------------------


def test_retry_now_queues_failed_postings_and_skips_posted_ones(reviewer_client):
    failed = make_posting(state=Posting.State.FAILED, attempts=3, last_error="timeout")
    posted = make_posting(state=Posting.State.POSTED, document_number="R000001")

    chosen = {
        "action": "retry_now",
        "index": "0",
        "_selected_action": [failed.pk, posted.pk],
    }
    preview = reviewer_client.post(url("posting_changelist"), chosen)

    # First what would be sent, with nothing sent yet.
    page = preview.content.decode()
    assert failed.transaction.transaction_id in page
    assert "Confirm: send 1 receipt again" in page
    assert "Not sent again (already posted, or being sent now)" in page
    failed.refresh_from_db()
    assert failed.state == Posting.State.FAILED

    response = reviewer_client.post(
        url("posting_changelist"),
        {"action": "retry_now", "confirm": "1", "_selected_action": [failed.pk]},
        follow=True,
    )

    failed.refresh_from_db()
    posted.refresh_from_db()
    assert failed.state == Posting.State.PENDING
    assert posted.state == Posting.State.POSTED
    assert posted.document_number == "R000001"
    messages = [str(m) for m in response.context["messages"]]
    assert messages == [
        "Queued 1 posting to be sent again; skipped 0 already posted or in progress."
    ]


def test_postings_are_read_only_apart_from_the_action(reviewer_client):
    posting = make_posting(state=Posting.State.FAILED)

    response = reviewer_client.post(
        url("posting_change", posting.pk), {"state": "posted"}
    )

    assert response.status_code == 403
    posting.refresh_from_db()
    assert posting.state == Posting.State.FAILED


# The review queue --------------------------------------------------------------------------


def test_the_review_queue_shows_open_items_by_default(reviewer_client):
    open_item = make_review_item(reason="No open invoice INV-9 for ACME")
    make_review_item(state=ReviewItem.State.DISMISSED, reason="Duplicate test charge")

    default = reviewer_client.get(url("reviewitem_changelist"))
    everything = reviewer_client.get(url("reviewitem_changelist"), {"state": "all"})

    assert list(default.context["cl"].result_list) == [open_item]
    assert "No open invoice INV-9 for ACME" in default.text
    assert open_item.transaction.transaction_id in default.text
    assert everything.context["cl"].result_count == 2


def test_a_reviewer_can_assign_but_not_rewrite_an_item(reviewer_client):
    item = make_review_item(reason="Original reason")
    colleague = make_user(group=FINANCE_REVIEWER)

    response = reviewer_client.post(
        url("reviewitem_change", item.pk),
        {
            "assigned_to": colleague.pk,
            "reason": "Rewritten",
            "kind": "dead",
            "state": "resolved",
            "decisions-TOTAL_FORMS": "0",
            "decisions-INITIAL_FORMS": "0",
        },
    )

    assert response.status_code == 302
    item.refresh_from_db()
    assert item.assigned_to == colleague
    assert item.reason == "Original reason"
    assert item.kind == ReviewItem.Kind.UNMATCHED
    assert item.state == ReviewItem.State.OPEN


def test_apply_to_an_invoice_asks_for_the_invoice_number_first(reviewer_client):
    item = make_review_item(reason="Invoice INV-77 was not found in Sage Pro.")

    response = reviewer_client.post(
        url("reviewitem_changelist"),
        {"action": "apply_to_invoice", "index": "0", "_selected_action": [item.pk]},
    )

    assert response.status_code == 200
    assert (
        response.templates[0].name == "admin/integrations/reviewitem/action_form.html"
    )
    assert 'name="invno"' in response.text
    assert "Invoice INV-77 was not found in Sage Pro." in response.text
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_apply_to_an_invoice_resolves_the_item_and_posts_the_receipt(
    reviewer_client, paytrace_conn, sage, http, run_tasks
):
    invno = sage.seed_invoice("ACME", "400.00")
    txn = make_transaction(
        paytrace_conn, amount=Decimal("150.25"), customer_reference="ACME"
    )
    item = make_review_item(txn, reason="Invoice INV-X was not found in Sage Pro.")

    response = confirmed(
        reviewer_client,
        url("reviewitem_changelist"),
        {
            "action": "apply_to_invoice",
            "_selected_action": [item.pk],
            "confirm": "yes",
            "invno": invno,
        },
        follow=True,
    )
    run_tasks()

    messages = [str(m) for m in response.context["messages"]]
    assert messages == [f"Applied 1 payment to invoice {invno}."]
    item.refresh_from_db()
    assert item.state == ReviewItem.State.RESOLVED
    assert item.decisions.get().action == "apply"
    posting = txn.postings.get()
    assert posting.state == Posting.State.POSTED
    assert posting.document_number


def test_apply_to_an_unknown_invoice_reports_why(
    reviewer_client, paytrace_conn, sage, http
):
    txn = make_transaction(paytrace_conn)
    item = make_review_item(txn)

    response = reviewer_client.post(
        url("reviewitem_changelist"),
        {
            "action": "apply_to_invoice",
            "_selected_action": [item.pk],
            "confirm": "yes",
            "invno": "0099999",
        },
        follow=True,
    )

    # The outcome page says why, for that item, and offers nothing to confirm.
    assert "Not done:" in response.text
    assert "0099999" in response.text
    assert "Confirm: apply" not in response.text
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN
    assert not txn.postings.exists()


def test_a_programming_error_in_a_decision_is_not_shown_as_a_refusal(
    reviewer_client, monkeypatch
):
    # Only review.ReviewError is a reviewer-facing refusal; anything else is a bug
    # and must surface as one, never as a message on the page.
    def broken(*args, **kwargs):
        raise ValueError("a bug, not a refusal")

    monkeypatch.setattr(review, "dismiss_review_item", broken)
    item = make_review_item()
    action = {"action": "dismiss", "_selected_action": [item.pk], "confirm": "yes"}

    with pytest.raises(ValueError, match="a bug"):
        confirmed(
            reviewer_client, url("reviewitem_changelist"), action | {"reason": "x"}
        )
    with pytest.raises(ValueError, match="a bug"):
        confirmed(
            reviewer_client,
            url("reviewitem_decide", item.pk, "dismiss"),
            {"reason": "x"},
        )


def test_apply_without_an_invoice_number_shows_the_form_again(reviewer_client):
    item = make_review_item()

    response = reviewer_client.post(
        url("reviewitem_changelist"),
        {"action": "apply_to_invoice", "_selected_action": [item.pk], "confirm": "yes"},
    )

    assert response.status_code == 200
    assert "This field is required." in response.text
    item.refresh_from_db()
    assert item.state == ReviewItem.State.OPEN


def test_dismiss_needs_a_reason_and_records_the_decision(reviewer_client):
    item = make_review_item()
    action = {"action": "dismiss", "_selected_action": [item.pk], "confirm": "yes"}

    without = reviewer_client.post(url("reviewitem_changelist"), action)
    with_reason = confirmed(
        reviewer_client,
        url("reviewitem_changelist"),
        action | {"reason": "Test charge, refunded"},
        follow=True,
    )

    assert "This field is required." in without.text
    assert [str(m) for m in with_reason.context["messages"]] == [
        "Dismissed 1 review item."
    ]
    item.refresh_from_db()
    assert item.state == ReviewItem.State.DISMISSED
    decision = item.decisions.get()
    assert decision.action == "dismiss"
    page = reviewer_client.get(url("reviewitem_change", item.pk))
    assert "Test charge, refunded" in page.text


def test_assign_to_me_makes_the_reviewer_the_assignee(reviewer_client, reviewer):
    item = make_review_item()

    reviewer_client.post(
        url("reviewitem_changelist"),
        {"action": "assign_to_me", "index": "0", "_selected_action": [item.pk]},
    )

    item.refresh_from_db()
    assert item.assigned_to == reviewer


def test_a_view_only_user_gets_no_actions(client):
    user = make_user()
    user.user_permissions.add(*Permission.objects.filter(codename="view_reviewitem"))
    client.force_login(user)
    make_review_item()

    response = client.get(url("reviewitem_changelist"))

    assert response.status_code == 200
    assert "apply_to_invoice" not in response.text


# Status maps -------------------------------------------------------------------------------


def test_integration_admins_edit_status_maps_in_the_list(integration_admin_client):
    make_connection()

    response = integration_admin_client.get(
        reverse("admin:mappings_statusmap_changelist")
    )

    assert response.status_code == 200
    assert response.context["cl"].list_editable
    assert "→ Paid/post_receipt" in response.text


def test_reviewers_do_not_see_status_maps(reviewer_client):
    response = reviewer_client.get(reverse("admin:mappings_statusmap_changelist"))

    assert response.status_code == 403


# Small helpers -----------------------------------------------------------------------------


def test_format_age_rounds_down_to_a_readable_unit():
    now = timezone.now()

    assert format_age(now - timedelta(minutes=12), now) == "12 min"
    assert format_age(now - timedelta(hours=3, minutes=59), now) == "3 h"
    assert format_age(now - timedelta(days=4, hours=2), now) == "4 d"


def test_a_sage_pro_company_reached_through_an_agent_needs_no_url(
    integration_admin_client,
):
    sage = make_connection(kind=Connection.Kind.SAGEPRO, password=API_KEY)
    data = connection_form_data(sage, base_url="", transport="agent")

    response = integration_admin_client.post(url("connection_change", sage.pk), data)

    assert response.status_code == 302, response.context and response.context["errors"]
    sage.refresh_from_db()
    assert (sage.transport, sage.base_url) == ("agent", "")


@pytest.mark.parametrize(
    ("kind", "transport", "field", "message"),
    [
        ("sagepro", "direct", "base_url", "Enter the URL this connection calls"),
        ("paytrace", "direct", "base_url", "Enter the URL this connection calls"),
    ],
)
def test_a_connection_without_its_url_or_with_an_agent_it_cannot_use_is_refused(
    integration_admin_client, kind, transport, field, message
):
    connection = make_connection(kind=kind, password=API_KEY)
    base_url = "" if field == "base_url" else connection.base_url
    data = connection_form_data(connection, base_url=base_url, transport=transport)

    response = integration_admin_client.post(
        url("connection_change", connection.pk), data
    )

    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert message in errors[field][0], errors
    connection.refresh_from_db()
    assert connection.transport == "direct" and connection.base_url


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
