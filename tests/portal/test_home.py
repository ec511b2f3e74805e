"""The reviewer's home (the admin index), the navigation grouped by job, the styled
403 and the favicon."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import Permission
from django.test import Client
from django.utils import timezone

from integrations.models import Posting, ReviewItem
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from tests.factories import (
    make_connection,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = pytest.mark.django_db
HOURS = timedelta(hours=1)


def signed_in(group=None, **fields):
    browser = Client()
    browser.force_login(make_user(group=group, **fields))
    return browser


@pytest.fixture
def reviewer():
    return signed_in(FINANCE_REVIEWER)


@pytest.fixture
def queue(settings):
    """Open items of three kinds and ages, a resolved one, a dead letter, and today's
    payments: received, posted, sent to review."""
    settings.REVIEW_SLA_HOURS = 24
    settings.REVIEW_SLA_HOURS_BY_KIND = {"dead": 4}
    now = timezone.now()
    paytrace = make_connection()
    sagepro = make_connection(kind="sagepro")

    def item(kind, hours_ago, amount="10.00", **fields):
        txn = make_transaction(
            paytrace, amount=Decimal(amount), first_seen_at=now - hours_ago * HOURS
        )
        return make_review_item(
            txn, kind=kind, created_at=now - hours_ago * HOURS, **fields
        )

    item(ReviewItem.Kind.UNMATCHED, 2, "100.00")
    item(ReviewItem.Kind.UNMATCHED, 30, "50.00")  # past the 24 h SLA
    item(ReviewItem.Kind.UNMATCHED, 100, "25.00")  # past it, and over 3 days
    item(ReviewItem.Kind.VALIDATION, 200, "7.00")  # the oldest: listed first
    item(ReviewItem.Kind.DEAD, 5, "3.00")  # past the 4 h SLA of its kind
    item(ReviewItem.Kind.UNMATCHED, 500, state=ReviewItem.State.RESOLVED)
    make_posting(
        make_transaction(paytrace, amount=Decimal("60.00")),
        sagepro=sagepro,
        state=Posting.State.DEAD,
    )
    make_posting(
        make_transaction(paytrace, amount=Decimal("80.00")),
        sagepro=sagepro,
        state=Posting.State.POSTED,
    )
    return now


def count_behind(browser, url):
    response = browser.get(url)
    assert response.status_code == 200, url
    return response.context["cl"].result_count


def test_the_home_lists_open_items_by_kind_oldest_first_with_their_ages(
    reviewer, queue
):
    response = reviewer.get("/admin/")

    assert response.status_code == 200
    rows = response.context["attention"]["by_kind"]
    assert [r["kind"] for r in rows] == ["validation", "unmatched", "dead"]
    unmatched = rows[1]
    assert unmatched["count"] == 3
    assert unmatched["amount"] == Decimal("175.00")
    assert [a["count"] for a in unmatched["ages"]] == [1, 1, 1]
    assert count_behind(reviewer, unmatched["url"]) == 3
    for age in unmatched["ages"]:
        assert count_behind(reviewer, age["url"]) == 1
    body = response.content.decode()
    assert "$175.00" in body
    assert "What needs attention" in body


def test_sla_breaches_use_each_kinds_sla_and_link_to_the_late_items(reviewer, queue):
    response = reviewer.get("/admin/")

    sla = {f.label: f for f in response.context["attention"]["sla"]}
    assert set(sla) == {
        "No matching open invoice (SLA 24 h)",
        "Needs correcting before posting (SLA 24 h)",
        "Posting gave up after retries (SLA 4 h)",
    }
    late_unmatched = sla["No matching open invoice (SLA 24 h)"]
    assert late_unmatched.count == 2
    assert count_behind(reviewer, late_unmatched.url) == 2
    assert (
        count_behind(reviewer, sla["Posting gave up after retries (SLA 4 h)"].url) == 1
    )


def test_dead_letters_and_todays_totals_match_the_lists_behind_them(reviewer, queue):
    attention = reviewer.get("/admin/").context["attention"]

    dead = attention["dead"]
    assert (dead.count, dead.amount) == (1, Decimal("60.00"))
    assert count_behind(reviewer, dead.url) == 1
    today = {f.label: f for f in attention["today"]}
    # The items opened 2 and 5 hours ago may fall on yesterday (business day);
    # each figure must agree with its list, whichever day that is.
    for label in ("Received", "Posted to Sage Pro", "Sent to review"):
        assert count_behind(reviewer, today[label].url) == today[label].count, label
    assert today["Posted to Sage Pro"].count == 1
    assert today["Posted to Sage Pro"].amount == Decimal("80.00")


def test_a_reviewer_sees_no_pipeline_panel_and_no_system_group(reviewer, queue):
    response = reviewer.get("/admin/")

    assert response.context["attention"]["pipeline"] is None
    groups = [app["name"] for app in response.context["app_list"]]
    assert groups == ["Review", "Payments", "Month-end", "Configuration"]
    body = response.content.decode()
    assert "/admin/django_q/" not in body
    assert "/admin/sandbox_sagepro/" not in body
    # The System tables stay out of reach by their own URL too.
    assert reviewer.get("/admin/django_q/").status_code in (403, 404)


def test_a_superuser_sees_the_system_group_and_the_pipeline(queue):
    boss = signed_in(is_superuser=True)

    response = boss.get("/admin/")

    groups = {app["name"]: app for app in response.context["app_list"]}
    assert list(groups) == [
        "Review",
        "Payments",
        "Month-end",
        "Configuration",
        "System",
    ]
    system = {m["object_name"] for m in groups["System"]["models"]}
    assert {"Schedule", "OrmQ", "CashReceipt", "SyncRun"} <= system
    assert response.context["attention"]["pipeline"] is not None
    assert 'id="home-pipeline"' in response.content.decode()


def test_an_integration_admin_sees_pipeline_health_but_not_the_queue_tables(queue):
    admin_user = signed_in(INTEGRATION_ADMIN)

    response = admin_user.get("/admin/")

    assert response.context["attention"]["pipeline"] is not None
    groups = {app["name"]: app for app in response.context["app_list"]}
    assert "Connections" in {str(m["name"]) for m in groups["Configuration"]["models"]}
    system = {m["object_name"] for m in groups["System"]["models"]}
    assert "SyncRun" in system and "Schedule" not in system


def test_a_staff_member_with_the_operator_permission_sees_the_system_tables():
    operator = make_user()
    operator.user_permissions.add(
        Permission.objects.get(codename="operate_system"),
        Permission.objects.get(codename="view_schedule"),
    )
    browser = Client()
    browser.force_login(operator)

    groups = {a["name"]: a for a in browser.get("/admin/").context["app_list"]}

    assert [m["object_name"] for m in groups["System"]["models"]] == ["Schedule"]


def test_every_admin_page_names_the_business_time_zone(reviewer, settings):
    body = reviewer.get("/admin/").content.decode()

    assert f"Times in {settings.BUSINESS_TIME_ZONE}" in body


def test_a_forbidden_page_says_what_is_missing_and_who_to_ask():
    make_user(username="carol", is_superuser=True)
    browser = signed_in()

    response = browser.get("/admin/integrations/connection/")

    assert response.status_code == 403
    body = response.content.decode()
    assert "view connections" in body
    assert "carol" in body
    assert "Payments portal" in body  # inside the admin's look
    assert "Times in" in body


def test_a_reviewer_opens_connections_and_month_end_without_a_403(reviewer):
    paytrace = make_connection()
    for url in (
        "/admin/integrations/connection/",
        f"/admin/integrations/connection/{paytrace.pk}/change/",
        "/admin/integrations/reconciliationrun/",
        "/admin/integrations/reconciliationline/",
        "/admin/integrations/settlementbatch/",
    ):
        assert reviewer.get(url).status_code == 200, url


def test_the_favicon_answers(client):
    response = client.get("/favicon.ico")

    assert response.status_code == 200
    assert response["Content-Type"] == "image/x-icon"
    assert b"".join(response.streaming_content)[:4] == b"\x00\x00\x01\x00"


def test_the_home_runs_as_many_queries_for_30_items_as_for_3(reviewer):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    paytrace = make_connection()
    sagepro = make_connection(kind="sagepro")

    def seed(count):
        for n in range(count):
            txn = make_transaction(paytrace)
            make_review_item(
                txn,
                kind=list(ReviewItem.Kind.values)[n % 4],
                created_at=timezone.now() - n * 7 * HOURS,
            )
            make_posting(txn, sagepro=sagepro, state=Posting.State.DEAD)

    def queries():
        reviewer.get("/admin/")  # warms the caches a flushed database leaves cold
        with CaptureQueriesContext(connection) as captured:
            assert reviewer.get("/admin/").status_code == 200
        return len(captured)

    seed(3)
    few = queries()
    seed(27)

    assert queries() == few
