"""Pipeline: webhook in → qcluster → Sage Pro cash receipt, against direct posting.

    .venv/bin/python -m bench.pipeline [--db sqlite|postgres|both] [--events 500]
        [--latency-ms 0,50] [--warmup 5]

For each gateway latency in `--latency-ms` (one after the other, on one database):

1. Set the Sage Pro sandbox's latency fault (`POST _faults {"mode": "latency", "ms": M}`;
   0 clears every fault). It delays every gateway call of the run: direct and pipeline.
2. Direct (the ceiling): post N cash receipts straight to the sandbox over HTTP, one
   call per receipt (`SageProConnector.post_cash_receipt`), from 2 threads (as many as
   the cluster has workers, Q_WORKERS=2).
3. Start a real qcluster, send `--warmup` events through the webhook and wait until
   they are posted (cluster start-up, the first schedules and the mirror's first sync
   fall here; not timed), then send N signed `transaction.approved` events for N other
   open invoices through the webhook (4 senders) and wait (bounded) until every one is
   processed and posted. Rate = N / (last `Posting.posted_at` − first
   `Event.received_at`); latency = `posted_at − received_at` per event.
4. Verify exactly once: every event processed, every posting posted, exactly N receipts
   in the sandbox for the N transactions and no reference with two. Stop the cluster.

Goals: at 0 ms, `pipeline / direct ≥ 1.0`; at any latency above 0, pipeline
≥ 100 events/s with 2 workers (the ratio is printed as well).
"""

import random
import sys
import threading
import time
from dataclasses import dataclass
from decimal import Decimal

from bench import harness
from bench.harness import WEBHOOK_PATH, Delivery, say

RATIO_GOAL = 1.0
RATE_GOAL = 100.0  # events/s with 2 workers, when the gateway has latency
DIRECT_THREADS = 2
FIRST_TXN = 800_000_000
RUN_SPAN = 10_000_000  # transaction ids per (latency) run: 8xx_000_000 + i


@dataclass
class Run:
    """One batch of events the benchmark sent, identified by a range of PayTrace ids.

    Every id has the same number of digits, so a range of ids is a range of strings:
    each query below filters by it, whatever else the database holds.
    """

    first: int
    count: int

    def only_mine(self, queryset, field: str):  # noqa: ANN001, ANN201 - QuerySets
        """Rows whose `field` is one of this run's ids (as text: same length, in range)."""
        from django.db.models.functions import Length

        low, high = str(self.first), str(self.first + self.count - 1)
        if len(low) != len(high):
            raise ValueError(f"ids {low}..{high} differ in length")
        return queryset.alias(_id_length=Length(field)).filter(
            **{f"{field}__gte": low, f"{field}__lte": high, "_id_length": len(low)}
        )

    def events(self):  # noqa: ANN201
        from integrations.models import Event

        return self.only_mine(Event.objects.all(), "transaction_id")

    def postings(self):  # noqa: ANN201
        from integrations.models import Posting

        return self.only_mine(Posting.objects.all(), "transaction__transaction_id")

    def receipts(self):  # noqa: ANN201
        from integrations.sandbox.sagepro.models import CashReceipt

        return self.only_mine(CashReceipt.objects.filter(deleted=False), "reference")


def seed_invoices(count: int, seed: int = 7) -> list[tuple[str, str, Decimal]]:
    """Add `count` open invoices; return (invno, custno, amount) for each."""
    from django.db import transaction

    from integrations.sandbox.sagepro import seed as sandbox

    rng = random.Random(seed)
    out: list[tuple[str, str, Decimal]] = []
    ticker = harness.Ticker(5.0, lambda: f"seeded {len(out)}/{count} invoices")
    with transaction.atomic():
        for i in range(count):
            ticker.tick()
            custno = sandbox.INVOICED[i % len(sandbox.INVOICED)]
            amount = (Decimal(rng.randint(2_500, 250_000)) / 100).quantize(
                Decimal("0.01")
            )
            out.append((sandbox.seed_invoice(custno, amount), custno, amount))
    return out


def post_direct(
    bench: harness.Bench, invoices: list, prefix: str
) -> tuple[float, list[float]]:
    """Post one receipt per invoice straight to the sandbox, one call each, from
    DIRECT_THREADS threads; return (seconds, latencies)."""
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
            bench.sagepro_url, settings.SANDBOX_SAGEPRO_API_KEY, "01", timeout=30
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
                reference=f"{prefix}-{i}",
                applications=(Application(invno, amount),),
            )
            began = time.perf_counter()
            try:
                sage.post_cash_receipt(f"{prefix}-key-{i}", receipt)
            except Exception as exc:  # noqa: BLE001 - reported below
                with lock:
                    failures.append(f"{invno}: {exc}")
                continue
            with lock:
                latencies.append(time.perf_counter() - began)

    threads = [
        threading.Thread(target=worker, daemon=True) for _ in range(DIRECT_THREADS)
    ]
    ticker = harness.Ticker(5.0, lambda: f"direct: {len(latencies)}/{len(invoices)}")
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 600
    while any(t.is_alive() for t in threads) and time.monotonic() < deadline:
        for thread in threads:
            thread.join(0.2)
        ticker.tick()
    seconds = time.perf_counter() - began
    if failures or len(latencies) != len(invoices):
        raise RuntimeError(
            f"{len(invoices) - len(latencies)} direct posts failed or timed out, "
            f"e.g. {failures[:3]}"
        )
    return seconds, latencies


def post_batched(bench: harness.Bench, invoices: list, prefix: str) -> float:
    """The gateway's own ceiling: the same kind of receipts posted straight to the
    sandbox's batch call (GATEWAY_BATCH_SIZE each), from DIRECT_THREADS threads;
    returns the seconds it took. No portal work at all: what Sage Pro (here, the
    emulator on this machine) can take, which bounds any pipeline."""
    from django.conf import settings

    from integrations.connectors.sagepro import (
        Application,
        CashReceipt,
        SageProConnector,
    )
    from integrations.sandbox.sagepro import seed

    today = seed.today()
    size = settings.GATEWAY_BATCH_SIZE
    chunks = iter(
        [
            list(enumerate(invoices))[start : start + size]
            for start in range(0, len(invoices), size)
        ]
    )
    lock = threading.Lock()
    failures: list[str] = []

    def worker() -> None:
        sage = SageProConnector(
            bench.sagepro_url, settings.SANDBOX_SAGEPRO_API_KEY, "01", timeout=60
        )
        while True:
            with lock:
                chunk = next(chunks, None)
            if chunk is None:
                return
            items = [
                (
                    f"{prefix}-key-{i}",
                    CashReceipt(
                        custno=custno,
                        date=today,
                        amount=amount,
                        method="CARD",
                        reference=f"{prefix}-{i}",
                        applications=(Application(invno, amount),),
                    ),
                )
                for i, (invno, custno, amount) in chunk
            ]
            try:
                results = sage.post_cash_receipts(items)
            except Exception as exc:  # noqa: BLE001 - reported below
                with lock:
                    failures.append(str(exc))
                continue
            with lock:
                failures.extend(str(r.error) for r in results if r.error is not None)

    threads = [
        threading.Thread(target=worker, daemon=True) for _ in range(DIRECT_THREADS)
    ]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    if failures:
        raise RuntimeError(f"{len(failures)} batched posts failed, e.g. {failures[:3]}")
    return time.perf_counter() - began


def build_events(invoices: list, first_txn: int, prefix: str) -> list[Delivery]:
    """One unsigned `transaction.approved` per invoice, paying it in full."""
    from django.utils import timezone

    from tests.webhooks import event_body, paytrace_record, paytrace_time

    created = paytrace_time(timezone.now())
    out = []
    for i, (invno, _custno, amount) in enumerate(invoices):
        record = paytrace_record(
            transaction_id=first_txn + i,
            invoice_id=invno,
            amount=amount,
            created={"through": "API", "at": created, "by": "apiuser"},
        )
        body = event_body("transaction.approved", record).encode()
        out.append(Delivery(body=body, msg_id=f"msg_{prefix}_{first_txn + i}"))
    return out


def progress_line(run: Run) -> str:
    from django.db.models import Count

    from integrations.models import Posting

    events = dict(run.events().values_list("state").annotate(n=Count("pk")).order_by())
    posted = run.postings().filter(state=Posting.State.POSTED).count()
    return (
        f"{run.count} events: by state {events or '{}'}; "
        f"receipts posted {posted}/{run.count}"
    )


def is_settled(run: Run) -> bool:
    """Every event of the run finished and every posting reached an end state."""
    from integrations.models import Event, Posting

    done = run.events().filter(state__in=[Event.State.PROCESSED, Event.State.DEAD])
    settled = run.postings().filter(
        state__in=[Posting.State.POSTED, Posting.State.DEAD, Posting.State.NEEDS_REVIEW]
    )
    return done.count() >= run.count and settled.count() >= run.count


def wait_for(bench: harness.Bench, run: Run, limit: float) -> bool:
    """Wait (at most `limit` s) until the run is settled, with progress lines."""
    ticker = harness.Ticker(5.0, lambda: progress_line(run))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        bench.check_children()
        if is_settled(run):
            return True
        ticker.tick()
        time.sleep(0.25)
    return False


def measure(run: Run) -> dict:
    """Received→posted per event, and the run's span (first received, last posted)."""
    from integrations.models import Posting

    received: dict[str, object] = {}
    for txn, at in run.events().values_list("transaction_id", "received_at"):
        previous = received.get(txn)
        received[txn] = at if previous is None or at < previous else previous
    latencies = []
    last = None
    for txn, posted_at in (
        run.postings()
        .filter(state=Posting.State.POSTED)
        .values_list("transaction__transaction_id", "posted_at")
    ):
        if txn in received and posted_at is not None:
            latencies.append((posted_at - received[txn]).total_seconds())
            last = posted_at if last is None or posted_at > last else last
    first = min(received.values()) if received else None
    seconds = (last - first).total_seconds() if first and last else float("nan")
    return {"seconds": seconds, "latencies": latencies}


def verify(run: Run) -> list[str]:
    """Exactly once: every event processed, one posted receipt per transaction."""
    from django.db.models import Count

    from integrations.models import Event, Posting

    problems = []
    states = dict(run.events().values_list("state").annotate(n=Count("pk")).order_by())
    if states.get(Event.State.PROCESSED, 0) != run.count or len(states) != 1:
        problems.append(f"event states {states}, expected {run.count} processed")
    postings = dict(
        run.postings().values_list("state").annotate(n=Count("pk")).order_by()
    )
    if postings.get(Posting.State.POSTED, 0) != run.count or len(postings) != 1:
        problems.append(f"posting states {postings}, expected {run.count} posted")
    live = run.receipts()
    receipts = live.count()
    if receipts != run.count:
        problems.append(f"{receipts} receipts in Sage Pro, expected {run.count}")
    dupes = live.values("reference").annotate(n=Count("pk")).filter(n__gt=1).count()
    if dupes:
        problems.append(f"{dupes} references carry more than one receipt")
    return problems


def send(
    bench: harness.Bench, deliveries: list[Delivery], concurrency: int, label: str
) -> harness.LoadResult:
    from django.conf import settings

    harness.sign_all(deliveries, settings.DEMO_WEBHOOK_SECRET)
    sent = harness.post_all(bench.port, WEBHOOK_PATH, deliveries, concurrency, label)
    say(f"  {sent.describe()}")
    if sent.failed:
        raise RuntimeError(f"{sent.failed} {label} events were not accepted")
    return sent


def first_tick() -> int:
    """Queue every django-q2 schedule that is due, as the cluster's scheduler does on its
    first tick; return how many.

    The cluster's own first tick comes ~30 s after it starts. Queued here, just before
    the cluster starts, the due schedules (the sweeper, the PayTrace poll and the Sage Pro
    mirror's first sync, whatever the product schedules) run first thing, during the
    warm-up, instead of in the middle of a timed run.
    """
    import logging

    from django.db import connections
    from django.utils import timezone
    from django_q.models import Schedule
    from django_q.scheduler import scheduler

    due = Schedule.objects.exclude(repeats=0).filter(next_run__lt=timezone.now())
    count = due.count()
    q_logger = logging.getLogger("django-q")
    level = q_logger.level
    q_logger.setLevel(logging.WARNING)  # one INFO line per task otherwise
    try:
        scheduler()
    finally:
        q_logger.setLevel(level)
        connections.close_all()
    return count


def start_cluster(bench: harness.Bench) -> None:
    """Queue the first tick's schedules, then start the qcluster."""
    due = first_tick()
    bench.start_cluster()
    say(
        f"qcluster running (pid {bench.cluster.process.pid}); {due} due schedules "
        "queued for it"
    )


def warm_up(bench: harness.Bench, invoices: list, first_txn: int, limit: float) -> None:
    """Send a few events and wait until they are posted and the queue is empty: the
    cluster is running and has run the first tick's schedules. Not timed."""
    from django_q.models import OrmQ

    began = time.monotonic()
    run = Run(first_txn, len(invoices))
    if invoices:
        send(bench, build_events(invoices, first_txn, "warm"), 2, "warm-up")
        if not wait_for(bench, run, limit):
            raise RuntimeError(
                f"warm-up did not finish in {limit:.0f} s: {progress_line(run)}"
            )
    deadline = time.monotonic() + min(limit, 120)
    while OrmQ.objects.exists() and time.monotonic() < deadline:
        bench.check_children()
        time.sleep(0.25)
    left = OrmQ.objects.count()
    say(
        f"  warm-up: {run.count} events posted in {time.monotonic() - began:.1f} s"
        + (f"; still {left} tasks queued (going on)" if left else "; queue empty")
    )


def run_latency(
    args, bench: harness.Bench, ms: int, invoices: list, index: int
) -> dict:  # noqa: ANN001
    n, w = args.events, args.warmup
    direct_invoices = invoices[:n]
    warm_invoices = invoices[n : n + w]
    pipe_invoices = invoices[n + w : 2 * n + w]
    batched_invoices = invoices[2 * n + w :]
    base = FIRST_TXN + index * RUN_SPAN
    run = Run(base + RUN_SPAN // 2, n)

    say(f"\n--- gateway latency {ms} ms ---")
    bench.set_latency(ms)
    say(f"Direct: posting {n} receipts one call at a time, {DIRECT_THREADS} threads…")
    direct_seconds, direct_lat = post_direct(bench, direct_invoices, f"direct{ms}")
    direct_rate = n / direct_seconds
    say(f"  direct: {direct_rate:.1f} receipts/s")
    say(f"Gateway ceiling: {n} receipts in batch calls, {DIRECT_THREADS} threads…")
    batched_rate = n / post_batched(bench, batched_invoices, f"batched{ms}")
    say(f"  batched: {batched_rate:.1f} receipts/s")

    deliveries = build_events(pipe_invoices, run.first, f"pipe{ms}")
    start_cluster(bench)
    warm_up(bench, warm_invoices, base, args.time_limit)
    say(f"Pipeline: sending {n} events with qcluster running…")
    send(bench, deliveries, args.concurrency, "webhook")
    finished = wait_for(bench, run, args.time_limit)
    if not finished:
        say(f"TIMED OUT after {args.time_limit:.0f} s: {progress_line(run)}")
    measured = measure(run)
    problems = verify(run)
    bench.stop_cluster()
    return {
        "ms": ms,
        "direct_rate": direct_rate,
        "batched_rate": batched_rate,
        "direct_seconds": direct_seconds,
        "direct_latencies": direct_lat,
        "pipe_rate": n / measured["seconds"] if measured["seconds"] > 0 else 0.0,
        "pipe_seconds": measured["seconds"],
        "latencies": measured["latencies"],
        "problems": problems if finished else [*problems, "timed out"],
    }


def run(args) -> int:  # noqa: ANN001
    latencies = harness.parse_ms_list(args.latency_ms)
    bench = harness.Bench(
        args.db, env_overrides=harness.env_overrides(args), keep=args.keep
    )
    results = []
    with bench:
        bench.prepare()
        from django.db import connections

        per_run = 3 * args.events + args.warmup
        say(f"Seeding {per_run * len(latencies)} open invoices…")
        invoices = seed_invoices(per_run * len(latencies))
        connections.close_all()
        bench.start_web()
        for index, ms in enumerate(latencies):
            chunk = invoices[index * per_run : (index + 1) * per_run]
            results.append(run_latency(args, bench, ms, chunk, index))
    return report(args, results)


def report(args, results: list[dict]) -> int:  # noqa: ANN001
    say(f"\nPipeline on {args.db}: {args.events} events per run, Q_WORKERS=2")
    rows = []
    for r in results:
        lat = r["latencies"]
        rows.append(
            [
                f"{r['ms']} ms",
                f"{r['direct_rate']:.1f}",
                f"{r['pipe_rate']:.1f}",
                f"{r['pipe_rate'] / r['direct_rate']:.2f}",
                f"{r['batched_rate']:.1f}",
                f"{r['pipe_rate'] / r['batched_rate']:.2f}",
                f"{r['pipe_seconds']:.1f}",
                f"{harness.percentile(lat, 50):.2f}",
                f"{harness.percentile(lat, 95):.2f}",
                "yes" if not r["problems"] else "NO",
            ]
        )
    say(
        harness.table(
            [
                "gateway latency",
                "direct receipts/s",
                "pipeline events/s",
                "ratio",
                "gateway ceiling/s",
                "of ceiling",
                "pipeline s",
                "p50 s",
                "p95 s",
                "exactly once",
            ],
            rows,
        )
    )
    failed = False
    for r in results:
        ratio = r["pipe_rate"] / r["direct_rate"]
        if r["ms"] == 0:
            say(harness.verdict("at 0 ms: ratio pipeline/direct", ratio, RATIO_GOAL))
        else:
            say(f"at {r['ms']} ms: ratio pipeline/direct = {ratio:.2f}")
            say(
                harness.verdict(
                    f"at {r['ms']} ms: pipeline events/s", r["pipe_rate"], RATE_GOAL
                )
            )
        for problem in r["problems"]:
            say(f"VERIFY FAILED at {r['ms']} ms: {problem}")
            failed = True
        if not r["problems"]:
            say(
                f"at {r['ms']} ms: verified {args.events} events processed, "
                f"{args.events} receipts, no duplicate references"
            )
    return 1 if failed else 0


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=500)
    parser.add_argument(
        "--latency-ms",
        default="0,50",
        help="Gateway latencies to run, in turn (default 0,50).",
    )
    parser.add_argument(
        "--warmup", type=int, default=5, help="Untimed events after each cluster start."
    )
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
