"""The demo stays alive and has a past.

The live stream runs for an hour of demo time through the real pipeline: the PayTrace
sandbox's signed webhooks, the portal's workers (run in-process), Sage Pro sandbox
receipts. The clock is compressed: each wait between payments advances a counted
clock instead of sleeping, at one payment every ~24 s (150 in the hour) so the test
stays under a minute; that is still over twice the invoices the Sage Pro
sandbox is seeded with, which the old stream used up in its first minutes. The past is
seeded the way `manage.py demo` seeds it, through the same pipeline.
"""

import random
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import override_settings

from integrations import demo
from integrations.models import (
    PaymentTransaction,
    Posting,
    ReconciliationRun,
    ReviewItem,
    SettlementBatch,
)
from integrations.reconciliation import business_today
from integrations.sandbox.logfilters import QuietSandboxRefusals
from integrations.sandbox.paytrace.models import Transaction
from integrations.sandbox.sagepro.models import ArMast, SycDfis

pytestmark = pytest.mark.django_db

# Average seconds between payments in the test's hour (`make demo` uses 3).
DEMO_INTERVAL = 24.0
HOUR = 3600.0


def run_for(stream, seconds, run_tasks):
    """Run the stream for `seconds` of demo time (the clock advances by each wait)."""
    clock = 0.0
    while clock < seconds:
        stream.step()
        run_tasks()  # the sandbox's deliveries, then the portal's processing
        clock += stream.rng.uniform(DEMO_INTERVAL * 2 / 3, DEMO_INTERVAL * 4 / 3)
    return stream.sent


def is_auto_matched(txn):
    """Posted to Sage Pro by the pipeline, and never in front of a reviewer."""
    return (
        Posting.objects.filter(transaction=txn, state=Posting.State.POSTED).exists()
        and not ReviewItem.objects.filter(transaction=txn).exists()
    )


@override_settings(DEMO_MODE=True)
def test_an_hour_of_stream_keeps_most_payments_matched_and_leaves_hand_made_invoices(
    paytrace_conn, sage, http, run_tasks
):
    by_hand = sage.seed_invoice("ACME", "77.70")  # a user trying things out
    stream = demo.PaymentStream.for_demo(rng=random.Random(13))

    sent = run_for(stream, HOUR, run_tasks)
    stream.settle()
    run_tasks()

    assert sent >= 120  # over twice the ~50 invoices the Sage Pro sandbox starts with
    approved = PaymentTransaction.objects.filter(
        transaction_type="SALE", gateway_status__in=["approved", "settled"]
    )
    matched = [txn for txn in approved if is_auto_matched(txn)]
    assert len(matched) >= 0.8 * approved.count(), (len(matched), approved.count())
    # The last quarter of the hour still matches: the stream has not run dry.
    late = list(approved.order_by("-created_at")[: approved.count() // 4])
    assert sum(is_auto_matched(t) for t in late) >= 0.8 * len(late)
    # The queues get a realistic few of each kind.
    kinds = set(ReviewItem.objects.values_list("kind", flat=True))
    assert len(kinds) >= 2, kinds
    # Hand-made invoices are left alone.
    assert not Transaction.objects.filter(invoice_id=by_hand).exists()
    assert ArMast.objects.get(invno=by_hand.rjust(10)).balance == Decimal("77.70")
    # Settlements are recorded as the pipeline records them.
    assert SettlementBatch.objects.filter(connection=paytrace_conn).exists()


def test_the_stream_pays_only_the_invoices_it_made():
    class Sage:
        def call(self, method, path, **kwargs):
            assert (method, path) == ("GET", "/invoices")
            return {
                "results": [
                    {"invno": "10001", "custno": "ACME", "balance": "50.00"},
                    {
                        "invno": "10002",
                        "custno": "ACME",
                        "balance": "60.00",
                        "ponum": "PO-4411",
                    },
                    {
                        "invno": "10003",
                        "custno": "BLUEOX",
                        "balance": "70.00",
                        "ponum": f"{demo.DEMO_PONUM_PREFIX}S1",
                    },
                ]
            }

    made = []

    def make_invoice(custno, amount, ponum):
        made.append(ponum)
        return {"invno": str(20000 + len(made)), "custno": custno, "balance": amount}

    stream = demo.PaymentStream(
        None, Sage(), rng=random.Random(5), stock=3, make_invoice=make_invoice
    )
    stocked = stream.stocked_invoices()

    assert [row["invno"] for row in stocked] == ["10003", "20001", "20002"]
    assert len(made) == 2  # topped up to three open invoices of its own
    assert all(p.startswith(demo.DEMO_PONUM_PREFIX) for p in made)
    payments = [stream.choose() for _ in range(100)]
    paid = {p.invoice for p in payments if p.kind != "unmatched"}
    assert "10001" not in paid and "10002" not in paid  # not the demo's: left alone
    assert "10003" in paid


@override_settings(DEMO_MODE=True)
def test_the_seeded_past_has_sixty_days_batches_refunds_and_a_closed_month(
    paytrace_conn, sage, http, run_tasks
):
    lines = []
    periods = list(SycDfis.objects.values_list("yearprd", "pclosed", "plocked"))

    report = demo.seed_history(lines.append, per_day=0.3)

    today = business_today()
    sales = PaymentTransaction.objects.filter(transaction_type="SALE")
    days = {txn.created_at.date() for txn in sales}
    assert min(days) <= today - timedelta(days=58)
    assert len(days) >= 40  # weekdays, and some weekend days
    posted = Posting.objects.filter(state=Posting.State.POSTED).count()
    assert posted >= 0.8 * sales.exclude(gateway_status="failed").count()
    assert 0 < ReviewItem.objects.filter(state="open").count() < 0.1 * sales.count()
    assert PaymentTransaction.objects.filter(transaction_type="REFUND").exists()
    assert SettlementBatch.objects.filter(connection=paytrace_conn).count() >= 40
    last_month = today.replace(day=1) - timedelta(days=1)
    run = ReconciliationRun.objects.get(
        date_from=last_month.replace(day=1), date_to=last_month
    )
    assert run.state == ReconciliationRun.State.DONE
    assert run.ties_out is not None  # the batches are there to tie out against
    # The periods opened for the backfill are locked again.
    assert list(SycDfis.objects.values_list("yearprd", "pclosed", "plocked")) == periods
    assert any("Settlement batches recorded" in line for line in report)

    # A second start adds nothing.
    counts = (Transaction.objects.count(), ReconciliationRun.objects.count())
    demo.seed_history(lines.append, per_day=0.3)
    assert (Transaction.objects.count(), ReconciliationRun.objects.count()) == counts


# The demo's log -----------------------------------------------------------------------


@pytest.fixture
def demo_request_log(caplog):
    """`django.request` with the demo's LOGGING filter, recorded by caplog."""
    import logging

    from portal import settings as production

    wired = production.LOGGING["loggers"]["django.request"]["filters"]
    spec = production.LOGGING["filters"][wired[0]]
    assert spec["()"] == "integrations.sandbox.logfilters.QuietSandboxRefusals"
    logger = logging.getLogger("django.request")
    quiet = QuietSandboxRefusals()
    logger.addFilter(quiet)
    caplog.set_level(logging.WARNING, logger="django.request")
    yield caplog
    logger.removeFilter(quiet)


def sale(client, card_number, amount="10.00"):
    from integrations.sandbox.paytrace.models import AccessToken

    token, _ = AccessToken.issue("demo")
    return client.post(
        "/sandbox/paytrace/v1/transactions/sale/keyed",
        {
            "integrator_id": "DEMO0001",
            "amount": amount,
            "credit_card": {
                "number": card_number,
                "expiration_month": 12,
                "expiration_year": 2030,
            },
        },
        content_type="application/json",
        headers={"Authorization": f"Bearer {token}"},
    )


def test_expected_sandbox_misses_and_declines_print_no_warning(
    client, sage, demo_request_log, settings
):
    auth = {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}

    missed = client.get("/sandbox/sagepro/api/v1/customers/NOPE", headers=auth)
    no_invoice = client.get("/sandbox/sagepro/api/v1/invoices/99999", headers=auth)
    declined = sale(client, demo.DECLINED_CARD)

    assert missed.status_code == no_invoice.status_code == 404
    assert declined.status_code == 400 and declined.json()["response_code"] == 102
    assert demo_request_log.records == []


def test_real_errors_still_print(client, sage, demo_request_log, settings):
    auth = {"Authorization": f"Bearer {settings.SANDBOX_SAGEPRO_API_KEY}"}

    malformed = sale(client, "4111111111111112")  # fails the Luhn check
    no_customer = client.post(
        "/sandbox/sagepro/api/v1/invoices",
        {"custno": "NOPE", "invamt": "10.00"},
        content_type="application/json",
        headers=auth,
    )
    portal_miss = client.get("/no/such/page/")
    wrong_path = client.get("/sandbox/sagepro/api/v2/customers/ACME", headers=auth)

    assert malformed.status_code == 400
    assert no_customer.status_code == 422
    assert portal_miss.status_code == 404
    logged = [r.getMessage() for r in demo_request_log.records]
    assert any("Bad Request: /sandbox/paytrace/" in m for m in logged), logged
    assert any(": /sandbox/sagepro/api/v1/invoices" in m for m in logged), logged
    assert any("Not Found: /no/such/page/" in m for m in logged)
    assert wrong_path.status_code == 404  # a wrong base URL is not an expected miss
    assert any("Not Found: /sandbox/sagepro/api/v2/" in m for m in logged)
