"""Reconciliation: every PayTrace transaction in exactly one bucket, totals tied out to
PayTrace's settlement batches, Sage Pro receipts without a transaction listed."""

import csv
import json
from datetime import datetime, time, timedelta
from decimal import Decimal
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from integrations import reconciliation
from integrations.models import (
    Connection,
    PaymentTransaction,
    Posting,
    ReconciliationLine,
    ReconciliationRun,
    SettlementBatch,
)
from integrations.reconciliation import Bucket, bucket_for
from integrations.sandbox.credentials import sagepro_headers
from integrations.sandbox.sagepro import seed as sage_seed
from tests.webhooks import event_body, paytrace_record, paytrace_time, post_event, sign

pytestmark = pytest.mark.django_db
SLUG = "paytrace-sandbox"
SAGE_API = "/sandbox/sagepro/api/v1"


def auth(settings):
    return {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}


def set_fault(client, mode):
    response = client.post(
        f"{SAGE_API}/_faults",
        {"mode": mode, "seconds": 600},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    assert response.status_code == 200, response.content


def at_noon(day):
    return datetime.combine(day, time(12), tzinfo=ZoneInfo(settings.BUSINESS_TIME_ZONE))


@pytest.fixture
def month():
    """Last month (an open Sage Pro period): first and last day."""
    first = sage_seed.month_start(-1)
    last = sage_seed.month_start(0) - timedelta(days=1)
    return first, last


@pytest.fixture
def deliver(client, paytrace_conn, secret, http, run_tasks):
    def _deliver(event_type, record):
        body = event_body(event_type, record)
        response = post_event(client, SLUG, body, sign(body, secret))
        assert response.status_code == 202, response.content
        run_tasks()
        return str(record["transaction_id"])

    return _deliver


def sale(sage, day, amount, *, invoice=None):
    invno = invoice or sage.seed_invoice("ACME", "1000.00")
    return paytrace_record(
        amount=Decimal(amount),
        invoice_id=invno,
        created={
            "through": "API",
            "at": paytrace_time(at_noon(day)),
            "by": "apiuser",
            "from_ip": "203.0.113.9",
        },
    )


def settle(deliver, record, batch, day):
    settled = {
        **record,
        "status_code": f"GB{batch}",
        "status_message": f"GB{batch}",
        "settled": paytrace_time(at_noon(day) + timedelta(hours=8)),
    }
    deliver("transaction.settled", settled)


def post_orphan_receipt(client, day, reference="999000111", amount="77.00"):
    response = client.post(
        f"{SAGE_API}/cash-receipts",
        {
            "custno": "ACME",
            "date": day.isoformat(),
            "amount": amount,
            "method": "VISA",
            "reference": reference,
            "applications": [],
        },
        content_type="application/json",
        headers={**auth(settings), "Idempotency-Key": f"hand-{reference}"},
    )
    assert response.status_code == 201, response.content
    return response.json()["receipt_no"]


@pytest.fixture
def seeded_month(client, deliver, sage, month):
    """A month of payments through the real pipeline: 3 posted (2 batches), 1
    unmatched, 1 dead, 1 pending (Sage Pro locked), 1 declined; batches recorded."""
    first, last = month
    days = [first + timedelta(days=n) for n in (1, 3, 5, 7, 9, 11, 13)]
    ids = {}
    records = {}
    for name, day, amount in [
        ("posted_a", days[0], "100.00"),
        ("posted_b", days[1], "250.25"),
        ("posted_c", days[2], "40.10"),
    ]:
        records[name] = sale(sage, day, amount)
        ids[name] = deliver("transaction.approved", records[name])
    records["unmatched"] = sale(sage, days[3], "12.30", invoice="99999999")
    ids["unmatched"] = deliver("transaction.approved", records["unmatched"])

    set_fault(client, "locked")  # posts are refused with 423: failed, will retry
    records["dead"] = sale(sage, days[4], "60.00")
    ids["dead"] = deliver("transaction.approved", records["dead"])
    records["pending"] = sale(sage, days[5], "33.00")
    ids["pending"] = deliver("transaction.approved", records["pending"])
    set_fault(client, "none")
    Posting.objects.filter(transaction__transaction_id=ids["dead"]).update(
        state=Posting.State.DEAD, last_error="Sage Pro stayed locked"
    )

    declined = sale(sage, days[6], "999.00")
    declined.update(status_code="N", status_message="Declined", approval_code="")
    ids["declined"] = deliver("transaction.declined", declined)

    settle(deliver, records["posted_a"], "101", days[1])
    settle(deliver, records["posted_b"], "101", days[1])
    settle(deliver, records["unmatched"], "101", days[1])
    settle(deliver, records["posted_c"], "102", days[2])
    paytrace = Connection.objects.get(slug=SLUG)
    SettlementBatch.objects.create(
        connection=paytrace,
        batch_number="101",
        settled_at=at_noon(days[1]) + timedelta(hours=9),
        transaction_count=3,
        net_amount=Decimal("362.55"),
        sales_count=3,
        sales_amount=Decimal("362.55"),
        transaction_ids=[ids["posted_a"], ids["posted_b"], ids["unmatched"]],
    )
    SettlementBatch.objects.create(
        connection=paytrace,
        batch_number="102",
        settled_at=at_noon(days[2]) + timedelta(hours=9),
        transaction_count=1,
        net_amount=Decimal("40.10"),
        sales_count=1,
        sales_amount=Decimal("40.10"),
        transaction_ids=[ids["posted_c"]],
    )
    return paytrace, ids


def buckets_by_id(run):
    return dict(
        run.lines.exclude(bucket=Bucket.ORPHAN).values_list("transaction_id", "bucket")
    )


def test_every_transaction_of_a_seeded_month_lands_in_one_bucket_and_ties_out(
    seeded_month, month
):
    paytrace, ids = seeded_month

    run = reconciliation.reconcile(paytrace, *month)

    assert run.state == ReconciliationRun.State.DONE
    assert buckets_by_id(run) == {
        ids["posted_a"]: Bucket.POSTED,
        ids["posted_b"]: Bucket.POSTED,
        ids["posted_c"]: Bucket.POSTED,
        ids["unmatched"]: Bucket.IN_REVIEW,
        ids["dead"]: Bucket.DEAD,
        ids["pending"]: Bucket.PENDING,
        ids["declined"]: Bucket.NOT_NEEDED,
    }
    assert run.lines.count() == PaymentTransaction.objects.count() == 7
    assert run.buckets[Bucket.POSTED] == {"count": 3, "amount": "390.35"}
    assert run.buckets[Bucket.IN_REVIEW] == {"count": 1, "amount": "12.30"}
    assert run.buckets[Bucket.DEAD] == {"count": 1, "amount": "60.00"}
    assert run.buckets[Bucket.PENDING] == {"count": 1, "amount": "33.00"}
    assert run.buckets[Bucket.NOT_NEEDED] == {"count": 1, "amount": "999.00"}
    assert run.buckets[Bucket.MISSING] == {"count": 0, "amount": "0.00"}
    assert run.buckets[Bucket.ORPHAN] == {"count": 0, "amount": "0.00"}
    assert run.ties_out is True
    assert run.batch_totals["101"]["expected_amount"] == "362.55"
    assert run.batch_totals["101"]["actual_amount"] == "362.55"
    assert run.batch_totals["102"]["difference"] == "0.00"
    posted_line = run.lines.get(transaction_id=ids["posted_a"])
    assert posted_line.receipt_no
    assert posted_line.payment.transaction_id == ids["posted_a"]


def test_a_receipt_deleted_in_sage_pro_shows_up_as_missing(
    seeded_month, month, client, settings
):
    paytrace, ids = seeded_month
    posting = Posting.objects.get(transaction__transaction_id=ids["posted_b"])

    response = client.delete(
        f"{SAGE_API}/cash-receipts/{posting.document_number}", headers=auth(settings)
    )
    assert response.status_code == 200, response.content
    run = reconciliation.reconcile(paytrace, *month)

    assert buckets_by_id(run)[ids["posted_b"]] == Bucket.MISSING
    line = run.lines.get(transaction_id=ids["posted_b"])
    assert posting.document_number in line.detail
    assert run.buckets[Bucket.MISSING] == {"count": 1, "amount": "250.25"}
    assert run.buckets[Bucket.POSTED]["count"] == 2


def test_a_sage_pro_receipt_naming_an_unknown_paytrace_transaction_is_an_orphan(
    seeded_month, month, client
):
    paytrace, ids = seeded_month
    receipt_no = post_orphan_receipt(client, month[0] + timedelta(days=20))
    # A receipt typed by hand with a non-PayTrace reference is not an orphan.
    post_orphan_receipt(client, month[0] + timedelta(days=20), reference="CHECK 1234")

    run = reconciliation.reconcile(paytrace, *month)

    orphan = run.lines.get(bucket=Bucket.ORPHAN)
    assert orphan.transaction_id == "999000111"
    assert orphan.receipt_no == receipt_no
    assert orphan.amount == Decimal("77.00")
    assert orphan.payment is None
    assert run.buckets[Bucket.ORPHAN] == {"count": 1, "amount": "77.00"}


def test_a_batch_total_that_differs_does_not_tie_out_and_says_by_how_much(
    seeded_month, month
):
    paytrace, ids = seeded_month
    SettlementBatch.objects.filter(batch_number="101").update(
        net_amount=Decimal("400.00"), transaction_ids=[ids["posted_a"], "555"]
    )

    run = reconciliation.reconcile(paytrace, *month)

    assert run.ties_out is False
    entry = run.batch_totals["101"]
    assert entry["expected_amount"] == "400.00"
    assert entry["actual_amount"] == "362.55"
    assert entry["difference"] == "-37.45"
    assert entry["ties_out"] is False
    assert entry["not_in_portal"] == ["555"]
    assert run.batch_totals["102"]["ties_out"] is True


def test_without_batch_data_ties_out_is_unknown(seeded_month, month):
    paytrace, _ = seeded_month
    SettlementBatch.objects.all().delete()

    run = reconciliation.reconcile(paytrace, *month)

    assert run.ties_out is None
    assert run.batch_totals["101"]["expected_amount"] is None
    assert run.batch_totals["101"]["actual_amount"] == "362.55"


def test_only_transactions_created_in_the_range_are_reconciled(seeded_month, month):
    paytrace, ids = seeded_month
    first, _ = month
    # posted_a was created on day 2 of the month, posted_b on day 4.
    run = reconciliation.reconcile(paytrace, first, first + timedelta(days=2))

    assert buckets_by_id(run) == {ids["posted_a"]: Bucket.POSTED}


def test_reconcile_json_prints_buckets_and_one_line_per_transaction(
    seeded_month, month, client
):
    paytrace, ids = seeded_month
    post_orphan_receipt(client, month[1])
    out, err = StringIO(), StringIO()

    call_command(
        "reconcile",
        "--from",
        month[0].isoformat(),
        "--to",
        month[1].isoformat(),
        "--json",
        stdout=out,
        stderr=err,
    )

    data = json.loads(out.getvalue())
    assert set(data["buckets"]) == set(Bucket.values) | set(
        reconciliation.EXTRA_BUCKETS
    )
    assert data["buckets"]["posted"] == {"count": 3, "amount": "390.35"}
    assert data["buckets"]["orphan_receipt"] == {"count": 1, "amount": "77.00"}
    by_id = {line["transaction_id"]: line["bucket"] for line in data["lines"]}
    assert len(data["lines"]) == 8
    assert by_id[ids["dead"]] == "dead"
    assert by_id["999000111"] == "orphan_receipt"
    assert data["ties_out"] is True
    assert "receipts in Sage Pro" in err.getvalue()
    assert ReconciliationRun.objects.get().lines.count() == 8


def test_reconcile_refuses_a_bad_date_or_an_unknown_connection(paytrace_conn):
    with pytest.raises(CommandError, match="YYYY-MM-DD"):
        call_command("reconcile", "--from", "2025-13-01", "--to", "2025-12-31")
    with pytest.raises(CommandError, match="paytrace-sandbox"):
        call_command(
            "reconcile",
            "--from",
            "2025-05-01",
            "--to",
            "2025-05-31",
            "--connection",
            "nope",
        )
    with pytest.raises(CommandError, match="swap"):
        call_command("reconcile", "--from", "2025-05-31", "--to", "2025-05-01")


def test_a_failed_run_is_stored_as_failed_without_lines(paytrace_conn, http, month):
    paytrace_conn.sagepro.base_url = "http://elsewhere.invalid/api/v1"
    paytrace_conn.sagepro.save()

    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises
        reconciliation.reconcile(paytrace_conn, *month)

    run = ReconciliationRun.objects.get()
    assert run.state == ReconciliationRun.State.FAILED
    assert run.error
    assert not ReconciliationLine.objects.exists()


def test_reconcile_yesterday_runs_each_active_paytrace_connection(
    paytrace_conn, http, sage
):
    summary = reconciliation.reconcile_yesterday()

    run = ReconciliationRun.objects.get()
    yesterday = reconciliation.business_today() - timedelta(days=1)
    assert (run.date_from, run.date_to) == (yesterday, yesterday)
    assert run.state == ReconciliationRun.State.DONE
    assert f"run {run.pk}" in summary


@pytest.mark.parametrize(
    ("needs", "state", "review", "live", "expected"),
    [
        (False, None, False, False, Bucket.NOT_NEEDED),
        (False, "posted", True, True, Bucket.IN_REVIEW),  # reversed after posting
        (True, "posted", True, True, Bucket.POSTED),  # posted beats an open review
        (True, "posted", False, False, Bucket.MISSING),
        (True, "dead", True, False, Bucket.DEAD),  # dead beats its review item
        (True, "needs_review", False, False, Bucket.IN_REVIEW),
        (True, None, True, False, Bucket.IN_REVIEW),
        (True, "failed", False, False, Bucket.PENDING),
        (True, None, False, False, Bucket.PENDING),
        (True, "in_progress", False, True, Bucket.PENDING),
    ],
)
def test_bucket_precedence(needs, state, review, live, expected):
    assert (
        bucket_for(
            needs_receipt=needs,
            posting_state=state,
            has_open_review=review,
            receipt_live=live,
        )
        == expected
    )


def test_the_sandbox_lists_receipts_by_date_a_page_at_a_time(
    seeded_month, month, paytrace_conn
):
    sage = paytrace_conn.sagepro.sage()

    receipts = sage.list_cash_receipts(*month, page_size=2)

    assert len(receipts) == 3
    assert len({r["receipt_no"] for r in receipts}) == 3
    assert all(month[0] <= r["date"] <= month[1] for r in receipts)
    assert (
        sage.list_cash_receipts(
            month[1] + timedelta(days=1), month[1] + timedelta(days=9)
        )
        == []
    )


# --- admin -------------------------------------------------------------------------------


def test_the_admin_shows_a_runs_differences_and_exports_its_lines(
    seeded_month, month, admin_client
):
    paytrace, ids = seeded_month
    SettlementBatch.objects.filter(batch_number="102").update(
        net_amount=Decimal("45.10")
    )
    run = reconciliation.reconcile(paytrace, *month)

    page = admin_client.get(f"/admin/integrations/reconciliationrun/{run.pk}/change/")
    body = page.content.decode()
    assert page.status_code == 200
    assert ids["dead"] in body and ids["pending"] in body and ids["unmatched"] in body
    assert ids["posted_a"] not in body.split("Differences")[-1]  # not a difference
    assert "-$5.00" in body
    listing = admin_client.get("/admin/integrations/reconciliationrun/")
    assert "Does NOT tie out" in listing.content.decode()

    response = admin_client.get(f"/admin/integrations/reconciliationrun/{run.pk}/csv/")
    assert response["Content-Type"] == "text/csv"
    rows = list(csv.DictReader(StringIO(b"".join(response.streaming_content).decode())))
    assert len(rows) == 7
    assert {r["transaction_id"]: r["bucket"] for r in rows}[ids["dead"]] == "dead"
    assert rows[0]["connection"] == SLUG

    action = admin_client.post(
        "/admin/integrations/reconciliationrun/",
        {"action": "export_csv", "_selected_action": [run.pk]},
    )
    assert action["Content-Type"] == "text/csv"

    lines = admin_client.get(
        f"/admin/integrations/reconciliationline/?run__id__exact={run.pk}&bucket__exact=dead"
    )
    assert ids["dead"] in lines.content.decode()
    for url in ("/admin/integrations/settlementbatch/", "/admin/integrations/syncrun/"):
        assert admin_client.get(url).status_code == 200


# --- month-end: the headline, and a run a finance reviewer starts ----------------------


def test_the_headline_splits_the_difference_into_what_explains_it(seeded_month, month):
    paytrace, ids = seeded_month

    run = reconciliation.reconcile(paytrace, *month)

    head = run.headline
    # 100.00 + 250.25 + 40.10 posted, 12.30 in review, 60.00 dead, 33.00 pending;
    # the 999.00 decline needs no receipt.
    assert head["paytrace_total"] == "495.65"
    assert head["sage_total"] == "390.35"
    assert head["difference"] == "105.30"
    assert head["explained"]["in_review"] == {"count": 1, "amount": "12.30"}
    assert head["explained"]["dead"] == {"count": 1, "amount": "60.00"}
    assert head["explained"]["pending"] == {"count": 1, "amount": "33.00"}
    assert head["explained"]["missing"] == {"count": 0, "amount": "0.00"}
    assert head["other"] == "0.00"
    # The unmatched payment settled in batch 101 but has no receipt yet.
    assert head["settled_not_posted"] == {"count": 1, "amount": "12.30"}


def test_a_deleted_receipt_and_an_orphan_receipt_are_explained_with_their_sign(
    seeded_month, month, client, settings
):
    paytrace, ids = seeded_month
    posting = Posting.objects.get(transaction__transaction_id=ids["posted_b"])
    client.delete(
        f"{SAGE_API}/cash-receipts/{posting.document_number}", headers=auth(settings)
    )
    post_orphan_receipt(client, month[0] + timedelta(days=2), amount="77.00")

    run = reconciliation.reconcile(paytrace, *month)

    head = run.headline
    assert head["sage_total"] == "217.10"  # 100.00 + 40.10 + the 77.00 orphan
    assert head["difference"] == "278.55"
    assert head["explained"]["missing"] == {"count": 1, "amount": "250.25"}
    assert head["explained"]["orphans"] == {"count": 1, "amount": "-77.00"}
    assert head["other"] == "0.00"


@pytest.fixture
def reviewer_client():
    from django.test import Client

    from integrations.roles import FINANCE_REVIEWER
    from tests.factories import make_user

    browser = Client()
    browser.force_login(make_user(group=FINANCE_REVIEWER))
    return browser


def test_a_reviewer_starts_a_run_with_the_button_sees_it_and_downloads_it(
    seeded_month,
    month,
    reviewer_client,
    run_tasks,
    django_capture_on_commit_callbacks,
):
    paytrace, ids = seeded_month
    listing = reviewer_client.get("/admin/integrations/reconciliationrun/")
    assert listing.status_code == 200
    assert "Start a month-end run" in listing.text

    form = reviewer_client.get("/admin/integrations/reconciliationrun/start/")
    assert form.status_code == 200
    # The period picker defaults to last month.
    assert f'<option value="{month[0]:%Y-%m}" selected>' in form.text

    with django_capture_on_commit_callbacks(execute=True):
        started = reviewer_client.post(
            "/admin/integrations/reconciliationrun/start/",
            {"connection": paytrace.pk, "month": f"{month[0]:%Y-%m}"},
        )
    run = ReconciliationRun.objects.get()
    assert started.status_code == 302
    assert started["Location"].endswith(f"/reconciliationrun/{run.pk}/change/")
    assert (run.date_from, run.date_to) == month
    assert run.state == ReconciliationRun.State.RUNNING

    waiting = reviewer_client.get(started["Location"])
    assert waiting.status_code == 200
    assert 'http-equiv="refresh"' in waiting.text
    assert "Waiting for a worker" in waiting.text

    run_tasks()
    run.refresh_from_db()
    assert run.state == ReconciliationRun.State.DONE
    assert run.progress.endswith("ties out")  # the last step it reported
    page = reviewer_client.get(started["Location"])
    assert 'http-equiv="refresh"' not in page.text
    assert 'id="paytrace-total">$495.65<' in page.text
    assert 'id="sage-total">$390.35<' in page.text
    assert 'id="difference">$105.30<' in page.text
    assert "Dead letters (posting gave up)" in page.text

    download = reviewer_client.get(
        f"/admin/integrations/reconciliationrun/{run.pk}/csv/"
    )
    assert download.status_code == 200
    rows = list(csv.DictReader(StringIO(b"".join(download.streaming_content).decode())))
    assert len(rows) == 7

    # The explanation links open the lines behind each figure.
    dead = reviewer_client.get(
        f"/admin/integrations/reconciliationline/?run__id__exact={run.pk}&explains=dead"
    )
    assert dead.status_code == 200
    assert ids["dead"] in dead.text and ids["pending"] not in dead.text
    # ... and everything the run's page links to opens for a reviewer (no 403).
    for url in (
        "/admin/integrations/settlementbatch/",
        f"/admin/integrations/connection/{paytrace.pk}/change/",
        f"/admin/integrations/reconciliationline/?run__id__exact={run.pk}",
    ):
        assert reviewer_client.get(url).status_code == 200, url


def test_a_range_that_ends_before_it_starts_is_refused_and_nothing_starts(
    paytrace_conn, reviewer_client
):
    response = reviewer_client.post(
        "/admin/integrations/reconciliationrun/start/",
        {
            "connection": paytrace_conn.pk,
            "date_from": "2026-11-30",
            "date_to": "2026-11-01",
        },
    )

    assert response.status_code == 200
    assert "The range ends (2026-11-01) before it starts (2026-11-30)" in response.text
    assert 'value="2026-11-30"' in response.text  # what was typed is kept
    assert not ReconciliationRun.objects.exists()


def test_someone_without_the_permission_gets_a_page_that_says_what_is_missing(
    paytrace_conn,
):
    from django.test import Client

    from tests.factories import make_user

    browser = Client()
    browser.force_login(make_user())

    response = browser.get("/admin/integrations/reconciliationrun/start/")

    assert response.status_code == 403
    assert "Can add reconciliation run" in response.text
    assert "Payments portal" in response.text  # inside the admin's look


def test_the_month_end_task_is_safe_to_run_twice_and_while_another_holds_it(
    seeded_month, month, http
):
    from integrations import monthend
    from integrations.models import Lease

    paytrace, ids = seeded_month
    run = reconciliation.create_run(paytrace, *month, progress=monthend.WAITING)
    Lease.acquire(f"month-end-run:{run.pk}", "another-worker", 60)

    assert "another worker" in monthend.run(run.pk)
    assert not run.lines.exists()

    Lease.release(f"month-end-run:{run.pk}", "another-worker")
    monthend.run(run.pk)
    again = monthend.run(run.pk)

    assert "nothing to do" in again
    assert run.lines.count() == 7
    run.refresh_from_db()
    assert run.headline["difference"] == "105.30"


def test_the_period_picker_defaults_to_the_month_before_today():
    from datetime import date

    from integrations import monthend

    assert monthend.last_month(date(2026, 12, 6)) == (
        date(2026, 11, 1),
        date(2026, 11, 30),
    )
    assert monthend.last_month(date(2027, 1, 1)) == (
        date(2026, 12, 1),
        date(2026, 12, 31),
    )


def test_a_month_end_run_that_fails_says_why_on_its_page(
    paytrace_conn, http, month, reviewer_client
):
    from integrations import monthend

    paytrace_conn.sagepro.base_url = "http://elsewhere.invalid/api/v1"
    paytrace_conn.sagepro.save()
    run = reconciliation.create_run(paytrace_conn, *month, progress=monthend.WAITING)

    with pytest.raises(Exception):  # noqa: B017 - whatever the transport raises
        monthend.run(run.pk)

    run.refresh_from_db()
    assert run.state == ReconciliationRun.State.FAILED
    assert run.progress.startswith("Failed:")
    page = reviewer_client.get(
        f"/admin/integrations/reconciliationrun/{run.pk}/change/"
    )
    assert "The run failed" in page.text
    assert 'http-equiv="refresh"' not in page.text
    assert "Start it again" in page.text


# --- issue 14: chargebacks, refunds and reversals ---------------------------------------


def test_chargebacks_refunds_and_reversals_have_their_own_buckets_and_the_net_ties(
    deliver, sage, month, paytrace_conn, sagepro_conn
):
    from integrations import chargebacks
    from integrations.models import PaymentTransaction, Posting
    from mappings.gl import Purpose
    from mappings.models import GlRule
    from tests.factories import make_posting, make_transaction

    first, _ = month
    GlRule.objects.create(
        connection=paytrace_conn,
        name="cb",
        account="1200-00",
        purpose=Purpose.CHARGEBACK,
    )
    disputed = deliver("transaction.approved", sale(sage, first, "80.00"))
    refunded = deliver("transaction.approved", sale(sage, first, "50.00"))
    sale_txn = PaymentTransaction.objects.get(transaction_id=disputed)
    chargebacks.open_chargeback(
        sale_txn, case_number="CB-7", amount=Decimal("30.00"), opened_on=first
    )
    refund = make_transaction(
        paytrace_conn,
        transaction_type="REFUND",
        amount=Decimal("20.00"),
        mapped_status="Refunded",
        created_at=at_noon(first),
        original=PaymentTransaction.objects.get(transaction_id=refunded),
    )
    make_posting(
        refund,
        sagepro=sagepro_conn,
        kind=Posting.Kind.CREDIT_MEMO,
        state=Posting.State.POSTED,
        document_number="CM1",
    )
    early = make_transaction(
        paytrace_conn,
        transaction_type="REFUND",
        amount=Decimal("5.00"),
        mapped_status="Refunded",
        created_at=at_noon(first),
    )

    run = reconciliation.reconcile(paytrace_conn, first, first)

    lines = {line.transaction_id: line for line in run.lines.all()}
    assert lines[disputed].bucket == "chargeback"
    assert "Chargeback CB-7 opened, 30.00 USD." in lines[disputed].detail
    assert lines[refunded].bucket == "posted"
    assert lines[refund.transaction_id].bucket == "refund_posted"
    assert lines[early.transaction_id].bucket == "refund_waiting"
    net = run.headline["net"]
    assert net["paytrace_net"] == "105.00"  # 130 sales − 25 refunds
    assert net["sage_net"] == "110.00"  # 130 receipts − 20 credit memo
    assert net["difference"] == "-5.00"
    assert net["refunds_not_posted"] == {"count": 1, "amount": "-5.00"}
    assert run.headline["difference"] == "0.00"
    assert run.headline["chargebacks"]["opened"] == {"count": 1, "amount": "30.00"}


def test_a_sale_whose_receipt_was_reversed_is_in_its_own_bucket(
    deliver, sage, month, paytrace_conn, sagepro_conn
):
    from integrations.models import PaymentTransaction, Posting
    from integrations.sandbox.sagepro.models import CashReceipt
    from tests.factories import make_posting

    first, _ = month
    voided = deliver("transaction.approved", sale(sage, first, "40.00"))
    txn = PaymentTransaction.objects.get(transaction_id=voided)
    PaymentTransaction.objects.filter(pk=txn.pk).update(
        mapped_status="Voided", gateway_status="voided"
    )
    make_posting(
        txn,
        sagepro=sagepro_conn,
        kind=Posting.Kind.RECEIPT_REVERSAL,
        state=Posting.State.POSTED,
    )
    # What the reversal leaves: no live receipt for the payment.
    CashReceipt.objects.filter(reference=voided).update(deleted=True)

    run = reconciliation.reconcile(paytrace_conn, first, first)

    line = run.lines.get(transaction_id=voided)
    assert line.bucket == "receipt_reversed"
    assert run.headline["net"]["sage_reversals"] == {"count": 1, "amount": "40.00"}
    assert run.headline["difference"] == "0.00"
