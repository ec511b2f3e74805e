"""Counts: SQL statements and gateway calls per auto-matched payment, in process.

    .venv/bin/python -m bench.counts [--db sqlite|postgres|both] [--payments 200]
        [--warmup 5]

No servers: on a fresh, migrated and seeded database (see `bench/harness.py`), in this
process, with every outbound HTTP call answered by the in-process sandbox views through
`responses` (one long-lived Django test client, as `bench/reconcile.py` does; any other
URL is refused, so nothing reaches the network):

1. Seed one open invoice per payment (not counted).
2. First tick: run django-q2's scheduler once (it queues every schedule that is due, as
   a starting cluster does) and run what it queued. The mirror's first sync, if the
   product has one, happens here. Counted and printed separately.
3. Warm-up: `--warmup` payments in and processed. Counted and printed separately.
4. Ingest: K signed `transaction.approved` webhooks (one per invoice, paying it in full)
   POSTed through the Django test client, each answered 202.
5. Processing: run the queued django-q2 tasks in process, the way a worker would
   (`tests/queue.py`), until every payment is processed and posted (bounded).
6. Verify that all K were auto-matched and posted exactly once (K receipts, no review
   item), then print per payment: SQL statements by kind, explicit commits, django-q2
   tasks run and gateway calls (reads and writes, by endpoint).

SQL is counted on every connection this process opens (a `connection.execute_wrapper`
installed on each, including the web process's background threads); statements run by
the sandbox's own views while they answer a call are counted apart, as the gateway's.
An `executemany` counts as one statement. Commits are those Django issues explicitly
(an `atomic` block that commits); autocommitted single statements are not commits here.

Goal: gateway calls per auto-matched payment ≤ 1 (amortised), and 0 reads.
"""

import re
import sys
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qsl, urlsplit

from bench import harness, pipeline
from bench.harness import SAGEPRO_PATH, WEBHOOK_PATH, say

CALLS_GOAL = 1.0
FIRST_TXN = 840_000_000
PAYTRACE_PATH = "/sandbox/paytrace"
PHASES = ["first tick", "warm-up", "ingest", "processing"]
SQL_KINDS = ["SELECT", "INSERT", "UPDATE", "DELETE", "other"]


def first_word(sql: str) -> str:
    words = sql.lstrip(" (\n\t").split(None, 1)
    return words[0].upper() if words else ""


def classify(sql: str) -> str:
    word = first_word(sql)
    return word if word in SQL_KINDS else "other"


def endpoint(method: str, url: str) -> tuple[str, str]:
    """(system, "METHOD /path") with ids replaced by {id} and query keys kept."""
    parts = urlsplit(url)
    path = parts.path
    if path.startswith(SAGEPRO_PATH):
        system, path = "sagepro", path[len(SAGEPRO_PATH) :]
    elif path.startswith(PAYTRACE_PATH):
        system, path = "paytrace", path[len(PAYTRACE_PATH) :]
    else:
        system = "other"
    segments = [s for s in path.split("/") if s]
    named = {"batch", "open-items", "_faults"}
    shape = "/".join(
        s if i == 0 or s in named or not re.search(r"\d", s) else "{id}"
        for i, s in enumerate(segments)
    )
    keys = sorted({k for k, _ in parse_qsl(parts.query, keep_blank_values=True)})
    query = f"?{'&'.join(keys)}" if keys else ""
    return system, f"{method} /{shape}{query}"


class Meter:
    """Counts SQL statements, commits and outbound calls, by phase."""

    def __init__(self) -> None:
        self.phase = "setup"
        self.lock = threading.Lock()
        self.local = threading.local()
        self.sql: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.other_words: dict[str, Counter] = defaultdict(Counter)
        self.commits: Counter = Counter()
        self.calls: dict[str, Counter] = defaultdict(Counter)
        self.tasks: Counter = Counter()

    def in_gateway(self) -> bool:
        return getattr(self.local, "in_gateway", False)

    def quiet(self) -> bool:
        return getattr(self.local, "quiet", False)

    @contextmanager
    def not_counted(self) -> Iterator[None]:
        """The benchmark's own queries (progress, checks) are not the product's."""
        self.local.quiet = True
        try:
            yield
        finally:
            self.local.quiet = False

    def execute(self, execute, sql, params, many, context):  # noqa: ANN001, ANN201
        if not self.quiet():
            where = "sandbox" if self.in_gateway() else "portal"
            kind = classify(sql)
            with self.lock:
                self.sql[(self.phase, where)][kind] += 1
                if kind == "other" and where == "portal":
                    self.other_words[self.phase][first_word(sql)] += 1
        return execute(sql, params, many, context)

    def install(self) -> None:
        """Count on every connection, open or opened later, in any thread."""
        from django.db import connections
        from django.db.backends.base.base import BaseDatabaseWrapper
        from django.db.backends.signals import connection_created

        def wrap(connection) -> None:  # noqa: ANN001
            if self.execute not in connection.execute_wrappers:
                connection.execute_wrappers.append(self.execute)

        def on_created(sender, connection, **kwargs) -> None:  # noqa: ANN001
            wrap(connection)

        self._on_created = on_created  # the signal keeps a weak reference
        connection_created.connect(on_created)
        for connection in connections.all():
            wrap(connection)

        commit = BaseDatabaseWrapper.commit
        meter = self

        def counted_commit(connection) -> None:  # noqa: ANN001
            if not meter.in_gateway() and not meter.quiet():
                with meter.lock:
                    meter.commits[meter.phase] += 1
            commit(connection)

        BaseDatabaseWrapper.commit = counted_commit

    def bridge(self, mock, port: int) -> None:  # noqa: ANN001
        """Answer http://127.0.0.1:<port>/... with the in-process views, counted."""
        from django.test import Client

        client = Client()

        def forward(request):  # noqa: ANN001, ANN202
            system, name = endpoint(request.method, request.url)
            with self.lock:
                self.calls[self.phase][(system, name)] += 1
            parts = urlsplit(request.url)
            path = parts.path + (f"?{parts.query}" if parts.query else "")
            headers = {
                k: v
                for k, v in request.headers.items()
                if k.lower() not in {"content-length", "host", "content-type"}
            }
            body = request.body or b""
            if isinstance(body, str):
                body = body.encode()
            self.local.in_gateway = True
            try:
                response = client.generic(
                    request.method,
                    path,
                    data=body,
                    content_type=request.headers.get(
                        "Content-Type", "application/json"
                    ),
                    headers=headers,
                )
            finally:
                self.local.in_gateway = False
            out = {k: v for k, v in response.items() if k.lower() != "content-length"}
            return response.status_code, out, response.content

        pattern = re.compile(re.escape(f"http://127.0.0.1:{port}/") + ".*")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            mock.add_callback(method, pattern, callback=forward)

    # figures
    def sql_count(
        self, phase: str, kind: str | None = None, where: str = "portal"
    ) -> int:
        counts = self.sql.get((phase, where), Counter())
        return counts[kind] if kind else sum(counts.values())

    def gateway(self, phase: str, reads: bool | None = None) -> int:
        return sum(
            n
            for (system, name), n in self.calls.get(phase, Counter()).items()
            if system == "sagepro"
            and (reads is None or name.startswith("GET ") == reads)
        )

    def other_calls(self, phase: str) -> int:
        return sum(
            n
            for (system, _), n in self.calls.get(phase, Counter()).items()
            if system != "sagepro"
        )


def run_tasks(meter: Meter, limit: int = 100_000) -> int:
    from tests.queue import run_queued_tasks

    ran = run_queued_tasks(max_tasks=limit)
    meter.tasks[meter.phase] += ran
    return ran


def settle_waker() -> None:
    """Give a web process's background wake-up (if the design has one) time to queue
    its task, so it is counted in the phase that caused it."""
    from django.conf import settings

    time.sleep(max(0.5, 2 * float(getattr(settings, "DRAIN_WAKE_SECONDS", 0) or 0)))


def send(client, deliveries: list) -> None:  # noqa: ANN001
    from django.conf import settings

    harness.sign_all(deliveries, settings.DEMO_WEBHOOK_SECRET)
    for item in deliveries:
        response = client.post(
            WEBHOOK_PATH,
            data=item.body,
            content_type="application/json",
            headers=item.headers,
        )
        if response.status_code != 202:
            raise RuntimeError(
                f"webhook answered {response.status_code}: {response.content[:300]!r}"
            )


def process(meter: Meter, run: pipeline.Run, limit: float) -> bool:
    """Run queued tasks until the run is settled (bounded by `limit` seconds)."""
    ticker = harness.Ticker(5.0, lambda: pipeline.progress_line(run))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        ran = run_tasks(meter)
        with meter.not_counted():
            if pipeline.is_settled(run):
                return True
            ticker.tick()
        if ran == 0:
            time.sleep(0.2)  # a wake-up may still be on its way
    return False


def payments_in(meter: Meter, client, invoices: list, first: int, limit: float) -> None:  # noqa: ANN001
    """Warm-up: payments in and processed, all counted under the current phase."""
    run = pipeline.Run(first, len(invoices))
    send(client, pipeline.build_events(invoices, first, "warm"))
    settle_waker()
    if not process(meter, run, limit):
        raise RuntimeError(f"warm-up did not finish: {pipeline.progress_line(run)}")


def auto_matched(run: pipeline.Run) -> list[str]:
    """Exactly once, and nothing needed a person: no review item, nothing unapplied."""
    from django.db.models import Q

    from integrations.models import ReviewItem

    problems = pipeline.verify(run)
    reviews = run.only_mine(ReviewItem.objects.all(), "transaction__transaction_id")
    if reviews.exists():
        kinds = Counter(reviews.values_list("kind", flat=True))
        problems.append(f"review items opened: {dict(kinds)}")
    unapplied = run.postings().filter(
        ~Q(unapplied_amount=0), unapplied_amount__isnull=False
    )
    if unapplied.exists():
        problems.append(f"{unapplied.count()} receipts kept cash unapplied")
    return problems


def run(args) -> int:  # noqa: ANN001
    import responses

    k, w = args.payments, args.warmup
    # django-q2 logs every enqueue at INFO, to this process's output here.
    env = {"Q_LOG_LEVEL": "WARNING", **harness.env_overrides(args)}
    bench = harness.Bench(args.db, env_overrides=env, keep=args.keep)
    with bench:
        bench.prepare()
        from django.db import connections
        from django.test import Client
        from django_q.scheduler import scheduler

        say(f"Seeding {k + w} open invoices…")
        invoices = pipeline.seed_invoices(k + w, seed=13)
        connections.close_all()
        warm_invoices, load = invoices[:w], invoices[w:]
        run = pipeline.Run(FIRST_TXN + 1_000_000, k)
        deliveries = pipeline.build_events(load, run.first, "count")

        meter = Meter()
        meter.install()
        client = Client(REMOTE_ADDR="127.0.0.1")
        with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
            meter.bridge(mock, bench.port)

            meter.phase = "first tick"
            say("First tick: django-q2's scheduler once, then what it queued…")
            scheduler()
            run_tasks(meter)

            meter.phase = "warm-up"
            say(f"Warm-up: {w} payments in and processed…")
            if w:
                payments_in(meter, client, warm_invoices, FIRST_TXN, args.time_limit)

            meter.phase = "ingest"
            say(f"Ingest: {k} webhooks through the test client…")
            began = time.monotonic()
            send(client, deliveries)
            settle_waker()
            say(f"  {k} answered 202 in {time.monotonic() - began:.1f} s")

            meter.phase = "processing"
            say("Processing: running the queued tasks in process…")
            finished = process(meter, run, args.time_limit)
            meter.phase = "done"
        with meter.not_counted():
            problems = (
                auto_matched(run)
                if finished
                else ["timed out", pipeline.progress_line(run)]
            )
        connections.close_all()
    return report(args, meter, problems)


def report(args, meter: Meter, problems: list[str]) -> int:  # noqa: ANN001
    k = args.payments

    def per(value: float) -> str:
        return f"{value / k:.2f}"

    rows = []

    def line(label: str, figure) -> None:  # noqa: ANN001
        first, warm, ingest, proc = (figure(p) for p in PHASES)
        rows.append([label, first, warm, per(ingest), per(proc), per(ingest + proc)])

    line("SQL statements (portal)", lambda p: meter.sql_count(p))
    for kind in SQL_KINDS:
        line(f"  {kind}", lambda p, kind=kind: meter.sql_count(p, kind))
    line("explicit commits", lambda p: meter.commits[p])
    line("django-q2 tasks run", lambda p: meter.tasks[p])
    line("Sage Pro gateway calls", lambda p: meter.gateway(p))
    line("  reads (GET)", lambda p: meter.gateway(p, reads=True))
    line("  writes", lambda p: meter.gateway(p, reads=False))
    line("other outbound calls", meter.other_calls)
    line("SQL run by the sandbox", lambda p: meter.sql_count(p, where="sandbox"))
    say(f"\nCounts on {args.db}: {k} auto-matched payments ({args.warmup} warm-up)")
    say(
        harness.table(
            [
                "",
                "first tick",
                "warm-up",
                "ingest /payment",
                "processing /payment",
                "total /payment",
            ],
            rows,
        )
    )
    words = meter.other_words["ingest"] + meter.other_words["processing"]
    if words:
        say(
            "  other statements (ingest + processing) per payment: "
            + ", ".join(f"{w} {n / k:.2f}" for w, n in words.most_common())
        )
    say("\nOutbound calls by endpoint (totals):")
    names = sorted({key for counts in meter.calls.values() for key in counts})
    say(
        harness.table(
            ["system", "endpoint", *PHASES],
            [
                [system, name, *(meter.calls[p][(system, name)] for p in PHASES)]
                for system, name in names
            ],
        )
        if names
        else "  none"
    )
    calls = meter.gateway("ingest") + meter.gateway("processing")
    reads = meter.gateway("ingest", True) + meter.gateway("processing", True)
    say("")
    say(
        f"gateway calls per auto-matched payment = {calls / k:.2f} (goal ≤ {CALLS_GOAL:g})"
        f" → {'MET' if calls / k <= CALLS_GOAL else 'MISSED'}"
    )
    say(
        f"gateway reads for {k} payments = {reads} (goal 0) → "
        f"{'MET' if reads == 0 else 'MISSED'}"
    )
    for problem in problems:
        say(f"VERIFY FAILED: {problem}")
    if not problems:
        say(f"Verified: {k} payments auto-matched, each posted exactly once")
    return 1 if problems else 0


def main() -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=200)
    parser.add_argument(
        "--warmup", type=int, default=5, help="Payments before the counted ones."
    )
    parser.add_argument(
        "--time-limit",
        type=float,
        default=300.0,
        help="Max seconds for each processing phase.",
    )
    args = parser.parse_args()
    if not 1 <= args.payments <= 100_000 or not 0 <= args.warmup <= 1000:
        parser.error("--payments must be 1..100000 and --warmup 0..1000")
    if args.db == "both":
        return harness.run_per_database("bench.counts", args, sys.argv[1:])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
