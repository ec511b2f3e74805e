"""The dead-letter queue and alerts."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import time_machine
from django.core import mail

from integrations import alerts, deadletters
from integrations.models import Alert, Event, Lease, Posting, SyncRun
from integrations.sandbox.credentials import sagepro_headers
from integrations.sandbox.sagepro.models import CashReceipt
from tests.webhooks import event_body, paytrace_record, paytrace_time, post_event, sign

pytestmark = pytest.mark.django_db


def make_dead_postings(client, secret, sage, run_tasks, amounts):
    """Deliver one payment per amount, newest payment first (so posting ids run against
    payment order), and leave each posting dead. Returns the ids oldest payment first."""
    txids = []
    now = datetime.now(UTC)
    for i, amount in enumerate(amounts):
        invno = sage.seed_invoice("ACME", amount)
        created = now - timedelta(hours=i + 1)
        record = paytrace_record(
            invoice_id=invno,
            amount=Decimal(amount),
            created={
                "through": "API",
                "at": paytrace_time(created),
                "by": "api",
                "from_ip": "",
            },
        )
        body = event_body("transaction.approved", record)
        post_event(client, "paytrace-sandbox", body, sign(body, secret))
        txids.insert(0, str(record["transaction_id"]))
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "locked", "seconds": 3600},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    run_tasks()
    Posting.objects.update(state=Posting.State.DEAD)  # as after the last attempt
    client.post(
        "/sandbox/sagepro/api/v1/_faults",
        {"mode": "none"},
        content_type="application/json",
        headers=sagepro_headers(),
    )
    return txids


def test_replay_sends_dead_letters_oldest_payment_first(
    client, paytrace_conn, secret, sage, http, run_tasks
):
    txids = make_dead_postings(
        client, secret, sage, run_tasks, ["10.00", "20.00", "30.00"]
    )
    assert (
        list(
            Posting.objects.order_by("pk").values_list(
                "transaction__transaction_id", flat=True
            )
        )
        == txids[::-1]
    )
    assert [p.transaction.transaction_id for p in deadletters.dead_letters()] == txids

    counts = deadletters.replay()

    assert counts == {"replayed": 3, "posted": 3, "still_failing": 0}
    receipts = list(
        CashReceipt.objects.order_by("rcptno").values_list("reference", flat=True)
    )
    assert receipts == txids  # receipt numbers were handed out in payment order
    assert not Posting.objects.exclude(state=Posting.State.POSTED).exists()


def test_replay_since_only_takes_what_failed_after_that_time(
    client, paytrace_conn, secret, sage, http, run_tasks
):
    make_dead_postings(client, secret, sage, run_tasks, ["11.00", "12.00"])
    old, new = Posting.objects.order_by("pk")
    Posting.objects.filter(pk=old.pk).update(
        started_at=datetime.now(UTC) - timedelta(days=2)
    )
    counts = deadletters.replay(since=datetime.now(UTC) - timedelta(days=1))
    assert counts["replayed"] == 1
    assert Posting.objects.get(pk=new.pk).state == Posting.State.POSTED
    assert Posting.objects.get(pk=old.pk).state == Posting.State.DEAD


def test_only_one_replay_runs_at_a_time(
    client, paytrace_conn, secret, sage, http, run_tasks
):
    make_dead_postings(client, secret, sage, run_tasks, ["13.00"])
    assert Lease.acquire(deadletters.LEASE_NAME, "another-replay", 60)
    with pytest.raises(deadletters.ReplayInProgressError):
        deadletters.replay()
    assert Posting.objects.get().state == Posting.State.DEAD


def test_the_replay_admin_queues_a_replay_of_everything_since(
    admin_client, paytrace_conn, secret, sage, http, run_tasks, client
):
    make_dead_postings(client, secret, sage, run_tasks, ["14.00", "15.00"])
    page = admin_client.get("/admin/integrations/deadletter/")
    assert page.status_code == 200
    assert "Replay everything since" in page.content.decode()
    url = "/admin/integrations/deadletter/replay-since/"
    shown = admin_client.post(url, {"since": "2000-01-01 00:00"})
    assert shown.status_code == 200
    run_tasks()
    assert not Posting.objects.filter(state=Posting.State.POSTED).exists()
    assert "Confirm: replay 2 receipts" in shown.text
    assert "$29.00" in shown.text  # the total the replay sends
    response = admin_client.post(
        url,
        {"since": "2000-01-01 00:00", "confirmed": shown.context["fingerprint"]},
    )
    assert response.status_code == 302
    run_tasks()
    assert Posting.objects.filter(state=Posting.State.POSTED).count() == 2


def test_replaying_selected_dead_letters_shows_them_first(
    admin_client, paytrace_conn, secret, sage, http, run_tasks, client
):
    make_dead_postings(client, secret, sage, run_tasks, ["14.00", "15.00"])
    dead = list(Posting.objects.values_list("pk", flat=True))
    selection = {"action": "replay_selected", "_selected_action": dead}
    changelist = "/admin/integrations/deadletter/"

    shown = admin_client.post(changelist, selection)
    run_tasks()
    assert not Posting.objects.filter(state=Posting.State.POSTED).exists()
    assert "customer ACME, invoice" in shown.text
    stale = admin_client.post(changelist, selection | {"confirmed": "not-the-list"})
    run_tasks()
    assert "changed since the list you confirmed" in stale.text
    assert not Posting.objects.filter(state=Posting.State.POSTED).exists()

    done = admin_client.post(
        changelist, selection | {"confirmed": shown.context["fingerprint"]}
    )
    run_tasks()
    assert done.status_code == 302
    assert Posting.objects.filter(state=Posting.State.POSTED).count() == 2


def test_an_alert_goes_out_once_per_window_then_a_recovery_notice(
    settings, paytrace_conn, http
):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.ALERT_WEBHOOK_URL = "https://alerts.example.test/hook"
    settings.ALERT_WINDOW_MINUTES = 60
    http.add("POST", "https://alerts.example.test/hook", json={"ok": True})
    SyncRun.objects.create(
        connection=paytrace_conn,
        kind=SyncRun.Kind.POLL,
        state=SyncRun.State.FAILED,
        error="PayTrace could not be reached",
    )
    key = f"poll_failing:{paytrace_conn.slug}"
    t0 = datetime.now(UTC)

    with time_machine.travel(t0, tick=False) as clock:
        assert alerts.check_alerts()["opened"] == 1
        assert (
            alerts.check_alerts()["opened"] == 0
        )  # the same condition: no second alert
        clock.shift(timedelta(minutes=30))
        assert alerts.check_alerts()["repeated"] == 0
        clock.shift(timedelta(minutes=31))
        assert alerts.check_alerts()["repeated"] == 1  # still failing, next window

        SyncRun.objects.create(
            connection=paytrace_conn,
            kind=SyncRun.Kind.POLL,
            state=SyncRun.State.SUCCEEDED,
            started_at=datetime.now(UTC),
        )
        assert alerts.check_alerts()["resolved"] == 1

    subjects = [m.subject for m in mail.outbox]
    assert subjects == [
        f"[payments portal] {key}",
        f"[payments portal] still: {key}",
        f"[payments portal] recovered: {key}",
    ]
    hooks = [
        c for c in http.calls if c.request.url.startswith("https://alerts.example.test")
    ]
    assert len(hooks) == 3
    assert Alert.objects.get().resolved_at is not None


def test_stale_events_and_dead_letters_raise_alerts(settings, paytrace_conn):
    settings.ALERT_EMAILS = ["ops@example.com"]
    Event.objects.create(
        connection=paytrace_conn,
        event_id="old",
        type="transaction.approved",
        occurred_at=datetime.now(UTC),
        payload={},
        received_at=datetime.now(UTC) - timedelta(hours=1),
    )
    opened = alerts.check_alerts()
    assert opened["opened"] == 1
    assert Alert.objects.filter(key="stale_events", resolved_at__isnull=True).exists()
    assert "waited 60 minutes" in mail.outbox[0].body


def test_a_broken_alert_channel_never_breaks_the_check(settings, paytrace_conn, http):
    settings.ALERT_WEBHOOK_URL = (
        "https://alerts.example.test/hook"  # unregistered: refused
    )
    SyncRun.objects.create(
        connection=paytrace_conn,
        kind=SyncRun.Kind.POLL,
        state=SyncRun.State.FAILED,
        error="x",
    )
    assert alerts.check_alerts()["opened"] == 1
