"""Raw deliveries go after the retention period; the audit trail and its pages stay."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from integrations import retention
from integrations.models import Connection, Event, InboundDelivery, Posting
from integrations.models.storefront import StorefrontEvent
from tests.factories import (
    make_connection,
    make_delivery,
    make_event,
    make_posting,
    make_transaction,
)

pytestmark = pytest.mark.django_db


def days_ago(days: int):
    return timezone.now() - timedelta(days=days)


def purge(*args: str) -> str:
    out = StringIO()
    call_command("purge_deliveries", *args, stdout=out)
    return out.getvalue()


def test_it_deletes_old_deliveries_and_keeps_recent_ones():
    old = make_delivery(received_at=days_ago(91))
    recent = make_delivery(received_at=days_ago(89))

    output = purge()  # DELIVERY_RETENTION_DAYS: 90 by default

    assert not InboundDelivery.objects.filter(pk=old.pk).exists()
    assert InboundDelivery.objects.filter(pk=recent.pk).exists()
    assert "Deleted 1 raw deliveries" in output
    assert "older than 90 days" in output


def test_the_audit_trail_stays_and_its_pages_still_render(admin_client):
    connection = make_connection()
    event = make_event(connection, state=Event.State.PROCESSED)
    txn = make_transaction(connection, transaction_id=event.transaction_id)
    posting = make_posting(txn, state=Posting.State.POSTED)
    make_delivery(connection, event=event, received_at=days_ago(200))

    purge("--older-than-days", "30")

    assert InboundDelivery.objects.count() == 0
    assert Event.objects.filter(pk=event.pk).exists()
    assert Posting.objects.get(pk=posting.pk).state == Posting.State.POSTED
    for page in (
        reverse("admin:integrations_event_change", args=[event.pk]),
        reverse("admin:integrations_paymenttransaction_change", args=[txn.pk]),
        reverse("admin:integrations_event_changelist"),
        reverse("admin:integrations_inbounddelivery_changelist"),
    ):
        assert admin_client.get(page).status_code == 200, page


def test_a_storefront_event_loses_only_its_raw_delivery():
    shop = make_connection(kind=Connection.Kind.STOREFRONT)
    delivery = make_delivery(shop, received_at=days_ago(120))
    event = StorefrontEvent.objects.create(
        connection=shop,
        webhook_id="wh_1",
        topic="orders/create",
        payload={"id": 1},
        delivery=delivery,
    )

    purge()

    event.refresh_from_db()
    assert event.delivery is None
    assert event.payload == {"id": 1}


def test_a_silent_post_awaiting_its_lookup_is_kept():
    waiting = make_delivery(
        kind=InboundDelivery.Kind.SILENT_POST,
        signature_result=InboundDelivery.SignatureResult.UNSIGNED,
        received_at=days_ago(365),
    )

    purge()

    assert InboundDelivery.objects.filter(pk=waiting.pk).exists()


def test_a_dry_run_counts_and_deletes_nothing():
    make_delivery(received_at=days_ago(100))

    output = purge("--dry-run")

    assert InboundDelivery.objects.count() == 1
    assert "1 raw deliveries" in output
    assert "would be deleted" in output


def test_it_works_in_batches_and_a_second_run_finds_nothing():
    for _ in range(5):
        make_delivery(received_at=days_ago(100))

    first = purge("--batch-size", "2")
    second = purge("--batch-size", "2")

    assert InboundDelivery.objects.count() == 0
    assert "batch 3: deleted 1 (total 5)" in first
    assert "Deleted 5 raw deliveries" in first
    assert "Deleted 0 raw deliveries" in second


@pytest.mark.parametrize("value", ["0", "-3"])
def test_a_bad_age_is_refused_with_the_fix(value):
    with pytest.raises(CommandError, match="1 or more"):
        purge("--older-than-days", value)


def test_retention_zero_keeps_everything(settings):
    settings.DELIVERY_RETENTION_DAYS = 0
    make_delivery(received_at=days_ago(1000))

    output = purge()

    assert InboundDelivery.objects.count() == 1
    assert "keep forever" in output
    assert "kept forever" in retention.purge_expired()


def test_the_daily_schedule_purges_past_the_setting(settings):
    settings.DELIVERY_RETENTION_DAYS = 10
    make_delivery(received_at=days_ago(11))
    make_delivery(received_at=days_ago(9))

    summary = retention.purge_expired()

    assert InboundDelivery.objects.count() == 1
    assert "Deleted 1 raw deliveries" in summary
