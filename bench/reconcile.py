"""Reconciliation at scale: 10k, 50k and 100k PayTrace transactions against Sage Pro.

    .venv/bin/python -m bench.reconcile [--db sqlite|postgres|both] [--sizes 10000,50000,100000]

1. Fresh database (SQLite: a new file in a temp dir; PostgreSQL: drop and recreate
   `portal_bench_recon` on 127.0.0.1:5432), migrated.
2. For each size N, its own PayTrace connection and Sage Pro sandbox company, seeded with
   `bulk_create` (not timed): N transactions over 30 days, N open invoices, a posting per
   transaction that calls for one, a Sage Pro receipt (with its application line) per
   posted posting, N/1000 orphan receipts, and one settlement batch per day whose totals
   match. The mix per 100: 90 posted, 1 posted but missing in Sage Pro, 1 dead,
   2 pending, 2 in review (open item, no posting), 2 declined, 2 refunds.
3. Time `integrations.reconciliation.reconcile` over the 30 days. The Sage Pro connector
   talks to the sandbox in-process through `responses`, like `tests/bridge.py` but
   with one long-lived Django test client (the test bridge builds a client, and so
   loads every middleware, per request): real connector, real sandbox views, real
   JSON, no socket. The figure includes serving and reading the receipt listing.
4. Check every bucket count against the seeded mix and that the batches tie out, then
   print seconds per size, seconds per 10k transactions, and the linearity ratio
   t(largest) / t(smallest) ÷ (largest / smallest) (1.0 = perfectly linear).
"""

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from datetime import date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from bench import harness
from bench.harness import ROOT, say

PG_DB = "portal_bench_recon"
PG_URL = f"postgres://postgres@127.0.0.1:5432/{PG_DB}"
DAYS = 30
CUSTOMERS = ["ACME", "BLUEOX", "CASCAD", "DELTA", "EVERGR"]


def mix(i: int) -> str:
    """What transaction i is (per 100)."""
    slot = i % 100
    if slot < 90:
        return "posted"
    return {
        90: "missing",
        91: "dead",
        92: "pending",
        93: "pending",
        94: "review",
        95: "review",
        96: "declined",
        97: "declined",
        98: "refund",
        99: "refund",
    }[slot]


EXPECTED_BUCKET = {
    "posted": "posted",
    "missing": "missing_in_sage",
    "dead": "dead",
    "pending": "pending",
    "review": "in_review",
    "declined": "no_receipt_needed",
    "refund": "no_receipt_needed",
}


def setup(db: str, tmp: Path) -> None:
    if db == "postgres":
        import psycopg

        with psycopg.connect(harness.PG_ADMIN_DSN, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {PG_DB}")
        url = PG_URL
    else:
        url = f"sqlite:///{tmp / 'bench.sqlite3'}"
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "DATABASE_URL": url,
            "DEMO_MODE": "1",
            "SANDBOX_ENABLED": "1",
            "LOG_LEVEL": "WARNING",
            "ALLOWED_HOSTS": "testserver,127.0.0.1,localhost",
        }
    )
    os.chdir(ROOT)
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    started = time.monotonic()
    call_command("migrate", interactive=False, verbosity=0)
    say(f"Database {db} ({url}) migrated in {time.monotonic() - started:.1f} s")


def seed_size(index: int, size: int, first_day: date) -> tuple:
    """Seed one size in its own Sage Pro company; return the PayTrace connection and
    the expected bucket counts."""
    from django.conf import settings
    from django.db import transaction

    from integrations.models import PaymentTransaction, Posting, ReviewItem
    from integrations.sandbox.sagepro import seed
    from integrations.sandbox.sagepro.models import ArMast, CashReceipt

    company = f"B{index}"
    seed.seed(company)
    sagepro, paytrace = _bench_connections(index, size, company)
    zone = ZoneInfo(settings.BUSINESS_TIME_ZONE)
    base_id = 900_000_000 + index * 1_000_000
    started = time.monotonic()
    with transaction.atomic():
        txns, invoices, batches, expected = _payments(
            index, size, first_day, company, paytrace, base_id, zone
        )
        PaymentTransaction.objects.bulk_create(txns, batch_size=5000)
        ArMast.objects.bulk_create(invoices, batch_size=5000)

        postings, reviews, receipts = _outcomes(txns, company, sagepro, paytrace, zone)
        receipts += _orphan_receipts(size, company, first_day, base_id)
        expected["orphan_receipt"] = size // 1000
        Posting.objects.bulk_create(postings, batch_size=5000)
        ReviewItem.objects.bulk_create(reviews, batch_size=5000)
        CashReceipt.objects.bulk_create(receipts, batch_size=5000)
        _write_receipt_lines(company, receipts)
        _write_batches(index, first_day, paytrace, zone, batches)
    say(
        f"  seeded {size} transactions, {len(receipts)} receipts, {len(batches)} "
        f"batches in {time.monotonic() - started:.1f} s"
    )
    return paytrace, expected


def _bench_connections(index: int, size: int, company: str) -> tuple:
    """The Sage Pro connection for `company` and the PayTrace connection posting to it."""
    from django.conf import settings

    from integrations.models import Connection

    sagepro = Connection.objects.create(
        kind=Connection.Kind.SAGEPRO,
        name=f"Sage Pro bench {company}",
        slug=f"sagepro-bench-{index}",
        base_url="http://testserver/sandbox/sagepro/api/v1",
        password=settings.SANDBOX_SAGEPRO_API_KEY,
        company_id=company,
    )
    paytrace = Connection.objects.create(
        kind=Connection.Kind.PAYTRACE,
        name=f"PayTrace bench {size}",
        slug=f"paytrace-bench-{index}",
        base_url="https://api.paytrace.example",
        sagepro=sagepro,
    )
    return sagepro, paytrace


def _payments(
    index: int,
    size: int,
    first_day: date,
    company: str,
    paytrace: object,
    base_id: int,
    zone: ZoneInfo,
) -> tuple[list, list, dict, dict[str, int]]:
    """N transactions in the mix, one open invoice each, the settlement batches they
    fall in ({number: [count, net, ids]}) and the bucket counts to expect."""
    from integrations.models import PaymentTransaction
    from integrations.sandbox.sagepro import keys
    from integrations.sandbox.sagepro.models import ArMast

    rng = random.Random(size)
    expected = dict.fromkeys(EXPECTED_BUCKET.values(), 0)
    txns, invoices, batches = [], [], {}
    for i in range(size):
        kind = mix(i)
        expected[EXPECTED_BUCKET[kind]] += 1
        day = first_day + timedelta(days=i % DAYS)
        created = datetime(day.year, day.month, day.day, 8, tzinfo=zone) + timedelta(
            seconds=rng.randint(0, 36_000)
        )
        amount = Decimal(rng.randint(500, 250_000)) / 100
        custno = CUSTOMERS[i % len(CUSTOMERS)]
        invno = str(200_000 + i)
        settles = kind not in ("declined",) and i % DAYS != DAYS - 1
        batch = f"{index}{i % DAYS:03d}" if settles else ""
        txns.append(
            PaymentTransaction(
                connection=paytrace,
                transaction_id=str(base_id + i),
                transaction_type="REFUND" if kind == "refund" else "SALE",
                gateway_status={
                    "declined": "declined",
                    "refund": "refunded",
                }.get(kind, "settled" if settles else "pending_settlement"),
                mapped_status={"declined": "Failed", "refund": "Refunded"}.get(
                    kind, "Paid"
                ),
                amount=amount,
                currency="USD",
                invoice_reference=invno,
                customer_reference=custno,
                batch_number=batch,
                created_at=created,
                settled_at=created + timedelta(hours=14) if settles else None,
            )
        )
        invoices.append(
            ArMast(
                company=company,
                invno=keys.pad_invno(invno),
                custno=keys.pad_custno(custno),
                invdte=day,
                invamt=amount,
                balance=amount,
            )
        )
        if batch:
            entry = batches.setdefault(batch, [0, Decimal("0.00"), []])
            entry[0] += 1
            entry[1] += -amount if kind == "refund" else amount
            entry[2].append(str(base_id + i))
    return txns, invoices, batches, expected


def _outcomes(
    txns: list, company: str, sagepro: object, paytrace: object, zone: ZoneInfo
) -> tuple[list, list, list]:
    """What the pipeline left for each transaction: a posting (posted, failed or dead)
    with a Sage Pro receipt when posted, or an open review item."""
    from integrations.models import Posting, ReviewItem
    from integrations.sandbox.sagepro import keys
    from integrations.sandbox.sagepro.models import CashReceipt

    postings, reviews, receipts = [], [], []
    for i, txn in enumerate(txns):
        kind = mix(i)
        if kind in ("declined", "refund"):
            continue
        if kind == "review":
            reviews.append(
                ReviewItem(
                    transaction=txn,
                    kind=ReviewItem.Kind.UNMATCHED,
                    reason="bench: no matching invoice",
                )
            )
            continue
        state = {
            "dead": Posting.State.DEAD,
            "pending": Posting.State.FAILED,
        }.get(kind, Posting.State.POSTED)
        number = f"{i + 1:06d}"
        postings.append(
            Posting(
                transaction=txn,
                sagepro=sagepro,
                idempotency_key=Posting.key_for(
                    paytrace, txn.transaction_id, Posting.Kind.CASH_RECEIPT
                ),
                state=state,
                document_number=number if state == Posting.State.POSTED else "",
            )
        )
        if kind == "posted":
            receipts.append(
                CashReceipt(
                    company=company,
                    rcptno=keys.pad_receipt_no(number),
                    custno=keys.pad_custno(txn.customer_reference),
                    paydate=txn.created_at.astimezone(zone).date(),
                    amount=txn.amount,
                    applied=txn.amount,
                    paymeth="VISA",
                    reference=txn.transaction_id,
                    idemkey=postings[-1].idempotency_key,
                )
            )
    return postings, reviews, receipts


def _orphan_receipts(size: int, company: str, first_day: date, base_id: int) -> list:
    """N/1000 Sage Pro receipts no PayTrace transaction explains."""
    from integrations.sandbox.sagepro import keys
    from integrations.sandbox.sagepro.models import CashReceipt

    receipts = []
    for n in range(size // 1000):
        number = f"{size + n + 1:06d}"
        receipts.append(
            CashReceipt(
                company=company,
                rcptno=keys.pad_receipt_no(number),
                custno=keys.pad_custno("ACME"),
                paydate=first_day + timedelta(days=n % DAYS),
                amount=Decimal("50.00"),
                unapplied=Decimal("50.00"),
                paymeth="VISA",
                reference=str(base_id + 900_000 + n),
                idemkey=f"orphan-{n}",
            )
        )
    return receipts


def _write_receipt_lines(company: str, receipts: list) -> None:
    """One application line per applied receipt, to the invoice of its transaction."""
    from integrations.sandbox.sagepro import keys
    from integrations.sandbox.sagepro.models import CashReceiptLine

    CashReceiptLine.objects.bulk_create(
        [
            CashReceiptLine(
                company=company,
                receipt=r,
                rcptno=r.rcptno,
                invno=keys.pad_invno(str(200_000 + int(r.rcptno) - 1)),
                custno=r.custno,
                requested=r.amount,
                amount=r.amount,
            )
            for r in receipts
            if r.applied
        ],
        batch_size=5000,
    )


def _write_batches(
    index: int, first_day: date, paytrace: object, zone: ZoneInfo, batches: dict
) -> None:
    """One settlement batch per day, its totals those of its transactions."""
    from integrations.models import SettlementBatch

    SettlementBatch.objects.bulk_create(
        [
            SettlementBatch(
                connection=paytrace,
                batch_number=number,
                settled_at=datetime(
                    first_day.year, first_day.month, first_day.day, 23, tzinfo=zone
                )
                + timedelta(days=int(number[len(str(index)) :])),
                transaction_count=count,
                net_amount=net,
                sales_count=count,
                sales_amount=net,
                transaction_ids=ids,
            )
            for number, (count, net, ids) in batches.items()
        ]
    )


def register_bridge(mock: "responses.RequestsMock") -> None:  # noqa: F821
    """Answer http://testserver/... with the in-process views, one client for all."""
    import re
    from urllib.parse import urlsplit

    from django.test import Client

    client = Client()

    def forward(request):  # noqa: ANN001, ANN202
        parts = urlsplit(request.url)
        path = parts.path + (f"?{parts.query}" if parts.query else "")
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in {"content-length", "host", "content-type"}
        }
        response = client.generic(
            request.method,
            path,
            data=request.body or b"",
            content_type=request.headers.get("Content-Type", "application/json"),
            headers=headers,
        )
        return response.status_code, dict(response.items()), response.content

    pattern = re.compile(r"http://testserver/.*")
    for method in ("GET", "POST", "DELETE"):
        mock.add_callback(method, pattern, callback=forward)


def run(db: str, sizes: list[int]) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="portal-bench-recon-"))
    try:
        setup(db, tmp)
        import responses

        from integrations import reconciliation

        today = reconciliation.business_today()
        last_day = today - timedelta(days=1)
        first_day = last_day - timedelta(days=DAYS - 1)
        timings: list[tuple[int, float]] = []
        failures = []
        for index, size in enumerate(sizes, 1):
            say(f"\n{size} transactions")
            paytrace, expected = seed_size(index, size, first_day)
            with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
                register_bridge(mock)
                started = time.perf_counter()
                result = reconciliation.reconcile(paytrace, first_day, last_day)
                seconds = time.perf_counter() - started
            timings.append((size, seconds))
            counts = {name: data["count"] for name, data in result.buckets.items()}
            wrong = {
                name: (counts.get(name, 0), want)
                for name, want in expected.items()
                if counts.get(name, 0) != want
            }
            say(f"  {reconciliation.summarize(result)}")
            say(
                f"  reconciled in {seconds:.2f} s = {seconds / size * 10_000:.2f} s per "
                f"10k transactions"
            )
            if wrong:
                failures.append(f"{size}: bucket counts (got, expected) {wrong}")
            if result.ties_out is not True:
                failures.append(f"{size}: batches do not tie out")
        say(f"\nReconciliation on {db}:")
        say("| transactions | seconds | s per 10k |")
        say("|---:|---:|---:|")
        for size, seconds in timings:
            say(f"| {size:,} | {seconds:.2f} | {seconds / size * 10_000:.2f} |")
        (small, t_small), (large, t_large) = timings[0], timings[-1]
        ratio = (t_large / t_small) / (large / small)
        say(
            f"Linearity: t({large:,}) / t({small:,}) ÷ {large // small} = {ratio:.2f} "
            "(1.00 = linear)"
        )
        for failure in failures:
            say(f"FAILED {failure}")
        return 1 if failures else 0
    finally:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(tmp, ignore_errors=True)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", choices=["sqlite", "postgres", "both"], default="sqlite"
    )
    parser.add_argument("--sizes", default="10000,50000,100000")
    args = parser.parse_args(argv)
    if args.db == "both":
        return harness.run_per_database("bench.reconcile", args, argv)
    return run(args.db, [int(s) for s in args.sizes.split(",")])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
