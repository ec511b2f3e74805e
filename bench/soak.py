"""Soak: duplicates, late events, a Sage Pro outage and two qcluster SIGKILLs.

    .venv/bin/python -m bench.soak [--db sqlite|postgres|both] [--events 2000]
        [--outage-seconds 120] [--send-seconds 240] [--sweep-every 30] [--max-wait 900]

Not run in CI. Through gunicorn + qcluster (Q_WORKERS=2):

* `--events` distinct events: mostly `transaction.approved`, ~4 % declined, ~8 % of the
  approved transactions also `transaction.settled` (half of those settled first and the
  approved arriving late with an older `occurred_at`); plus ~10 % redeliveries (same
  webhook-id and body, re-signed), paced over `--send-seconds`.
* at 40 s: SIGKILL the whole qcluster process group, restart it at once;
  at 60 s: Sage Pro `_faults` unavailable for `--outage-seconds`;
  in the middle of the outage: the second SIGKILL and restart.
* the django-q2 sweeper schedule runs every minute; the harness also calls
  `processing.sweep()` every `--sweep-every` seconds (0: only the schedule).
* then wait (bounded by `--max-wait`) until every event is processed and every posting
  is posted or terminal, and check: one receipt per transaction reference, and as many
  receipts as distinct approved transactions.
"""

import random
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from bench import harness
from bench.harness import WEBHOOK_PATH, say

ENV = {
    # Recovery in minutes, not hours; an outage must not exhaust attempts.
    "WORK_LEASE_SECONDS": "20",
    "Q_RETRY": "30",
    "Q_TIMEOUT": "15",
    "POSTING_MAX_ATTEMPTS": "20",
    "EVENT_MAX_ATTEMPTS": "20",
}
FIRST_TXN = 900_000_000
KILL_1_AT = 40.0
OUTAGE_AT = 60.0


@dataclass
class Planned:
    at: float  # seconds after the start
    body: bytes
    msg_id: str
    duplicate: bool = False


def plan(events: int, send_seconds: float, rng: random.Random) -> tuple[list, dict]:
    """The deliveries in send order, and what they should produce."""
    from django.utils import timezone

    from integrations.sandbox.sagepro import seed
    from tests.webhooks import event_body, paytrace_record, paytrace_time

    now = timezone.now()
    created = paytrace_time(now)
    plans: list[Planned] = []
    approved_txns: list[str] = []
    kinds: Counter = Counter()
    i = 0
    with_invoices = []
    while len(plans) < events:
        txn = FIRST_TXN + i
        custno = seed.INVOICED[i % len(seed.INVOICED)]
        amount = Decimal(rng.randint(2_500, 150_000)) / 100
        i += 1
        roll = rng.random()
        record = {
            "transaction_id": txn,
            "amount": amount,
            "invoice_id": "",
            "created": {"through": "API", "at": created, "by": "apiuser"},
        }
        at = rng.uniform(0, send_seconds)
        if roll < 0.04:
            rec = paytrace_record(
                **record,
                status_code="N",
                status_message="Declined",
                approval_code="",
            )
            body = event_body("transaction.declined", rec, now)
            plans.append(Planned(at, body.encode(), f"msg_soak_{txn}_declined"))
            kinds["declined"] += 1
            continue
        with_invoices.append((i - 1, custno, amount))
        record["invoice_id"] = f"@{len(with_invoices) - 1}"  # filled in after seeding
        approved_txns.append(str(txn))
        approved = Planned(at, b"", f"msg_soak_{txn}_approved")
        approved.record = record  # type: ignore[attr-defined]
        plans.append(approved)
        if roll < 0.12 and len(plans) < events:
            settled = Planned(at, b"", f"msg_soak_{txn}_settled")
            settled.record = {**record, "status_code": "GB01"}  # type: ignore[attr-defined]
            if roll < 0.08:
                # in order: settled a little later
                settled.at = min(send_seconds, at + rng.uniform(5, 60))
                kinds["settled in order"] += 1
            else:
                # out of order: settled first, the older approved arrives late
                settled.at, approved.at = (
                    at,
                    min(send_seconds + 20, at + rng.uniform(20, 120)),
                )
                kinds["settled before a late approved"] += 1
            plans.append(settled)
        else:
            kinds["approved only"] += 1

    say("Seeding invoices for the approved transactions…")
    invnos = seed_invoices(with_invoices)
    for item in plans:
        record = getattr(item, "record", None)
        if record is None:
            continue
        record = {**record, "invoice_id": invnos[int(record["invoice_id"][1:])]}
        settled = item.msg_id.endswith("_settled")
        occurred = now + timedelta(seconds=item.at + (0 if settled else -3600))
        if settled:
            rec = paytrace_record(**record, status_message="Settled")
            item.body = event_body("transaction.settled", rec, occurred).encode()
        else:
            # occurred an hour before its settlement, whenever it is delivered
            rec = paytrace_record(**record)
            item.body = event_body("transaction.approved", rec, occurred).encode()

    dupes = []
    for item in rng.sample(plans, round(len(plans) * 0.10)):
        dupes.append(
            Planned(
                min(send_seconds + 30, item.at + rng.uniform(1, 90)),
                item.body,
                item.msg_id,
                duplicate=True,
            )
        )
    schedule = sorted(plans + dupes, key=lambda p: p.at)
    expected = {
        "events": len(plans),
        "duplicates": len(dupes),
        "approved": approved_txns,
        "kinds": kinds,
    }
    return schedule, expected


def seed_invoices(items: list) -> list[str]:
    from django.db import transaction

    from integrations.sandbox.sagepro import seed

    with transaction.atomic():
        return [seed.seed_invoice(custno, amount) for _, custno, amount in items]


class Sender:
    """Send the schedule at its pace with a few keep-alive clients; sign at send time."""

    def __init__(self, port: int, schedule: list, secret: str, started: float):
        self.port = port
        self.schedule = schedule
        self.secret = secret
        self.started = started
        self.index = 0
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.threads = [
            threading.Thread(target=self.run, daemon=True) for _ in range(4)
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def alive(self) -> bool:
        return any(thread.is_alive() for thread in self.threads)

    def run(self) -> None:
        while True:
            with self.lock:
                if self.index >= len(self.schedule):
                    return
                item = self.schedule[self.index]
                self.index += 1
            delay = self.started + item.at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            delivery = harness.Delivery(body=item.body, msg_id=item.msg_id)
            harness.sign_all([delivery], self.secret)
            status = self.send(delivery)
            with self.lock:
                self.statuses[status] += 1

    def send(self, delivery: harness.Delivery) -> int | str:
        headers = {"Content-Type": "application/json", **delivery.headers}
        for _ in range(3):
            try:
                status, _ = harness.request(
                    self.port, "POST", WEBHOOK_PATH, delivery.body, headers, 30
                )
                return status
            except OSError as exc:
                error = type(exc).__name__
                time.sleep(1)
        return error


def counts(approved: list[str]) -> dict:
    from django.db.models import Count

    from integrations.models import Event, PaymentTransaction, Posting, ReviewItem
    from integrations.sandbox.sagepro.models import CashReceipt

    def by(model, *fields: str) -> dict:  # noqa: ANN001
        rows = model.objects.values_list(*fields).annotate(n=Count("pk")).order_by()
        return {"/".join(row[:-1]): row[-1] for row in rows}

    refs = CashReceipt.objects.filter(deleted=False, reference__startswith="9")
    per_ref = Counter(refs.values_list("reference", flat=True))
    return {
        "events stored": Event.objects.count(),
        "events by state": by(Event, "state"),
        "transactions": PaymentTransaction.objects.count(),
        "transactions by status": by(PaymentTransaction, "gateway_status"),
        "receipts in Sage Pro (live)": sum(per_ref.values()),
        "receipts in Sage Pro (deleted)": CashReceipt.objects.filter(
            deleted=True
        ).count(),
        "references with >1 receipt": sum(1 for n in per_ref.values() if n > 1),
        "approved transactions without a receipt": len(set(approved) - set(per_ref)),
        "receipts for non-approved transactions": len(set(per_ref) - set(approved)),
        "postings by state": by(Posting, "state"),
        "max posting attempts": max(
            Posting.objects.values_list("attempts", flat=True), default=0
        ),
        "max event attempts": max(
            Event.objects.values_list("attempts", flat=True), default=0
        ),
        "review items by kind/state": by(ReviewItem, "kind", "state"),
        "_per_ref": per_ref,
    }


def settled_line(expected_events: int) -> tuple[bool, str]:
    from django_q.models import OrmQ

    from integrations.models import Event, Posting

    events = Counter(Event.objects.values_list("state", flat=True))
    postings = Counter(Posting.objects.values_list("state", flat=True))
    open_events = sum(
        events[s]
        for s in (Event.State.QUEUED, Event.State.PROCESSING, Event.State.FAILED)
    )
    open_postings = sum(
        postings[s]
        for s in (
            Posting.State.PENDING,
            Posting.State.IN_PROGRESS,
            Posting.State.FAILED,
        )
    )
    stored = sum(events.values())
    done = stored >= expected_events and open_events == 0 and open_postings == 0
    line = (
        f"events {stored}/{expected_events} {dict(events)}; "
        f"postings {dict(postings)}; tasks in queue {OrmQ.objects.count()}"
    )
    return done, line


def run(args) -> int:  # noqa: ANN001
    rng = random.Random(args.seed)
    bench = harness.Bench(args.db, env_overrides=ENV, keep=args.keep)
    with bench:
        bench.prepare()
        from django.conf import settings
        from django.db import connections

        from integrations import processing

        schedule, expected = plan(args.events, args.send_seconds, rng)
        connections.close_all()
        say(
            f"Plan: {expected['events']} events + {expected['duplicates']} duplicates "
            f"over {args.send_seconds:.0f} s; {len(expected['approved'])} approved "
            f"transactions; {dict(expected['kinds'])}"
        )
        say(f"Environment: {ENV}")
        bench.start_web()
        bench.start_cluster()

        started = time.monotonic()
        sender = Sender(bench.port, schedule, settings.DEMO_WEBHOOK_SECRET, started)
        sender.start()
        kill_2_at = OUTAGE_AT + args.outage_seconds / 2
        pending = [
            (KILL_1_AT, "kill"),
            (OUTAGE_AT, "outage"),
            (kill_2_at, "kill"),
        ]
        sweeps = 0
        next_sweep = started + args.sweep_every if args.sweep_every else float("inf")
        deadline = started + args.send_seconds + 60 + args.max_wait
        ticker = harness.Ticker(
            10.0,
            lambda: (
                f"t={time.monotonic() - started:.0f}s sent {sum(sender.statuses.values())}"
                f"/{len(schedule)} {dict(sender.statuses)} | "
                + settled_line(expected["events"])[1]
            ),
        )
        finished = False
        while time.monotonic() < deadline:
            elapsed = time.monotonic() - started
            while pending and elapsed >= pending[0][0]:
                _, action = pending.pop(0)
                if action == "kill":
                    bench.kill_cluster()
                    say(f"  t={elapsed:.0f}s SIGKILLed the qcluster process group")
                    bench.start_cluster()
                    say(f"  t={time.monotonic() - started:.0f}s qcluster restarted")
                else:
                    bench.set_fault("unavailable", args.outage_seconds)
                    say(
                        f"  t={elapsed:.0f}s Sage Pro unavailable for "
                        f"{args.outage_seconds:.0f} s"
                    )
            if time.monotonic() >= next_sweep:
                result = processing.sweep()
                sweeps += 1
                connections.close_all()
                if any(result.values()):
                    say(f"  harness sweep(): {result}")
                next_sweep = time.monotonic() + args.sweep_every
            bench.check_children()
            ticker.tick()
            if not sender.alive() and not pending:
                finished, _ = settled_line(expected["events"])
                if finished:
                    break
            time.sleep(0.5)
        took = time.monotonic() - started
        result = counts(expected["approved"])
        _, last = settled_line(expected["events"])

    per_ref = result.pop("_per_ref")
    approved = set(expected["approved"])
    posted = sum(per_ref.values())
    exactly_once = (
        all(n == 1 for n in per_ref.values())
        and posted == len(approved)
        and set(per_ref) == approved
    )
    say(f"\nSoak on {args.db}: finished={finished} after {took:.0f} s")
    rows = [
        ["events sent (distinct)", expected["events"]],
        ["duplicates sent", expected["duplicates"]],
        ["HTTP answers", dict(sender.statuses)],
        ["distinct approved transactions", len(approved)],
        *[[k, v] for k, v in result.items()],
        ["harness sweeps", f"{sweeps} (every {args.sweep_every:.0f} s)"],
    ]
    say(harness.table(["", "count"], rows))
    say(f"last state: {last}")
    say(
        "VERDICT: every payment posted exactly once"
        if exactly_once and finished
        else "VERDICT: FAILED — not every payment posted exactly once"
    )
    return 0 if exactly_once and finished else 1


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--outage-seconds", type=float, default=120.0)
    parser.add_argument("--send-seconds", type=float, default=240.0)
    parser.add_argument("--sweep-every", type=float, default=30.0)
    parser.add_argument("--max-wait", type=float, default=900.0)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    if args.db == "both":
        return harness.run_per_database("bench.soak", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
