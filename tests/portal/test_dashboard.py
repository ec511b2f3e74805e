"""The cash-position dashboard, and pages whose query count must not grow with rows."""

from datetime import datetime, time, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from integrations.models import (
    Connection,
    Event,
    GatewayStatus,
    PaymentStatus,
    Posting,
    ReviewItem,
    SyncRun,
)
from integrations.reconciliation import business_today
from portal.dashboard import nice_ceiling
from tests.factories import (
    make_connection,
    make_event,
    make_posting,
    make_review_item,
    make_transaction,
    make_user,
)

pytestmark = pytest.mark.django_db


def noon(days_ago):
    day = business_today() - timedelta(days=days_ago)
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(settings.BUSINESS_TIME_ZONE))


def day_row(response, days_ago):
    day = business_today() - timedelta(days=days_ago)
    return next(row for row in response.context["days"] if row["day"] == day)


@pytest.fixture
def paytrace():
    return make_connection(name="PayTrace production")


def test_it_adds_up_each_series_per_business_day(admin_client, paytrace):
    # Two days ago: two approved sales, one settled yesterday; one declined.
    make_transaction(
        paytrace,
        amount=Decimal("100.00"),
        created_at=noon(2),
        settled_at=noon(1),
        gateway_status=GatewayStatus.SETTLED,
    )
    make_transaction(
        paytrace,
        amount=Decimal("20.50"),
        created_at=noon(2),
        gateway_status=GatewayStatus.PENDING_SETTLEMENT,
    )
    make_transaction(
        paytrace,
        amount=Decimal("999.00"),
        created_at=noon(2),
        gateway_status=GatewayStatus.DECLINED,
        mapped_status=PaymentStatus.FAILED,
    )
    # Yesterday: a refund of 15.00, and an unmatched sale waiting in review.
    make_transaction(
        paytrace,
        transaction_type="REFUND",
        amount=Decimal("15.00"),
        created_at=noon(1),
        status_changed_at=noon(1),
        gateway_status=GatewayStatus.REFUNDED,
        mapped_status=PaymentStatus.REFUNDED,
    )
    stuck = make_transaction(
        paytrace,
        amount=Decimal("12.30"),
        created_at=noon(1),
        gateway_status=GatewayStatus.APPROVED,
    )
    make_review_item(stuck)
    # 40 days ago: outside the window.
    make_transaction(
        paytrace, amount=Decimal("5000.00"), created_at=noon(40), settled_at=noon(39)
    )

    response = admin_client.get("/dashboard/")

    assert response.status_code == 200
    assert len(response.context["days"]) == 30
    assert response.context["days"][-1]["day"] == business_today()
    two_days_ago = day_row(response, 2)
    assert two_days_ago["approved"] == Decimal("120.50")
    assert two_days_ago["settled"] == Decimal("0.00")
    yesterday = day_row(response, 1)
    assert yesterday["approved"] == Decimal("12.30")
    assert yesterday["settled"] == Decimal("100.00")
    assert yesterday["refunded"] == Decimal("15.00")
    assert yesterday["in_review"] == Decimal("12.30")
    assert response.context["totals"] == {
        "approved": Decimal("132.80"),
        "settled": Decimal("100.00"),
        "refunded": Decimal("15.00"),
        "in_review": Decimal("12.30"),
    }
    body = response.content.decode()
    assert "<svg" in body
    assert "Approved $120.50" in body
    totals_row = body.split('id="dash-totals-row"')[1].split("</tr>")[0]
    assert "$132.80" in totals_row and "$12.30" in totals_row
    # 12.30 of 132.80 (9 %) waits in review: under the 10 % that warns.
    assert response.context["warnings"] == []


def test_it_reports_the_pipelines_health(admin_client, paytrace):
    now = timezone.now()
    make_event(paytrace, state=Event.State.PROCESSED)
    make_event(paytrace, state=Event.State.PROCESSED)
    make_event(
        paytrace, state=Event.State.QUEUED, received_at=now - timedelta(minutes=7)
    )
    make_event(paytrace, state=Event.State.FAILED, received_at=now - timedelta(hours=3))
    make_event(paytrace, state=Event.State.DEAD, received_at=now - timedelta(days=9))
    make_posting(make_transaction(paytrace), state=Posting.State.DEAD)
    make_posting(make_transaction(paytrace), state=Posting.State.POSTED)
    make_review_item(kind=ReviewItem.Kind.UNMATCHED)
    make_review_item(kind=ReviewItem.Kind.UNMATCHED)
    make_review_item(kind=ReviewItem.Kind.DEAD)
    make_review_item(kind=ReviewItem.Kind.DEAD, state=ReviewItem.State.RESOLVED)
    SyncRun.objects.create(
        connection=paytrace,
        kind=SyncRun.Kind.POLL,
        state=SyncRun.State.SUCCEEDED,
        finished_at=now - timedelta(minutes=20),
    )
    SyncRun.objects.create(
        connection=paytrace,
        kind=SyncRun.Kind.POLL,
        state=SyncRun.State.FAILED,
        finished_at=now - timedelta(minutes=5),
    )

    response = admin_client.get("/dashboard/")

    health = response.context["health"]
    events = {label: n for label, n, _ in health["events"]}
    assert events["Processed"] == 2
    assert events["Queued"] == 1
    assert events["Failed (will retry)"] == 1
    assert events["Dead"] == 1
    assert health["oldest_unprocessed_age"] == "3 h"  # the dead one is not waiting
    assert health["dead_postings"] == 1
    assert health["dead_events"] == 1
    assert {label: n for label, n, _ in health["review"]} == {
        "No matching open invoice": 2,
        "Posting gave up after retries": 1,
    }
    assert health["last_poll_age"] == "20 min"
    body = response.content.decode()
    assert "/admin/integrations/posting/?state__exact=dead" in body
    assert "20 min ago" in body


def test_it_warns_when_review_or_dead_letters_hold_too_much_of_the_cash(
    admin_client, paytrace, settings
):
    settings.DASHBOARD_REVIEW_SHARE_WARN = 0.10
    settings.DASHBOARD_DEAD_SHARE_WARN = 0.02
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)
    make_transaction(paytrace, amount=Decimal("600.00"), created_at=noon(3))
    make_review_item(
        make_transaction(paytrace, amount=Decimal("300.00"), created_at=noon(2))
    )
    make_posting(
        make_transaction(paytrace, amount=Decimal("100.00"), created_at=noon(1)),
        sagepro=sagepro,
        state=Posting.State.DEAD,
    )

    response = admin_client.get("/dashboard/")

    texts = [w["text"] for w in response.context["warnings"]]
    assert texts == [
        "30% of the period's approved cash ($300.00 of $1,000.00) is waiting in "
        "review; the limit is 10%.",
        "10% of the period's approved cash ($100.00 of $1,000.00) is in dead "
        "letters; the limit is 2%.",
    ]
    body = response.content.decode()
    assert body.count('class="ws-warn dash-warning"') == 2
    assert '<a href="/admin/integrations/reviewitem/?state=open">See the list' in body

    settings.DASHBOARD_REVIEW_SHARE_WARN = 0.50
    settings.DASHBOARD_DEAD_SHARE_WARN = 0.50
    assert admin_client.get("/dashboard/").context["warnings"] == []


def test_its_figures_link_to_the_lists_behind_them(admin_client, paytrace):
    make_transaction(paytrace, amount=Decimal("40.00"), created_at=noon(2))
    old = make_transaction(paytrace, amount=Decimal("9.00"), created_at=noon(45))
    make_review_item(old, kind=ReviewItem.Kind.VALIDATION)
    make_event(paytrace, state=Event.State.DEAD)

    response = admin_client.get("/dashboard/")

    approved = response.context["total_links"]["approved"]
    listed = admin_client.get(approved)
    assert listed.status_code == 200
    assert listed.context["cl"].result_count == 1  # the 45-day-old one is outside
    kinds = {label: url for label, _, url in response.context["health"]["review"]}
    validation = admin_client.get(kinds["Needs correcting before posting"])
    assert validation.context["cl"].result_count == 1
    dead_events = admin_client.get(response.context["health"]["dead_events_url"])
    assert dead_events.context["cl"].result_count == 1


def test_a_reviewer_sees_no_link_to_a_list_they_cannot_open(client, paytrace):
    from integrations.roles import FINANCE_REVIEWER

    client.force_login(make_user(group=FINANCE_REVIEWER))
    SyncRun.objects.create(
        connection=paytrace,
        kind=SyncRun.Kind.POLL,
        state=SyncRun.State.SUCCEEDED,
        finished_at=timezone.now(),
    )

    response = client.get("/dashboard/")

    assert response.status_code == 200
    assert response.context["health"]["polls_url"] is None
    assert "/admin/integrations/syncrun/" not in response.content.decode()
    assert response.context["health"]["review_url"]


def test_last_poll_says_never_when_no_poll_succeeded(admin_client, paytrace):
    response = admin_client.get("/dashboard/")

    assert response.context["health"]["last_poll_age"] == "never"
    assert 'id="dash-last-poll">never<' in response.content.decode()


def test_it_is_for_staff_only(client):
    assert client.get("/dashboard/").status_code == 302
    make_user(username="outsider", is_staff=False, password="pw-12345-abc")
    client.login(username="outsider", password="pw-12345-abc")
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/admin/login/")


def test_the_admin_index_links_to_it(admin_client):
    assert 'href="/dashboard/"' in admin_client.get("/admin/").content.decode()


@pytest.mark.parametrize(
    ("value", "top"),
    [
        ("0", "100"),
        ("7", "10"),
        ("120.50", "200"),
        ("2400", "2500"),
        ("51000", "100000"),
    ],
)
def test_the_chart_top_is_a_round_number(value, top):
    assert nice_ceiling(Decimal(value)) == Decimal(top)


# --- query counts do not grow with rows ---------------------------------------------------


def seed_rows(count, paytrace, sagepro):
    for n in range(count):
        txn = make_transaction(paytrace, created_at=noon(n % 30))
        make_posting(txn, sagepro=sagepro, state=Posting.State.POSTED)
        make_review_item(txn, assigned_to=None)
        make_event(paytrace, state=Event.State.PROCESSED)


def count_queries(client, url):
    # A first request fills what later requests reuse (the content-type cache, which
    # an earlier test's database flush may have emptied); it is not what is measured.
    client.get(url)
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    "url",
    [
        "/admin/integrations/reviewitem/",
        "/admin/integrations/paymenttransaction/",
        "/dashboard/",
    ],
)
def test_pages_run_as_many_queries_for_30_rows_as_for_3(admin_client, url):
    sagepro = make_connection(kind=Connection.Kind.SAGEPRO)
    paytrace = make_connection(sagepro=sagepro)
    seed_rows(3, paytrace, sagepro)
    few = count_queries(admin_client, url)

    seed_rows(27, paytrace, sagepro)
    many = count_queries(admin_client, url)

    assert many == few, f"{url}: {few} queries for 3 rows, {many} for 30"
