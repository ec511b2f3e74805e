"""`make prod-check`: the production layout on this machine, without containers.

    .venv/bin/python -m deploy.prod_check [--events 30] [--timeout 90] [--keep-logs]

1. Drop and recreate the PostgreSQL database `portal_prodcheck` (127.0.0.1:5432,
   trust auth; `PRODCHECK_PG_ADMIN_DSN` names another server).
2. Build the production environment docs/deploy.md lists: `portal.settings`, DEBUG and
   DEMO_MODE off, a fresh SECRET_KEY and FIELD_ENCRYPTION_KEYS, ALLOWED_HOSTS, every
   HTTPS variable on as behind a TLS-terminating proxy (this script plays the proxy: it
   sends `X-Forwarded-Proto: https`), the ORM broker, SANDBOX_ENABLED=1.
3. `check --deploy --fail-level WARNING` and `migrate`, in this process.
4. Seed the Sage Pro sandbox, N open invoices, the two sandbox connections, a random
   webhook secret and the receipt GL rule (no demo logins: DEMO_MODE stays off).
5. Start the sandboxes (one gunicorn over plain HTTP, standing in for PayTrace and
   Sage Pro), the portal (gunicorn, two workers) and three `manage.py qcluster`.
6. Check the HTTPS settings are live (plain HTTP is redirected, HSTS is sent, no debug
   page), send N signed `transaction.approved` events, one per open invoice, and wait
   until every one is processed and its receipt posted.
7. Verify exactly once (every event processed, one posted `Posting` per transaction,
   one sandbox receipt per payment), print the figures, stop every process, and exit
   non-zero with the reason on any failure.

The layout itself (environment, seeding, the children) lives in `deploy/harness.py`,
shared with the load test (`bench/load_test.py`).
"""

import argparse
import http.client
import re
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import harness  # noqa: E402
from deploy.harness import (  # noqa: E402
    PROXY_HEADERS,
    CheckFailed,
    Clock,
    Layout,
    check_deploy_and_migrate,
    database_url,
    production_environment,
    seed,
    setup_django,
    signing_secret,
    wait_until_settled,
)

DB_NAME = "portal_prodcheck"
PG_ADMIN_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
PG_HOST = "127.0.0.1:5432"
WEB_WORKERS = 2
CLUSTERS = 3
FIRST_TXN = 700_000_000
DEBUG_PAGE_MARK = b"DEBUG = True"


def check_database_name(name: str) -> str:
    """The database this script drops: only one named for it."""
    if not re.fullmatch(r"portal_prodcheck[a-z0-9_]*", name):
        raise CheckFailed(
            f"--database {name!r}: the check drops and recreates its database, so it "
            "only uses names starting with portal_prodcheck (e.g. portal_prodcheck_ci)."
        )
    return name


# --- verification (pure) -------------------------------------------------------------


@dataclass
class Figures:
    """What the run counted, read back from the database and the HTTP answers."""

    expected: int
    statuses: dict[int, int] = field(default_factory=dict)
    send_errors: int = 0
    event_states: dict[str, int] = field(default_factory=dict)
    posting_states: dict[str, int] = field(default_factory=dict)
    most_postings_per_transaction: int = 0
    receipts: int = 0
    duplicate_receipt_references: int = 0
    seconds_to_post: float = 0.0
    latencies: list[float] = field(default_factory=list)


def find_problems(figures: Figures) -> list[str]:
    """Every way the run missed exactly once; empty when it passed."""
    n = figures.expected
    problems = []
    accepted = sum(c for s, c in figures.statuses.items() if 200 <= s < 300)
    if accepted != n or figures.send_errors:
        problems.append(
            f"{accepted} of {n} webhooks accepted (answers {figures.statuses}, "
            f"{figures.send_errors} connection errors)"
        )
    if figures.event_states != {"processed": n}:
        problems.append(
            f"event states {figures.event_states}, expected {{'processed': {n}}}"
        )
    if figures.posting_states != {"posted": n}:
        problems.append(
            f"posting states {figures.posting_states}, expected {{'posted': {n}}}"
        )
    if figures.most_postings_per_transaction > 1:
        problems.append(
            f"a transaction has {figures.most_postings_per_transaction} receipt "
            "postings (expected one each)"
        )
    if figures.receipts != n:
        problems.append(f"{figures.receipts} receipts in Sage Pro, expected {n}")
    if figures.duplicate_receipt_references:
        problems.append(
            f"{figures.duplicate_receipt_references} payments have more than one "
            "Sage Pro receipt"
        )
    return problems


def summary_lines(figures: Figures) -> list[str]:
    lat = figures.latencies
    rate = figures.expected / figures.seconds_to_post if figures.seconds_to_post else 0
    return [
        f"webhooks: {figures.expected} sent, answers {figures.statuses}",
        f"events: {figures.event_states}",
        f"postings: {figures.posting_states} "
        f"(at most {figures.most_postings_per_transaction} per transaction)",
        f"Sage Pro receipts: {figures.receipts} "
        f"({figures.duplicate_receipt_references} payments with more than one)",
        f"received→posted: p50 {harness.percentile(lat, 50):.2f} s, "
        f"p95 {harness.percentile(lat, 95):.2f} s, max "
        f"{max(lat, default=float('nan')):.2f} s; {figures.expected} events in "
        f"{figures.seconds_to_post:.1f} s ({rate:.1f}/s)",
    ]


# --- the run ---------------------------------------------------------------------


def recreate_database(name: str, admin_dsn: str) -> None:
    import psycopg

    try:
        with psycopg.connect(admin_dsn, autocommit=True, connect_timeout=5) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        raise CheckFailed(
            f"PostgreSQL is not reachable ({admin_dsn}): {exc}. Start it, or point "
            "PRODCHECK_PG_ADMIN_DSN at a server where user postgres may create "
            "databases."
        ) from None


def check_https_settings(port: int) -> list[str]:
    """The production HTTPS settings are in force on the live web process."""
    problems = []
    status, _ = harness.request(port, "GET", "/admin/login/")
    if status != 301:
        problems.append(f"plain HTTP /admin/login/ answered {status}, expected 301")
    status, _ = harness.request(port, "GET", "/healthz")
    if status != 200:
        # Health probes call the process directly, over plain HTTP.
        problems.append(f"plain HTTP /healthz answered {status}, expected 200")
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/admin/login/", headers=PROXY_HEADERS)
        reply = conn.getresponse()
        reply.read()
        if reply.status != 200:
            problems.append(
                f"HTTPS /admin/login/ answered {reply.status}, expected 200"
            )
        if not reply.getheader("Strict-Transport-Security"):
            problems.append("HTTPS answers carry no Strict-Transport-Security header")
    finally:
        conn.close()
    status, body = harness.request(
        port, "GET", "/no-such-page-prod-check/", headers=PROXY_HEADERS
    )
    if status != 404 or DEBUG_PAGE_MARK in body:
        problems.append(f"a missing page answered {status} or showed the debug page")
    return problems


def send_events(port: int, invoices: list, clock: Clock) -> harness.LoadResult:
    from bench import pipeline

    deliveries = pipeline.build_events(invoices, FIRST_TXN, "prodcheck")
    harness.sign_all(deliveries, signing_secret())
    for item in deliveries:
        item.headers.update(PROXY_HEADERS)
    sent = harness.post_all(
        port, harness.WEBHOOK_PATH, deliveries, 4, "webhooks", time_limit=60
    )
    clock.say(sent.describe())
    return sent


def count(run: Any, sent: harness.LoadResult) -> Figures:
    from django.db.models import Count, Max

    from bench import pipeline

    events = run.events().values_list("state").annotate(n=Count("pk")).order_by()
    postings = run.postings().values_list("state").annotate(n=Count("pk")).order_by()
    per_txn = (
        run.postings()
        .values("transaction")
        .annotate(n=Count("pk"))
        .aggregate(most=Max("n"))["most"]
    )
    receipts = run.receipts()
    measured = pipeline.measure(run)
    return Figures(
        expected=run.count,
        statuses=dict(sent.statuses),
        send_errors=sum(sent.errors.values()),
        event_states=dict(events),
        posting_states=dict(postings),
        most_postings_per_transaction=per_txn or 0,
        receipts=receipts.count(),
        duplicate_receipt_references=receipts.values("reference")
        .annotate(n=Count("pk"))
        .filter(n__gt=1)
        .count(),
        seconds_to_post=measured["seconds"],
        latencies=measured["latencies"],
    )


def run(args: argparse.Namespace) -> int:
    import os

    clock = Clock()
    name = check_database_name(args.database)
    recreate_database(name, os.environ.get("PRODCHECK_PG_ADMIN_DSN", PG_ADMIN_DSN))
    clock.say(f"database {name}: dropped and recreated")
    layout = Layout(
        env={}, logs=Path(), clock=clock, web_workers=WEB_WORKERS, clusters=CLUSTERS
    )
    layout.env = production_environment(
        database_url(name, PG_HOST), layout.portal_url, os.environ
    )
    setup_django(layout.env)
    check_deploy_and_migrate(clock)
    invoices = seed(layout.sandbox_port, args.events)
    clock.say(f"seeded: Sage Pro sandbox, {len(invoices)} open invoices, connections")

    from bench import pipeline

    logs = layout.logs = Path(tempfile.mkdtemp(prefix="portal-prodcheck-"))
    ok = False
    try:
        layout.start()
        problems = check_https_settings(layout.web_port)
        if problems:
            raise CheckFailed("; ".join(problems))
        clock.say(
            "HTTPS settings live: plain HTTP redirected (not /healthz), HSTS sent, "
            "no debug page"
        )
        sent = send_events(layout.web_port, invoices, clock)
        batch = pipeline.Run(FIRST_TXN, len(invoices))
        settled = wait_until_settled(batch, layout, args.timeout)
        figures = count(batch, sent)
        clock.say(pipeline.progress_line(batch))
        problems = find_problems(figures)
        if not settled:
            problems.insert(0, f"not every event was posted within {args.timeout:g} s")
        harness.say("\nprod-check summary")
        for line in summary_lines(figures):
            harness.say(f"  {line}")
        if problems:
            raise CheckFailed("; ".join(problems))
        ok = True
    finally:
        if not ok:
            layout.tails()
        layout.stop()
        if ok and not args.keep_logs:
            import shutil

            shutil.rmtree(logs, ignore_errors=True)
        else:
            harness.say(f"logs kept in {logs}")
    clock.say(
        f"PASSED: {len(invoices)} payments posted exactly once through 2 web workers "
        f"and {CLUSTERS} qclusters on PostgreSQL with production settings"
    )
    return 0


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=30, help="Payments to send (30).")
    parser.add_argument(
        "--timeout",
        type=float,
        default=90.0,
        help="Seconds to wait for every payment to post (90).",
    )
    parser.add_argument("--database", default=DB_NAME, help=f"({DB_NAME})")
    parser.add_argument(
        "--keep-logs", action="store_true", help="Keep the processes' logs."
    )
    args = parser.parse_args(argv)
    if not 1 <= args.events <= 1000:
        parser.error("--events: give 1 to 1000")
    if args.timeout <= 0:
        parser.error("--timeout: give a number of seconds above 0")
    return args


def _on_term(signum: int, frame: Any) -> None:
    raise harness.Stop  # unwinds through `finally`: every child is stopped


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    signal.signal(signal.SIGTERM, _on_term)
    try:
        return run(args)
    except CheckFailed as exc:
        harness.say(f"\nprod-check FAILED: {exc}")
        return 1
    except harness.Stop:
        harness.say("\nprod-check stopped (SIGTERM)")
        return 1


if __name__ == "__main__":
    sys.exit(main())
