"""Ingest: signed webhook POSTs per second, against one committed insert and a bare 202.

    .venv/bin/python -m bench.ingest [--db sqlite|postgres|both] [--events 3000]
        [--concurrency 16] [--rounds 3]

Each round POSTs N distinct, signed `transaction.approved` events, with C keep-alive
clients, to three views on the same server:

- `webhook`: `/webhooks/paytrace/paytrace-sandbox/` (verify, redact, validate, store,
  wake a worker, answer 202);
- `store`: `/sandbox/bare-store/`, which stores each body with one committed insert and
  answers 202: the least a webhook that loses nothing must do;
- `bare`: `/sandbox/bare-202/`, a view that only answers 202.

No qcluster runs: storing and queueing are measured, processing is not. The order of the
three alternates (bare, store, webhook in odd rounds; reversed in even ones) and the
medians are compared. Goal: `webhook / store ≥ 0.8`; `webhook / bare` is printed too.
The run is valid only with 0 non-2xx answers and every event stored.
"""

import sys
import time
from decimal import Decimal

from bench import harness
from bench.harness import BARE_PATH, WEBHOOK_PATH, Delivery, say

STORE_PATH = "/sandbox/bare-store/"
PATHS = {"bare": BARE_PATH, "store": STORE_PATH, "webhook": WEBHOOK_PATH}

GOAL = 0.8  # webhook ÷ store-only
WARMUP = 200


def build_deliveries(prefix: str, count: int, first_txn: int) -> list[Delivery]:
    """Distinct events, as PayTrace's relay would send them (unsigned yet)."""
    from django.utils import timezone

    from tests.webhooks import event_body, paytrace_record, paytrace_time

    created = paytrace_time(timezone.now())
    out = []
    for i in range(count):
        record = paytrace_record(
            transaction_id=first_txn + i,
            invoice_id=str(10001 + i % 56),
            amount=Decimal(f"{25 + i % 900}.{i % 100:02d}"),
            created={"through": "API", "at": created, "by": "apiuser"},
        )
        body = event_body("transaction.approved", record).encode()
        out.append(Delivery(body=body, msg_id=f"msg_{prefix}_{i:06d}"))
    return out


def run(args) -> int:  # noqa: ANN001
    bench = harness.Bench(
        args.db, env_overrides=harness.env_overrides(args), keep=args.keep
    )
    with bench:
        bench.prepare()
        from django.conf import settings

        secret = settings.DEMO_WEBHOOK_SECRET
        bench.start_web()

        say(f"Building {args.rounds} × {args.events} events (+{WARMUP} warm-up)…")
        warmup = build_deliveries("warm", WARMUP, 700_000_000)
        rounds = [
            build_deliveries(f"r{r}", args.events, 710_000_000 + r * 1_000_000)
            for r in range(args.rounds)
        ]
        harness.sign_all(warmup, secret)
        for path in PATHS.values():
            result = harness.post_all(
                bench.port, path, warmup, args.concurrency, f"warm-up {path}"
            )
            if result.failed:
                raise RuntimeError(f"warm-up failed: {result.describe()}")

        results: dict[str, list[harness.LoadResult]] = {k: [] for k in PATHS}
        for r, deliveries in enumerate(rounds, start=1):
            order = list(PATHS) if r % 2 else list(reversed(PATHS))
            for kind in order:
                path = PATHS[kind]
                harness.sign_all(deliveries, secret)  # fresh timestamps, not timed
                result = harness.post_all(
                    bench.port,
                    path,
                    deliveries,
                    args.concurrency,
                    f"round {r} {kind}",
                    time_limit=args.time_limit,
                )
                say(f"  {result.describe()}")
                results[kind].append(result)
                bench.check_children()
                time.sleep(1)  # let the server settle between runs

        stored = check_stored(args.events * args.rounds + WARMUP)
    return report(args, results, stored)


def check_stored(expected: int) -> tuple[bool, str]:
    """Every accepted event is stored once; the django-q2 tasks queued are counted
    (one per event, or a few wake-ups for them all, depending on the design)."""
    from django_q.models import OrmQ

    from integrations.models import Event

    events = Event.objects.count()
    tasks = OrmQ.objects.count()
    ok = events == expected
    return ok, (
        f"stored events {events} (expected {expected}): {'OK' if ok else 'MISMATCH'}; "
        f"django-q2 tasks queued {tasks}"
    )


def report(args, results: dict, stored: tuple[bool, str]) -> int:  # noqa: ANN001
    bare, hook, store = results["bare"], results["webhook"], results["store"]
    rows = []
    for r, (b, w, st) in enumerate(zip(bare, hook, store, strict=True), start=1):
        rows.append(
            [
                f"round {r}",
                f"{b.rate:.1f}",
                f"{st.rate:.1f}",
                f"{w.rate:.1f}",
                f"{w.rate / st.rate:.2f}",
                f"{w.rate / b.rate:.2f}",
                f"{harness.percentile(st.latencies, 50) * 1000:.1f}",
                f"{harness.percentile(st.latencies, 95) * 1000:.1f}",
                f"{harness.percentile(w.latencies, 50) * 1000:.1f}",
                f"{harness.percentile(w.latencies, 95) * 1000:.1f}",
                b.failed + st.failed + w.failed,
            ]
        )
    bare_rate = harness.median([b.rate for b in bare])
    hook_rate = harness.median([w.rate for w in hook])
    store_rate = harness.median([st.rate for st in store])
    all_store = [x for st in store for x in st.latencies]
    all_hook = [x for w in hook for x in w.latencies]
    rows.append(
        [
            "median",
            f"{bare_rate:.1f}",
            f"{store_rate:.1f}",
            f"{hook_rate:.1f}",
            f"{hook_rate / store_rate:.2f}",
            f"{hook_rate / bare_rate:.2f}",
            f"{harness.percentile(all_store, 50) * 1000:.1f}",
            f"{harness.percentile(all_store, 95) * 1000:.1f}",
            f"{harness.percentile(all_hook, 50) * 1000:.1f}",
            f"{harness.percentile(all_hook, 95) * 1000:.1f}",
            sum(x.failed for x in bare + store + hook),
        ]
    )
    errors = sum(x.failed for x in bare + hook + store)
    say(
        f"\nIngest on {args.db}: {args.events} events/round, "
        f"{args.concurrency} clients, {args.rounds} rounds"
    )
    say(
        harness.table(
            [
                "",
                "bare req/s",
                "store req/s",
                "webhook req/s",
                "hook/store",
                "hook/bare",
                "store p50 ms",
                "store p95 ms",
                "hook p50 ms",
                "hook p95 ms",
                "errors",
            ],
            rows,
        )
    )
    stored_ok, stored_line = stored
    say(stored_line)
    reconnects = sum(x.reconnects for x in bare + hook + store)
    if reconnects:
        say(f"reconnects (server closed a keep-alive connection): {reconnects}")
    say(
        harness.verdict(
            "ratio webhook/store (one committed insert per request)",
            hook_rate / store_rate,
            GOAL,
        )
    )
    say(
        f"ratio webhook/bare (a view that only answers 202) = {hook_rate / bare_rate:.2f}"
    )
    if errors or not stored_ok:
        say(f"INVALID RUN: {errors} non-2xx answers or transport errors; {stored_line}")
        return 1
    return 0


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--time-limit", type=float, default=240.0, help="Max seconds per timed run."
    )
    args = parser.parse_args()
    if args.db == "both":
        return harness.run_per_database("bench.ingest", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
