"""Nothing stored can break a page, and nothing crashes a worker forever.

A record no retry will fix goes to review at once with the error named (one log line,
no retry loop); only what a retry can fix is retried. The database refuses amounts its
columns cannot hold, so no stored row can make a list page or an API list answer 500.
"""

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.db import DatabaseError, OperationalError, connection, transaction
from django.test import Client

from integrations import alerts, processing
from integrations.connectors.base import ConnectorError
from integrations.models import (
    Connection,
    Event,
    InboundDelivery,
    InvalidAmountError,
    PaymentTransaction,
    Posting,
    ReviewItem,
    SettlementBatch,
    TooDeeplyNestedError,
)
from tests.factories import (
    make_delivery,
    make_event,
    make_posting,
    make_transaction,
    make_user,
)
from tests.webhooks import paytrace_record

pytestmark = pytest.mark.django_db

LIST_PAGES = [
    "/admin/integrations/reviewitem/",
    "/admin/integrations/paymenttransaction/",
    "/api/transactions/",
    "/api/review-items/",
]


@pytest.fixture
def superuser_client():
    client = Client(raise_request_exception=False)
    client.force_login(make_user(is_superuser=True))
    return client


def assert_list_pages_answer_200(client):
    statuses = {url: client.get(url).status_code for url in LIST_PAGES}
    assert statuses == dict.fromkeys(LIST_PAGES, 200)


def queue_event(connection_, **record_fields):
    """Store an event carrying a PayTrace record, as the webhook or a poll would."""
    record = paytrace_record(**record_fields)
    return make_event(
        connection_,
        transaction_id=str(record["transaction_id"]),
        payload={"type": "transaction.approved", "data": record},
    )


# --- out-of-range money ------------------------------------------------------------


def test_an_out_of_range_tax_amount_goes_to_review_and_every_list_still_answers(
    paytrace_conn, sage, http, superuser_client
):
    invno = sage.seed_invoice("ACME", "125.50")
    event = queue_event(paytrace_conn, tax_amount="1e20", invoice_id=invno)
    make_transaction(paytrace_conn)  # a healthy row on the same pages

    assert processing.process_event(event.pk) == "dead"

    event.refresh_from_db()
    assert event.state == Event.State.DEAD
    item = ReviewItem.objects.get(event=event)
    assert item.kind == ReviewItem.Kind.DEAD
    assert "tax_amount" in item.reason
    assert not Posting.objects.exists()  # nothing reached Sage Pro
    assert_list_pages_answer_200(superuser_client)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("tax_amount", Decimal("1e20")),
        ("tax_amount", Decimal("Infinity")),
        ("tax_amount", Decimal("NaN")),
        ("amount", Decimal("1000000000000.00")),
        ("amount", Decimal("-1000000000000.00")),
    ],
)
def test_a_transaction_refuses_an_amount_its_column_cannot_hold(field, value):
    txn = make_transaction()
    setattr(txn, field, value)
    with pytest.raises(InvalidAmountError, match=field):
        txn.save()
    txn.refresh_from_db()
    assert getattr(txn, field) != value


def test_the_largest_amount_the_column_holds_is_kept_exactly(superuser_client):
    txn = make_transaction(
        amount=Decimal("999999999999.99"), tax_amount=Decimal("-999999999999.99")
    )
    txn.refresh_from_db()
    assert txn.amount == Decimal("999999999999.99")
    assert txn.tax_amount == Decimal("-999999999999.99")
    assert_list_pages_answer_200(superuser_client)


def test_the_other_money_columns_refuse_out_of_range_amounts_too(paytrace_conn):
    with pytest.raises(InvalidAmountError, match="net_amount"):
        SettlementBatch.objects.create(
            connection=paytrace_conn, batch_number="1", net_amount=Decimal("1e15")
        )
    posting = make_posting()
    posting.unapplied_amount = Decimal("1e13")
    with pytest.raises(InvalidAmountError, match="unapplied_amount"):
        posting.save()


def nested(depth):
    value = {}
    for _ in range(depth - 1):
        value = [value]
    return value


def test_json_nested_too_deep_to_read_back_is_never_stored(paytrace_conn):
    # 900 levels stored by raw SQL make /admin/integrations/event/ answer 500.
    with pytest.raises(TooDeeplyNestedError, match="payload"):
        make_event(paytrace_conn, payload={"data": nested(900)})
    assert not Event.objects.exists()
    event = make_event(paytrace_conn, payload=nested(64))
    event.refresh_from_db()
    assert event.payload == nested(64)


def _sql_values():
    if connection.vendor == "postgresql":
        return ["'NaN'"]  # numeric(14,2) itself refuses 1e20 and Infinity
    return ["1e20", "'1e20'", "1e309", "-1e309", "'abc'", "999999999999.999"]


@pytest.mark.parametrize("sql_value", _sql_values())
def test_the_database_refuses_an_out_of_range_amount_written_by_raw_sql(
    sql_value, superuser_client
):
    txn = make_transaction()
    table = PaymentTransaction._meta.db_table
    for column in ("amount", "tax_amount"):
        with (
            pytest.raises(DatabaseError),
            transaction.atomic(),
            connection.cursor() as cursor,
        ):
            cursor.execute(
                f"UPDATE {table} SET {column} = {sql_value} WHERE id = %s", [txn.pk]
            )
    txn.refresh_from_db()
    assert txn.amount == Decimal("12.30")
    assert_list_pages_answer_200(superuser_client)


@pytest.mark.django_db(transaction=True)
def test_the_migration_repairs_rows_stored_out_of_range_before_constraining_them():
    from django.db.migrations.executor import MigrationExecutor

    before = [("integrations", "0004_dead_letter_queue")]
    MigrationExecutor(connection).migrate(before)
    # Rows as that schema stored them (later migrations add columns).
    old_apps = MigrationExecutor(connection).loader.project_state(before).apps
    OldTransaction = old_apps.get_model("integrations", "PaymentTransaction")
    OldPosting = old_apps.get_model("integrations", "Posting")
    OldConnection = old_apps.get_model("integrations", "Connection")

    def old_connection(kind):
        n = OldConnection.objects.count() + 1
        return OldConnection.objects.create(
            kind=kind, name=f"{kind} {n}", slug=f"{kind}-{n}", base_url="https://x.test"
        )

    source = old_connection(Connection.Kind.PAYTRACE)

    def old_transaction(**fields):
        n = OldTransaction.objects.count() + 1
        return OldTransaction.objects.create(
            connection_id=source.pk,
            transaction_id=str(900000 + n),
            transaction_type="SALE",
            gateway_status="settled",
            mapped_status="Paid",
            amount=fields.get("amount", Decimal("12.30")),
            tax_amount=fields.get("tax_amount"),
            currency="USD",
            invoice_reference=f"INV-{n}",
            card_last4="1111",
        )

    txn = old_transaction()
    posting = OldPosting.objects.create(
        transaction_id=txn.pk,
        sagepro_id=old_connection(Connection.Kind.SAGEPRO).pk,
        kind=Posting.Kind.CASH_RECEIPT,
        idempotency_key=Posting.key_for(
            source, txn.transaction_id, Posting.Kind.CASH_RECEIPT
        ),
    )
    healthy = old_transaction(amount=Decimal("40.00"), tax_amount=Decimal("1.25"))
    if connection.vendor == "postgresql":
        bad = {"amount": "'NaN'", "tax_amount": "'NaN'", "unapplied_amount": "'NaN'"}
    else:
        bad = {"amount": "1e20", "tax_amount": "'abc'", "unapplied_amount": "1e309"}
    with connection.cursor() as cursor:
        for table, column, pk in [
            (PaymentTransaction._meta.db_table, "amount", txn.pk),
            (PaymentTransaction._meta.db_table, "tax_amount", txn.pk),
            (Posting._meta.db_table, "unapplied_amount", posting.pk),
        ]:
            cursor.execute(
                f"UPDATE {table} SET {column} = {bad[column]} WHERE id = %s", [pk]
            )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    txn = PaymentTransaction.objects.get(pk=txn.pk)
    healthy = PaymentTransaction.objects.get(pk=healthy.pk)
    assert (txn.amount, txn.tax_amount) == (Decimal("0.00"), None)
    posting = Posting.objects.get(pk=posting.pk)
    assert posting.unapplied_amount is None
    assert posting.state == Posting.State.NEEDS_REVIEW  # never sent with 0.00
    item = ReviewItem.objects.get(transaction=txn, state=ReviewItem.State.OPEN)
    assert (item.kind, item.error_code) == (ReviewItem.Kind.DEAD, "invalid_amount")
    assert "amount" in item.reason and "tax_amount" in item.reason
    assert txn.history.filter(action="amount_repaired").exists()
    healthy.refresh_from_db()
    assert (healthy.amount, healthy.tax_amount) == (Decimal("40.00"), Decimal("1.25"))
    assert not ReviewItem.objects.filter(transaction=healthy).exists()
    with (
        pytest.raises(DatabaseError),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(
            f"UPDATE {PaymentTransaction._meta.db_table} SET amount = {bad['amount']}"
        )
    client = Client(raise_request_exception=False)
    client.force_login(make_user(is_superuser=True))
    assert_list_pages_answer_200(client)


# --- the worker: permanent failures go to review at once ----------------------------


HOSTILE_RECORDS = {
    "response_code": {"response_code": "abc"},
    "credit_card": {"credit_card": "x"},
    "created": {"created": {"through": "API", "at": "3/4/2026 0:07:09 AM"}},
    "tax_amount_1e309": {"tax_amount": "1e309"},
    "tax_amount_1e20": {"tax_amount": "1e20"},
    "lone_surrogate": {"invoice_id": "INV-\ud800"},
    "amount_pan": {"amount": "4111111111111111"},
}


@pytest.mark.parametrize("fields", HOSTILE_RECORDS.values(), ids=HOSTILE_RECORDS)
def test_a_record_no_retry_can_fix_goes_to_review_at_once_with_one_log_line(
    fields, paytrace_conn, sage, http, caplog, superuser_client
):
    if connection.vendor == "postgresql" and "\ud800" in fields.get("invoice_id", ""):
        pytest.skip("PostgreSQL's jsonb refuses a lone surrogate: no such event exists")
    event = queue_event(paytrace_conn, **fields)

    with caplog.at_level(logging.INFO, logger="integrations"):
        assert processing.process_event(event.pk) == "dead"

    event.refresh_from_db()
    assert event.state == Event.State.DEAD
    assert event.attempts == 1
    assert event.last_error
    item = ReviewItem.objects.get(event=event, state=ReviewItem.State.OPEN)
    assert item.kind == ReviewItem.Kind.DEAD
    assert item.error_code == "invalid_record"
    assert "no retry" in item.reason.lower()
    assert "4111111111111111" not in item.reason + event.last_error
    lines = [r for r in caplog.records if r.name.startswith("integrations")]
    assert len(lines) == 1
    assert lines[0].exc_info is None  # one line, not a traceback
    # Never retried: the sweeper leaves it alone, even hours later.
    assert processing.sweep(datetime.now(UTC) + timedelta(hours=3))["events"] == 0
    assert processing.process_event(event.pk) == "skipped"
    assert_list_pages_answer_200(superuser_client)


def test_a_bug_in_the_pipeline_goes_to_review_at_once(paytrace_conn, monkeypatch):
    event = queue_event(paytrace_conn)

    def broken(event):
        raise AttributeError("'NoneType' object has no attribute 'strip'")

    monkeypatch.setattr(processing, "_apply_event", broken)
    assert processing.process_event(event.pk) == "dead"
    item = ReviewItem.objects.get(event=event)
    assert "no attribute 'strip'" in item.reason


@pytest.mark.parametrize(
    "exc",
    [
        ConnectorError("Sage Pro is down", transient=True, code="UNAVAILABLE"),
        OperationalError("database is locked"),
        TimeoutError("timed out"),
    ],
    ids=["transient_connector_error", "operational_error", "timeout"],
)
def test_what_a_retry_can_fix_is_retried_with_backoff(paytrace_conn, monkeypatch, exc):
    event = queue_event(paytrace_conn)

    def failing(event):
        raise exc

    monkeypatch.setattr(processing, "_apply_event", failing)
    assert processing.process_event(event.pk) == "failed"
    event.refresh_from_db()
    assert event.state == Event.State.FAILED
    assert event.next_attempt_at > datetime.now(UTC)
    assert not ReviewItem.objects.exists()


def test_a_permanent_connector_error_goes_to_review_at_once(paytrace_conn, monkeypatch):
    event = queue_event(paytrace_conn)

    def refused(event):
        raise ConnectorError("PayTrace refused it", transient=False, code="400")

    monkeypatch.setattr(processing, "_apply_event", refused)
    assert processing.process_event(event.pk) == "dead"
    assert "PayTrace refused it" in ReviewItem.objects.get(event=event).reason


def test_a_posting_that_cannot_be_built_waits_in_review_instead_of_looping(
    monkeypatch,
):
    posting = make_posting()

    def broken(posting, sage):
        raise KeyError("custno")

    monkeypatch.setattr(processing.documents, "document_for_send", broken)
    assert processing.send_posting(posting.pk) == "needs review"
    posting.refresh_from_db()
    assert posting.state == Posting.State.NEEDS_REVIEW
    item = ReviewItem.objects.get(posting=posting, kind=ReviewItem.Kind.VALIDATION)
    assert "custno" in item.reason


def test_a_posting_that_hits_a_locked_database_backs_off(monkeypatch):
    posting = make_posting()

    def locked(posting, sage):
        raise OperationalError("database is locked")

    monkeypatch.setattr(processing.documents, "document_for_send", locked)
    assert processing.send_posting(posting.pk) == "failed"
    posting.refresh_from_db()
    assert posting.state == Posting.State.FAILED
    assert posting.next_attempt_at is not None
    assert not ReviewItem.objects.exists()


@pytest.mark.parametrize("transaction_id", ["²³", "12a", "9" * 60])
def test_a_silent_post_with_an_id_paytrace_cannot_have_is_refused_once(
    paytrace_conn, http, transaction_id
):
    delivery = make_delivery(
        paytrace_conn,
        kind=InboundDelivery.Kind.SILENT_POST,
        webhook_id=f"silent-post:{transaction_id}",
        signature_result=InboundDelivery.SignatureResult.UNSIGNED,
    )
    assert processing.confirm_silent_post(delivery.pk) == "unconfirmed"
    delivery.refresh_from_db()
    assert delivery.signature_result == InboundDelivery.SignatureResult.UNCONFIRMED
    assert delivery.failure_reason == "invalid_transaction_id"
    assert not Event.objects.exists()


# Polling: a record the poller cannot read, and a poll that fails.


def test_a_polled_record_that_cannot_be_read_goes_to_review_and_the_window_goes_on(
    paytrace_conn, sage, http, run_tasks
):
    from integrations import polling
    from integrations.models import SyncRun

    good = paytrace_record(invoice_id="NO-SUCH-INVOICE")
    bad = paytrace_record(response_code="abc")
    run = SyncRun.objects.create(connection=paytrace_conn, kind=SyncRun.Kind.POLL)

    polling.feed_records(paytrace_conn, [bad, good], run)
    polling.feed_records(paytrace_conn, [bad, good], run)  # the next, overlapping poll
    run_tasks()

    assert PaymentTransaction.objects.filter(
        transaction_id=str(good["transaction_id"])
    ).exists()
    dead = Event.objects.get(state=Event.State.DEAD)
    assert dead.transaction_id == str(bad["transaction_id"])
    assert dead.attempts == 1
    assert ReviewItem.objects.get(event=dead).error_code == "invalid_record"


def test_a_poll_that_fails_for_any_reason_ends_failed_with_the_reason(
    paytrace_conn, monkeypatch
):
    from integrations import polling
    from integrations.models import Lease, SyncRun

    def broken(self, start, end, **filters):
        raise TypeError("'NoneType' object is not iterable")

    monkeypatch.setattr(
        "integrations.connectors.paytrace.PayTraceConnector.export_by_date_range",
        broken,
    )
    run = polling.poll(paytrace_conn)
    assert run.state == SyncRun.State.FAILED
    assert "not iterable" in run.error
    assert not Lease.objects.exists()


# --- alerts --------------------------------------------------------------------------


def test_alerts_tell_dead_and_failing_events_from_workers_not_running(
    settings, paytrace_conn
):
    settings.ALERT_EMAILS = ["ops@example.com"]
    hour_ago = datetime.now(UTC) - timedelta(hours=1)
    dead = make_event(
        paytrace_conn,
        state=Event.State.DEAD,
        received_at=hour_ago,
        last_error="InvalidRecord: data.created.at is not a PayTrace date",
    )
    ReviewItem.open(None, ReviewItem.Kind.DEAD, "cannot be processed", event=dead)
    make_event(
        paytrace_conn,
        state=Event.State.FAILED,
        received_at=hour_ago,
        attempts=3,
        last_error="ConnectorError: Sage Pro could not be reached",
    )

    alerts.check_alerts()

    bodies = {m.subject: m.body for m in mail.outbox}
    assert set(bodies) == {
        "[payments portal] events_dead",
        "[payments portal] events_failing",
    }
    assert "data.created.at" in bodies["[payments portal] events_dead"]
    assert "Sage Pro could not be reached" in bodies["[payments portal] events_failing"]
    assert not any("workers running" in body for body in bodies.values())


def test_an_event_nobody_picked_up_still_asks_whether_the_workers_run(
    settings, paytrace_conn
):
    settings.ALERT_EMAILS = ["ops@example.com"]
    make_event(paytrace_conn, received_at=datetime.now(UTC) - timedelta(hours=1))
    alerts.check_alerts()
    assert [m.subject for m in mail.outbox] == ["[payments portal] stale_events"]
    assert "Are the workers running?" in mail.outbox[0].body
