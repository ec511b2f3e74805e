"""The local mirror of Sage Pro: sync from the change feeds, the reader, the alert,
the command and the admin page. Sage Pro is the sandbox, reached through the bridge."""

import io
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import pytest
import time_machine
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse

from integrations import alerts, documents, mirror, review
from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.connectors.sagepro import Application, CashReceipt
from integrations.models import (
    Alert,
    Connection,
    Lease,
    MirroredCustomer,
    MirroredGlAccount,
    MirroredInvoice,
    MirroredPeriod,
    MirrorState,
)
from integrations.sandbox.sagepro import keys
from integrations.sandbox.sagepro.models import ArMast
from integrations.sandbox.sagepro.seed import period_date, seed_invoice
from mappings.models import GlRule
from tests.factories import make_connection, make_review_item, make_transaction

SAGE_URL = "http://testserver/sandbox/sagepro/api/v1"


def gateway_calls(http, path="", since=0):
    """The calls that reached the Sage Pro sandbox (under `path`, when given) after
    call number `since`."""
    return [
        c
        for c in http.calls[since:]
        if c.request.url.startswith(SAGE_URL + path) and "/_faults" not in c.request.url
    ]


def feed_cursors(http, since=0):
    """The `changed_since` of each invoice change-feed read after call `since`."""
    cursors = []
    for call in http.calls[since:]:
        parts = urlsplit(call.request.url)
        query = parse_qs(parts.query, keep_blank_values=True)
        if parts.path.endswith("/invoices") and "changed_since" in query:
            cursors.append(query["changed_since"][0])
    return cursors


def sandbox_invoice(invno):
    return ArMast.objects.get(invno=keys.pad_invno(invno))


def pay(connection, invno, amount, key):
    invoice = connection.sage().get_invoice(invno)
    receipt = CashReceipt(
        custno=invoice["custno"],
        date=period_date(0),
        amount=Decimal(amount),
        method="VISA",
        reference=f"pt-{key}",
        applications=(Application(invno, Decimal(amount)),),
    )
    return connection.sage().post_cash_receipt(key, receipt)


@pytest.fixture
def synced(http, sage, sagepro_conn):
    """A mirror after its first sync."""
    mirror.sync(sagepro_conn)
    return sagepro_conn


# --- sync -------------------------------------------------------------------------------


def test_the_first_sync_mirrors_everything_sage_pro_lists(http, sage, sagepro_conn):
    gateway = sagepro_conn.sage()
    accounts = gateway.list_gl_accounts()
    periods = gateway.list_periods()

    result = mirror.sync(sagepro_conn)

    assert result.full  # a mirror's first sync lists everything
    live = ArMast.objects.filter(company="01", deleted=False).count()
    assert MirroredInvoice.objects.filter(deleted=False).count() == live
    assert MirroredInvoice.objects.get(invno="10059").deleted  # soft-deleted in Sage
    assert MirroredCustomer.objects.count() == 12
    assert MirroredGlAccount.objects.count() == len(accounts)
    assert MirroredPeriod.objects.count() == len(periods)
    state = MirrorState.objects.get(connection=sagepro_conn)
    assert state.full_synced_at is not None and state.synced_at is not None
    assert state.invoice_cursor and state.customer_cursor
    assert state.last_error == ""


def test_an_incremental_sync_picks_up_a_paid_a_deleted_and_a_new_invoice(http, synced):
    pay(synced, "10001", "25.00", "k-paid")
    gone = sandbox_invoice("10002")
    gone.deleted = True
    gone.save()
    new = seed_invoice("ACME", "410.00")
    cursor = MirrorState.objects.get(connection=synced).invoice_cursor
    before = len(http.calls)

    result = mirror.sync(synced)

    assert not result.full
    assert feed_cursors(http, before) == [cursor]  # from where the last sync stopped
    reader = synced.mirror()
    paid = reader.get_invoice("10001")
    assert paid["balance"] == sandbox_invoice("10001").balance
    assert paid["paidamt"] == sandbox_invoice("10001").paidamt
    assert reader.get_invoice("10002") is None
    assert reader.get_invoice(new)["invamt"] == Decimal("410.00")
    assert result.invoices == 3 and result.deleted == 1
    assert gateway_calls(http, "/invoices/", before) == []  # all three from the mirror


def test_the_cursor_survives_a_restart_without_a_full_resync(http, synced):
    cursor = MirrorState.objects.get(connection=synced).invoice_cursor
    invoice = sandbox_invoice("10003")
    invoice.ponum = "PO-77"
    invoice.save()
    # A new process: nothing but the database is kept.
    connection = Connection.objects.get(pk=synced.pk)
    before = len(http.calls)

    result = mirror.sync(connection)

    assert feed_cursors(http, before) == [cursor]
    assert not result.full
    assert result.invoices == 1
    assert connection.mirror().get_invoice("10003")["ponum"] == "PO-77"


def test_a_sync_that_fails_midway_keeps_its_pages_and_resumes_from_them(
    http, sage, sagepro_conn, monkeypatch
):
    monkeypatch.setattr(mirror, "PAGE_SIZE", 20)
    gateway = sagepro_conn.sage()
    real = gateway.list_invoice_changes
    reads = []

    def second_page_fails(cursor, limit=500):
        reads.append(cursor)
        if len(reads) == 2:
            raise ConnectorError(
                "Sage Pro gateway could not be reached", transient=True
            )
        return real(cursor, limit)

    monkeypatch.setattr(gateway, "list_invoice_changes", second_page_fails)

    with pytest.raises(ConnectorError):
        mirror.sync(sagepro_conn, gateway=gateway)

    state = MirrorState.objects.get(connection=sagepro_conn)
    assert "could not be reached" in state.last_error
    assert MirroredInvoice.objects.count() == 20  # the first page is kept
    assert state.full_started_at is not None  # the full listing is not finished
    before = len(http.calls)

    result = mirror.sync(Connection.objects.get(pk=sagepro_conn.pk))

    assert feed_cursors(http, before)[0] == state.invoice_cursor  # resumed
    assert result.full  # and finished as the full listing it was
    state.refresh_from_db()
    assert state.last_error == "" and state.full_started_at is None
    assert MirroredInvoice.objects.count() == ArMast.objects.count()


def test_a_full_resync_removes_rows_sage_pro_no_longer_lists(http, synced):
    MirroredInvoice.objects.create(
        connection=synced, invno="GHOST1", custno="ACME", balance=Decimal("5.00")
    )
    MirroredCustomer.objects.create(connection=synced, custno="GHOST")
    MirroredGlAccount.objects.create(connection=synced, glacnt="7777-00")

    mirror.sync(synced)  # incremental: nothing lists them, nothing removes them
    assert MirroredInvoice.objects.filter(invno="GHOST1").exists()
    assert not MirroredGlAccount.objects.filter(glacnt="7777-00").exists()  # replaced

    result = mirror.sync(synced, full=True)

    assert result.full and result.removed == 2
    assert not MirroredInvoice.objects.filter(invno="GHOST1").exists()
    assert not MirroredCustomer.objects.filter(custno="GHOST").exists()
    assert MirroredInvoice.objects.count() == ArMast.objects.count()


def test_sync_all_goes_on_after_one_connection_fails(http, sage, sagepro_conn):
    broken = make_connection(
        kind=Connection.Kind.SAGEPRO, slug="sagepro-broken"
    )  # an unreachable host: the bridge refuses it

    outcomes = mirror.sync_all()

    assert outcomes[broken.slug].startswith("failed:")
    assert "sync stored" in outcomes[sagepro_conn.slug]
    assert MirrorState.objects.get(connection=broken).last_error
    assert MirrorState.objects.get(connection=sagepro_conn).synced_at is not None


def test_two_syncs_of_one_mirror_never_run_at_once(http, sage, sagepro_conn):
    Lease.acquire(f"sagepro-mirror:{sagepro_conn.pk}", "another worker", 600)

    result = mirror.sync(sagepro_conn)

    assert result.skipped
    assert not MirroredInvoice.objects.exists()
    err = io.StringIO()
    call_command("sync_sagepro_mirror", stderr=err)
    assert "another sync of this mirror is running" in err.getvalue()


def test_a_row_the_mirror_cannot_hold_is_refused_and_the_rest_stored(
    http, sage, sagepro_conn, monkeypatch
):
    gateway = sagepro_conn.sage()
    real = gateway.list_invoice_changes

    def one_bad(cursor, limit=500):
        page = real(cursor, limit)
        page.results[0]["balance"] = Decimal("1e20")
        return page

    monkeypatch.setattr(gateway, "list_invoice_changes", one_bad)

    result = mirror.sync(sagepro_conn, gateway=gateway)

    assert len(result.rejected) == 1 and "balance" in result.rejected[0]
    assert MirroredInvoice.objects.count() == ArMast.objects.count() - 1


# --- the reader -------------------------------------------------------------------------


def test_a_mirrored_invoice_is_answered_with_no_gateway_call(http, synced):
    gateway = synced.sage()
    expected = {
        "invoice": gateway.get_invoice("10005"),
        "customer": gateway.get_customer("ACME"),
        "open": gateway.list_open_invoices("IRONWD"),
        "everyone": gateway.list_open_invoices(""),
        "accounts": gateway.list_gl_accounts(),
        "periods": gateway.list_periods(),
    }
    before = len(gateway_calls(http))
    reader = synced.mirror()

    answers = {
        "invoice": reader.get_invoice(" 10005"),
        "customer": reader.get_customer("acme"),
        "open": reader.list_open_invoices("ironwd"),
        "everyone": reader.list_open_invoices(""),
        "accounts": reader.list_gl_accounts(),
        "periods": reader.list_periods(),
    }

    assert answers == expected  # same shapes, Decimal and date values, same order
    assert len(gateway_calls(http)) == before


def test_a_missing_invoice_is_read_from_the_gateway_once_and_kept(
    http, sage, sagepro_conn
):
    reader = sagepro_conn.mirror()

    first = reader.get_invoice("10007")
    again = sagepro_conn.mirror().get_invoice("10007 ")

    assert first == again == sagepro_conn.sage().get_invoice("10007")
    assert len(gateway_calls(http, "/invoices/10007")) == 2  # ours, then the check
    assert reader.get_invoice("99999") is None  # Sage Pro has none: nothing kept
    assert not MirroredInvoice.objects.filter(invno="99999").exists()
    with pytest.raises(NotFoundError):
        reader.get_customer("NOBODY")
    reader.get_customer("BLUEOX")
    reader.get_customer("blueox")
    assert len(gateway_calls(http, "/customers/")) == 2  # NOBODY, BLUEOX once


def test_open_invoices_come_from_the_gateway_until_the_first_full_sync(
    http, sage, sagepro_conn
):
    reader = sagepro_conn.mirror()
    reader.list_open_invoices("ACME")
    reader.list_open_invoices("ACME")
    assert len(gateway_calls(http, "/invoices?")) == 2
    assert MirroredInvoice.objects.filter(custno="ACME").exists()  # kept meanwhile

    mirror.sync(sagepro_conn)
    before = len(gateway_calls(http))
    reader.list_open_invoices("ACME")
    assert len(gateway_calls(http)) == before


def test_gl_accounts_and_periods_are_fetched_once_when_never_fetched(
    http, sage, sagepro_conn
):
    reader = sagepro_conn.mirror()
    assert reader.list_gl_accounts() == sagepro_conn.mirror().list_gl_accounts()
    assert reader.list_periods() == sagepro_conn.mirror().list_periods()
    assert len(gateway_calls(http, "/gl-accounts")) == 1
    assert len(gateway_calls(http, "/periods")) == 1


def test_a_deleted_customer_in_the_mirror_is_not_found(http, synced):
    MirroredCustomer.objects.filter(custno="BLUEOX").update(deleted=True)
    with pytest.raises(NotFoundError) as refused:
        synced.mirror().get_customer("BLUEOX")
    assert refused.value.code == "CUSTOMER_NOT_FOUND"


def test_point_refreshes_read_sage_pro_and_update_the_mirror(http, synced):
    pay(synced, "10009", "10.00", "k-refresh")
    assert synced.mirror().get_invoice("10009")["balance"] != (
        sandbox_invoice("10009").balance
    )  # stale until refreshed

    fresh = mirror.refresh_invoice(synced, "10009")

    assert fresh["balance"] == sandbox_invoice("10009").balance
    assert synced.mirror().get_invoice("10009") == fresh
    gone = sandbox_invoice("10010")
    gone.deleted = True
    gone.save()
    assert mirror.refresh_invoice(synced, "10010") is None
    assert synced.mirror().get_invoice("10010") is None


# --- after a posting --------------------------------------------------------------------


def test_a_posted_receipt_updates_the_mirror_without_a_gateway_read(http, synced):
    before_post = synced.mirror().get_invoice("10011")
    receipt = pay(synced, "10011", "30.00", "k-apply")
    before = len(gateway_calls(http))

    assert mirror.apply_receipt(synced, receipt) == 1

    assert len(gateway_calls(http)) == before
    after = synced.mirror().get_invoice("10011")
    assert after["balance"] == before_post["balance"] - Decimal("30.00")
    assert after["paidamt"] == before_post["paidamt"] + Decimal("30.00")
    assert after["balance"] == sandbox_invoice("10011").balance
    customer = synced.mirror().get_customer(after["custno"])
    assert customer == synced.sage().get_customer(after["custno"])


def test_a_receipt_a_sync_already_saw_is_not_applied_twice(http, synced):
    receipt = pay(synced, "10012", "30.00", "k-twice")
    mirror.sync(synced)  # reads the invoice after the receipt

    assert mirror.apply_receipt(synced, receipt) == 0

    assert (
        synced.mirror().get_invoice("10012")["balance"]
        == sandbox_invoice("10012").balance
    )


# --- readers switched to the mirror -------------------------------------------------------


def test_review_candidates_come_from_the_mirror(http, synced, paytrace_conn):
    txn = make_transaction(
        paytrace_conn, customer_reference="IRONWD", invoice_reference="nope"
    )
    before = len(gateway_calls(http))

    candidates = review.invoice_candidates(txn)

    assert candidates
    assert {c.invoice.custno for c in candidates} == {"IRONWD"}
    assert len(gateway_calls(http)) == before


def test_a_stale_mirror_never_refuses_a_reviewer_by_itself(http, synced, paytrace_conn):
    MirroredInvoice.objects.filter(invno="10014").update(balance=0)  # "paid"
    MirroredCustomer.objects.filter(custno="BLUEOX").update(deleted=True)
    first = make_review_item(make_transaction(paytrace_conn, customer_reference=""))
    second = make_review_item(make_transaction(paytrace_conn, customer_reference=""))

    posting = review.apply_review_item(first, "10014")
    on_account = review.post_on_account(second, custno="BLUEOX")

    assert posting.payload["applications"][0]["invno"] == "10014"
    assert on_account.payload["custno"] == "BLUEOX"
    assert synced.mirror().get_invoice("10014")["balance"] == (
        sandbox_invoice("10014").balance
    )
    with pytest.raises(review.ReviewError, match="not found"):
        review.apply_review_item(
            make_review_item(make_transaction(paytrace_conn)), "99999"
        )


def test_a_stale_chart_in_the_mirror_never_stops_a_document_by_itself(
    http, synced, paytrace_conn
):
    GlRule.objects.create(
        connection=paytrace_conn, name="Cards", card_brands="VISA", account="1100-00"
    )
    MirroredGlAccount.objects.filter(glacnt="1100-00").update(active=False)
    txn = make_transaction(
        paytrace_conn, invoice_reference="10013", customer_reference=""
    )

    document = documents.preview_cash_receipt(txn)

    assert not [p for p in document.problems if p.field == "gl_account"]
    assert MirroredGlAccount.objects.get(glacnt="1100-00").active  # re-read


# --- the alert ------------------------------------------------------------------------------


def test_a_mirror_that_stops_syncing_raises_an_alert_and_a_recovery(
    settings, http, sage, sagepro_conn
):
    settings.ALERT_EMAILS = ["ops@example.com"]
    settings.MIRROR_MAX_AGE_MINUTES = 15
    key = f"mirror_stale:{sagepro_conn.slug}"
    t0 = datetime.now(UTC)
    with time_machine.travel(t0, tick=False) as clock:
        mirror.sync(sagepro_conn)
        assert alerts.check_alerts()["opened"] == 0
        clock.shift(timedelta(minutes=16))
        assert alerts.check_alerts()["opened"] == 1
        mirror.sync(sagepro_conn)
        assert alerts.check_alerts()["resolved"] == 1

    assert [m.subject for m in mail.outbox] == [
        f"[payments portal] {key}",
        f"[payments portal] recovered: {key}",
    ]
    assert "Sage Pro sandbox (sagepro-sandbox) has not synced for 16 minutes" in (
        mail.outbox[0].body
    )
    assert Alert.objects.get(key=key).resolved_at is not None


# --- the command --------------------------------------------------------------------------


def test_the_command_syncs_and_says_what_it_did(http, sage, sagepro_conn):
    out = io.StringIO()
    call_command("sync_sagepro_mirror", "--connection", sagepro_conn.slug, stdout=out)
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("sagepro-sandbox: sync from http://testserver/")
    assert any(line.startswith("sagepro-sandbox: invoices page 1:") for line in lines)
    assert lines[-1].startswith("sagepro-sandbox: full resync stored 59 invoice(s)")

    out = io.StringIO()
    call_command("sync_sagepro_mirror", "--full", stdout=out)
    assert "full resync stored" in out.getvalue()


def test_the_command_names_the_connection_and_the_fix(http, sage, sagepro_conn):
    with pytest.raises(CommandError, match="No active Sage Pro connection 'nope'"):
        call_command("sync_sagepro_mirror", "--connection", "nope")

    sagepro_conn.base_url = "https://sagepro.example/api/v1"  # unreachable
    sagepro_conn.save()
    err = io.StringIO()
    with pytest.raises(CommandError, match="sagepro-sandbox could not sync"):
        call_command(
            "sync_sagepro_mirror", "--connection", "sagepro-sandbox", stderr=err
        )
    assert "sagepro-sandbox: the sync stopped:" in err.getvalue()
    assert "base URL and API key" in err.getvalue()


# --- the admin ------------------------------------------------------------------------------


def test_the_admin_lists_each_mirror_and_syncs_it(
    http, sage, sagepro_conn, admin_client, run_tasks
):
    url = reverse("admin:integrations_mirrorstate_changelist")

    page = admin_client.get(url)

    assert page.status_code == 200
    assert "never synced" in page.content.decode()
    state = MirrorState.objects.get(connection=sagepro_conn)

    response = admin_client.post(
        url, {"action": "resync_full", "_selected_action": [state.pk]}, follow=True
    )
    assert "Queued a full resync of sagepro-sandbox" in response.content.decode()
    run_tasks()

    state.refresh_from_db()
    assert state.full_synced_at is not None
    page = admin_client.get(url).content.decode()
    assert "0 min" in page
    assert "58 invoices, 12 customers" in page
    detail = admin_client.get(
        reverse("admin:integrations_mirrorstate_change", args=[state.pk])
    )
    assert detail.status_code == 200
