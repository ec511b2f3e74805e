"""Pipeline: webhook in → qcluster → Sage Pro cash receipt, against direct posting.

    .venv/bin/python -m bench.pipeline [--db sqlite|postgres|both] [--events 500]

1. Seed 2N open invoices in the Sage Pro sandbox (N for each half).
2. Direct posting rate (the ceiling): post N cash receipts straight to the sandbox over
   HTTP with `SageProConnector.post_cash_receipt`, 2 threads (the cluster's workers).
3. Pipeline: start a real qcluster (Q_WORKERS=2), send N signed `transaction.approved`
   events for the other N invoices through the webhook, and wait (bounded) until every
   one is processed and posted. Rate = N / (last `posted_at` − first `received_at`);
   latency = `Posting.posted_at − Event.received_at`.
4. Verify: every event processed, exactly N pipeline receipts in the sandbox, none
   duplicated (counted by reference). Goal: `pipeline / direct ≥ 0.5`.
"""

import random
import sys
import threading
import time
from decimal import Decimal

from bench import harness
from bench.harness import WEBHOOK_PATH, Delivery, say

GOAL = 0.5
DIRECT_THREADS = 2
FIRST_TXN = 800_000_000


def seed_invoices(count: int) -> list[tuple[str, str, Decimal]]:
    """Add `count` open invoices; return (invno, custno, amount) for each."""
    from django.db import transaction

    from integrations.sandbox.sagepro import seed

    rng = random.Random(7)
    out = []
    with transaction.atomic():
        for i in range(count):
            custno = seed.INVOICED[i % len(seed.INVOICED)]
            amount = (Decimal(rng.randint(2_500, 250_000)) / 100).quantize(
                Decimal("0.01")
            )
            out.append((seed.seed_invoice(custno, amount), custno, amount))
    return out


def post_direct(bench: harness.Bench, invoices: list) -> tuple[float, list[float]]:
    """Post one receipt per invoice straight to the sandbox; return (seconds, latencies)."""
    from django.conf import settings

    from integrations.connectors.sagepro import (
        Application,
        CashReceipt,
        SageProConnector,
    )
    from integrations.sandbox.sagepro import seed

    today = seed.today()
    items = iter(enumerate(invoices))
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []

    def worker() -> None:
        sage = SageProConnector(
            bench.sagepro_url, settings.SANDBOX_SAGEPRO_API_KEY, "01", timeout=10
        )
        while True:
            with lock:
                item = next(items, None)
            if item is None:
                return
            i, (invno, custno, amount) = item
            receipt = CashReceipt(
                custno=custno,
                date=today,
                amount=amount,
                method="CARD",
                reference=f"direct-{i}",
                applications=(Application(invno, amount),),
            )
            began = time.perf_counter()
            try:
                sage.post_cash_receipt(f"direct-key-{i}", receipt)
            except Exception as exc:  # noqa: BLE001 - reported below
                with lock:
                    failures.append(f"{invno}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [threading.Thread(target=worker) for _ in range(DIRECT_THREADS)]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    seconds = time.perf_counter() - began
    if failures:
        raise RuntimeError(f"{len(failures)} direct posts failed, e.g. {failures[:3]}")
    return seconds, latencies


def build_events(invoices: list) -> list[Delivery]:
    from django.utils import timezone

    from tests.webhooks import event_body, paytrace_record, paytrace_time

    created = paytrace_time(timezone.now())
    out = []
    for i, (invno, _custno, amount) in enumerate(invoices):
        record = paytrace_record(
            transaction_id=FIRST_TXN + i,
            invoice_id=invno,
            amount=amount,
            created={"through": "API", "at": created, "by": "apiuser"},
        )
        body = event_body("transaction.approved", record).encode()
        out.append(Delivery(body=body, msg_id=f"msg_pipe_{i:06d}"))
    return out


def progress_line() -> str:
    from integrations.models import Event, Posting

    processed = Event.objects.filter(state=Event.State.PROCESSED).count()
    posted = Posting.objects.filter(state=Posting.State.POSTED).count()
    other = Event.objects.exclude(state=Event.State.PROCESSED).count()
    return f"events processed {processed} (not yet {other}), receipts posted {posted}"


def wait_for_pipeline(bench: harness.Bench, count: int, limit: float) -> bool:
    from integrations.models import Event, Posting

    ticker = harness.Ticker(5.0, progress_line)
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        bench.check_children()
        done = Event.objects.filter(
            state__in=[Event.State.PROCESSED, Event.State.DEAD]
        ).count()
        settled = Posting.objects.filter(
            state__in=[
                Posting.State.POSTED,
                Posting.State.DEAD,
                Posting.State.NEEDS_REVIEW,
            ]
        ).count()
        if done >= count and settled >= count:
            return True
        ticker.tick()
        time.sleep(0.5)
    return False


def measure_pipeline() -> dict:
    from django.db.models import Max, Min

    from integrations.models import Event, Posting

    events = {
        e.transaction_id: e.received_at
        for e in Event.objects.only("transaction_id", "received_at")
    }
    latencies = []
    for posting in Posting.objects.filter(state=Posting.State.POSTED).select_related(
        "transaction"
    ):
        received = events.get(posting.transaction.transaction_id)
        if received is not None:
            latencies.append((posting.posted_at - received).total_seconds())
    first = Event.objects.aggregate(first=Min("received_at"))["first"]
    last = Posting.objects.aggregate(last=Max("posted_at"))["last"]
    return {
        "seconds": (last - first).total_seconds() if first and last else float("nan"),
        "latencies": latencies,
    }


def verify(count: int) -> list[str]:
    from django.db.models import Count

    from integrations.models import Event, Posting
    from integrations.sandbox.sagepro.models import CashReceipt

    problems = []
    states = dict(Event.objects.values_list("state").annotate(n=Count("pk")).order_by())
    if states.get(Event.State.PROCESSED, 0) != count or len(states) != 1:
        problems.append(f"event states {states}, expected {count} processed")
    postings = dict(
        Posting.objects.values_list("state").annotate(n=Count("pk")).order_by()
    )
    if postings.get(Posting.State.POSTED, 0) != count or len(postings) != 1:
        problems.append(f"posting states {postings}, expected {count} posted")
    refs = [str(FIRST_TXN + i) for i in range(count)]
    live = CashReceipt.objects.filter(deleted=False, reference__in=refs)
    receipts = live.count()
    if receipts != count:
        problems.append(f"{receipts} pipeline receipts in Sage Pro, expected {count}")
    dupes = live.values("reference").annotate(n=Count("pk")).filter(n__gt=1).count()
    if dupes:
        problems.append(f"{dupes} references carry more than one receipt")
    return problems


def run(args) -> int:  # noqa: ANN001
    bench = harness.Bench(args.db, keep=args.keep)
    with bench:
        bench.prepare()
        from django.conf import settings
        from django.db import connections

        say(f"Seeding {2 * args.events} open invoices…")
        invoices = seed_invoices(2 * args.events)
        direct_invoices, pipe_invoices = invoices[::2], invoices[1::2]
        connections.close_all()
        bench.start_web()

        say(f"Direct: posting {args.events} receipts with {DIRECT_THREADS} threads…")
        direct_seconds, direct_lat = post_direct(bench, direct_invoices)
        direct_rate = args.events / direct_seconds
        say(f"  direct: {direct_rate:.1f} receipts/s")

        deliveries = build_events(pipe_invoices)
        bench.start_cluster()
        say(f"Pipeline: sending {args.events} events with qcluster running…")
        harness.sign_all(deliveries, settings.DEMO_WEBHOOK_SECRET)
        sent = harness.post_all(
            bench.port, WEBHOOK_PATH, deliveries, args.concurrency, "webhook"
        )
        say(f"  {sent.describe()}")
        if sent.failed:
            raise RuntimeError("some events were not accepted")
        finished = wait_for_pipeline(bench, args.events, args.time_limit)
        if not finished:
            say(f"TIMED OUT after {args.time_limit:.0f} s: {progress_line()}")
        measured = measure_pipeline()
        problems = verify(args.events)

    pipe_rate = args.events / measured["seconds"]
    lat = measured["latencies"]
    say(f"\nPipeline on {args.db}: {args.events} events, Q_WORKERS=2")
    say(
        harness.table(
            ["", "per s", "seconds", "p50 s", "p95 s"],
            [
                [
                    "direct post_cash_receipt (2 threads)",
                    f"{direct_rate:.1f}",
                    f"{direct_seconds:.1f}",
                    f"{harness.percentile(direct_lat, 50):.3f}",
                    f"{harness.percentile(direct_lat, 95):.3f}",
                ],
                [
                    "pipeline received→posted",
                    f"{pipe_rate:.1f}",
                    f"{measured['seconds']:.1f}",
                    f"{harness.percentile(lat, 50):.2f}",
                    f"{harness.percentile(lat, 95):.2f}",
                ],
            ],
        )
    )
    say(harness.verdict("ratio pipeline/direct", pipe_rate / direct_rate, GOAL))
    if problems or not finished:
        for problem in problems:
            say(f"VERIFY FAILED: {problem}")
        return 1
    say(
        f"Verified: {args.events} events processed, {args.events} receipts, "
        "no duplicate references"
    )
    return 0


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument(
        "--concurrency", type=int, default=4, help="Webhook senders (4)."
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=480.0,
        help="Max seconds to wait for the pipeline to drain.",
    )
    args = parser.parse_args()
    if args.db == "both":
        return harness.run_per_database("bench.pipeline", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
