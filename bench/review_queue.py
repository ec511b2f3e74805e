"""Review queue speed: the changelist's median page load at 10,000 open items.

    .venv/bin/python -m bench.review_queue [--db sqlite|postgres|both] [--items 10000]
        [--baseline 100] [--repeat 15]

No servers: on a fresh, migrated and seeded database (see `bench/harness.py`), in this
process, with one Django test client signed in as a finance reviewer:

1. Seed `--baseline` open review items, each with its payment (PayTrace record with a
   payer, card last four, amount, date) and, for every other one, its cash-receipt
   posting waiting for review (the customer column reads it).
2. Measure the baseline: the median load of each page below over `--repeat` loads
   (after two warm-up loads).
3. Seed up to `--items` open items the same way, and measure the same pages again.
4. Print each page's median at both sizes, the ratio (large / baseline) and whether the
   large median is under the goal (300 ms), and the SQL statements per page load at
   both sizes (they must be equal: the list's query count does not grow with rows).

Pages: the default view (open items, oldest first, page 1 of 50 a page), a search by
amount (`$67.22`), a search by card last four (`4242`), and a seven-day payment-date
filter.
"""

import random
import sys
import time
from datetime import timedelta
from decimal import Decimal

from bench import harness
from bench.harness import say

GOAL_MS = 300.0
SEARCH_AMOUNT = Decimal("67.22")
SEARCH_LAST4 = "4242"
NAMES = ["Acme Tools", "Inland Supply Co", "Globex", "Initech", "Umbrella", "Hooli"]


def seed(start: int, stop: int, rng: random.Random) -> None:
    """Open review items `start`..`stop - 1`, each with its payment."""
    from django.db import transaction
    from django.utils import timezone

    from integrations.models import Connection, PaymentTransaction, Posting, ReviewItem

    paytrace = Connection.objects.filter(kind=Connection.Kind.PAYTRACE).first()
    sagepro = Connection.objects.filter(kind=Connection.Kind.SAGEPRO).first()
    now = timezone.now()
    batch = 1000
    for first in range(start, stop, batch):
        numbers = range(first, min(first + batch, stop))
        txns = []
        for n in numbers:
            name = NAMES[n % len(NAMES)]
            # One payment in a hundred has the searched amount or last four.
            amount = (
                SEARCH_AMOUNT
                if n % 100 == 7
                else Decimal(rng.randint(100, 500_000)) / 100
            )
            last4 = SEARCH_LAST4 if n % 100 == 42 else f"{rng.randint(0, 9999):04d}"
            txns.append(
                PaymentTransaction(
                    connection=paytrace,
                    transaction_id=str(910_000_000 + n),
                    transaction_type="SALE",
                    gateway_status="settled",
                    mapped_status="Paid",
                    amount=amount,
                    currency="USD",
                    invoice_reference=f"INV-{50_000 + n}",
                    customer_reference=f"C{n % 400:04d}",
                    card_last4=last4,
                    card_brand="VISA",
                    created_at=now - timedelta(minutes=rng.randint(0, 60 * 24 * 60)),
                    source_record={
                        "billing_address": {"name": f"{name} {n % 400}"},
                        "receipt_emailed_to": f"ap{n % 400}@example.com",
                    },
                )
            )
        with transaction.atomic():
            created = PaymentTransaction.objects.bulk_create(txns)
            Posting.objects.bulk_create(
                Posting(
                    transaction=txn,
                    sagepro=sagepro,
                    idempotency_key=f"bench-review-{txn.transaction_id}",
                    state=Posting.State.NEEDS_REVIEW,
                    payload={"custno": txn.customer_reference},
                )
                for txn in created[::2]
            )
            ReviewItem.objects.bulk_create(
                ReviewItem(
                    transaction=txn,
                    kind=ReviewItem.Kind.UNMATCHED,
                    reason="No open invoice matches the invoice reference "
                    f"{txn.invoice_reference}. Candidates scored below 0.5.",
                    created_at=txn.created_at,
                )
                for txn in created
            )


def analyze() -> None:
    """Refresh the planner's statistics after the bulk load, as autovacuum would."""
    from django.db import connection

    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")


def pages() -> dict[str, dict[str, str]]:
    from django.utils import timezone

    today = timezone.localdate()
    return {
        "default view": {},
        "search amount": {"q": f"${SEARCH_AMOUNT}"},
        "search last four": {"q": SEARCH_LAST4},
        "date filter (7 days)": {
            "paid_from": (today - timedelta(days=7)).isoformat(),
            "paid_to": today.isoformat(),
        },
    }


def measure(client, repeat: int) -> dict[str, tuple[float, int, int]]:  # noqa: ANN001
    """Per page: median milliseconds, SQL statements, rows listed."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from django.urls import reverse

    url = reverse("admin:integrations_reviewitem_changelist")
    results = {}
    for name, params in pages().items():
        for _ in range(2):
            client.get(url, params)
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url, params)
            times.append((time.perf_counter() - started) * 1000)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: HTTP {response.status_code}")
        with CaptureQueriesContext(connection) as queries:
            response = client.get(url, params)
        rows = response.context_data["cl"].result_count
        results[name] = (harness.median(times), len(queries.captured_queries), rows)
    return results


def run(args) -> int:  # noqa: ANN001
    bench = harness.Bench(args.db, env_overrides=harness.env_overrides(args))
    with bench:
        bench.prepare()
        from django.test import Client

        from integrations.roles import FINANCE_REVIEWER
        from tests.factories import make_user

        rng = random.Random(13)
        client = Client()
        client.force_login(make_user(group=FINANCE_REVIEWER, username="bench-rita"))

        started = time.monotonic()
        seed(0, args.baseline, rng)
        say(f"Seeded {args.baseline} open items in {time.monotonic() - started:.1f} s")
        small = measure(client, args.repeat)

        started = time.monotonic()
        seed(args.baseline, args.items, rng)
        say(
            f"Seeded up to {args.items} open items in {time.monotonic() - started:.1f} s"
        )
        large = measure(client, args.repeat)

        rows = []
        worst = 0.0
        same_queries = True
        for name in small:
            base_ms, base_q, _ = small[name]
            ms, queries, listed = large[name]
            worst = max(worst, ms)
            same_queries &= base_q == queries
            rows.append(
                [
                    name,
                    f"{base_ms:.1f}",
                    f"{ms:.1f}",
                    f"{ms / base_ms:.2f}",
                    f"{base_q} / {queries}",
                    listed,
                ]
            )
        say()
        say(f"Review queue, {args.db}: median of {args.repeat} loads per page")
        say(
            harness.table(
                [
                    "page",
                    f"ms at {args.baseline}",
                    f"ms at {args.items}",
                    "ratio",
                    "SQL (both)",
                    "rows selected",
                ],
                rows,
            )
        )
        met = worst < GOAL_MS
        say(
            f"slowest median at {args.items} = {worst:.1f} ms (goal < {GOAL_MS:.0f} ms)"
            f" → {'MET' if met else 'MISSED'}"
        )
        say(
            "SQL statements per page: "
            + ("the same at both sizes" if same_queries else "GROW with the rows")
        )
        return 0 if met and same_queries else 1


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--baseline", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    if not 1 <= args.baseline < args.items <= 200_000 or not 1 <= args.repeat <= 1000:
        parser.error("need 1 <= --baseline < --items <= 200000 and --repeat 1..1000")
    if args.db == "both":
        return harness.run_per_database("bench.review_queue", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
