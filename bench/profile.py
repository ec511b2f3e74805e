"""Profile the webhook and the drain in one process (cProfile), for docs/benchmarks.md.

    .venv/bin/python -m bench.profile [--what ingest|pipeline|both] [--events 1000]
        [--top 25]

A fresh SQLite database in a temp dir, the demo's seed rows, no servers: webhooks go
through Django's test client, the Sage Pro sandbox answers in process (as in
tests/bridge.py), queued tasks run in process (as tests/queue.py runs them, with
DRAIN_WAKE_SECONDS=0: one drain task per event, most of which find nothing to do).

- ingest: the per-request time of the webhook and of the store-only view (one
  committed insert), timed without the profiler, then the webhook again under cProfile:
  the portal's functions by cumulative time per request.
- pipeline: N events for N open invoices (the mirror synced first), drained under
  cProfile: the portal's functions and the sandbox's share, per event.

Figures are per request or per event on this machine; they are for finding what
dominates, not goals (the goals are the other benchmarks' ratios).
"""

import argparse
import cProfile
import os
import pstats
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def setup(db_dir: str) -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{db_dir}/profile.sqlite3"
    os.environ["SANDBOX_ENABLED"] = "1"
    os.environ["DEMO_MODE"] = "1"
    os.environ["LOG_LEVEL"] = "WARNING"
    os.environ["WEBHOOK_CACHE_SECONDS"] = "30"
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.core.management import call_command

    from integrations.demo import seed_demo

    call_command("migrate", verbosity=0)
    seed_demo(8000)


def headers(signed: dict[str, str]) -> dict[str, str]:
    return {f"HTTP_{k.upper().replace('-', '_')}": v for k, v in signed.items()}


def amount(i: int) -> Decimal:
    """A different amount per payment (the same card and amount twice is a possible
    duplicate, which is decided on a fresh read)."""
    return Decimal(f"{25 + i % 900}.{i % 100:02d}")


def bodies(count: int, first: int, invoices: list[str] | None = None) -> list:
    from django.conf import settings

    from tests.webhooks import event_body, paytrace_record, sign

    out = []
    for i in range(count):
        invno = invoices[i] if invoices else str(10001 + i % 50)
        body = event_body(
            "transaction.approved",
            paytrace_record(
                transaction_id=first + i,
                invoice_id=invno,
                amount=amount(i),
            ),
        )
        out.append((body, sign(body, settings.DEMO_WEBHOOK_SECRET)))
    return out


def post_all(client, path: str, items: list) -> float:  # noqa: ANN001
    began = time.perf_counter()
    for body, signed in items:
        response = client.post(
            path, data=body, content_type="application/json", **headers(signed)
        )
        if response.status_code not in (200, 202):
            raise RuntimeError(f"{path} answered {response.status_code}")
    return time.perf_counter() - began


def summary(
    profile: cProfile.Profile, per: int, top: int, label: str, unit: str
) -> None:
    """The portal's own functions (and the sandbox as one line) by cumulative time."""
    stats = pstats.Stats(profile)
    rows = []
    for (path, line, name), (_, _, _, cumulative, _) in stats.stats.items():  # type: ignore[attr-defined]
        if "/site-packages/" in path or not path.startswith(str(ROOT)):
            continue
        short = os.path.relpath(path, ROOT)
        if short.startswith("bench/") or short.startswith("tests/"):
            continue
        rows.append((cumulative, f"{short}:{line} {name}"))
    total = max((c for c, _ in rows), default=0.0)
    print(f"\n{label}: cProfile, ms per {unit} (cumulative; share of the top line)")
    for cumulative, where in sorted(rows, reverse=True)[:top]:
        print(f"  {cumulative / per * 1e3:8.3f} ms  {cumulative / total:6.1%}  {where}")


def profile_ingest(events: int, top: int) -> None:
    from django.conf import settings
    from django.test import Client

    settings.DRAIN_WAKE_SECONDS = 0.2  # as deployed: wake-ups coalesced

    client = Client()
    warm = bodies(100, 700_000_000)
    post_all(client, "/sandbox/bare-store/", warm)
    post_all(client, "/webhooks/paytrace/paytrace-sandbox/", warm)
    items = bodies(events, 710_000_000)
    store = post_all(client, "/sandbox/bare-store/", items) / events
    items = bodies(events, 720_000_000)
    hook = post_all(client, "/webhooks/paytrace/paytrace-sandbox/", items) / events
    print(
        f"ingest, in process ({events} requests each): store-only "
        f"{store * 1e3:.2f} ms, webhook {hook * 1e3:.2f} ms per request, "
        f"webhook ÷ store-only (rate) = {store / hook:.2f}"
    )
    items = bodies(events, 730_000_000)
    profile = cProfile.Profile()
    profile.enable()
    post_all(client, "/webhooks/paytrace/paytrace-sandbox/", items)
    profile.disable()
    summary(profile, events, top, "webhook", "request")


def profile_pipeline(events: int, top: int) -> None:
    import responses
    from django.conf import settings
    from django.test import Client

    from integrations import mirror
    from integrations.models import Connection, Posting
    from integrations.sandbox.sagepro import seed
    from tests import bridge
    from tests.queue import run_queued_tasks

    settings.DRAIN_WAKE_SECONDS = 0  # one drain task per event, run below in order
    mock = responses.RequestsMock(assert_all_requests_are_fired=False)
    mock.start()
    bridge.register(mock)
    sage_conn = Connection.objects.get(kind=Connection.Kind.SAGEPRO)
    sage_conn.base_url = "http://testserver/sandbox/sagepro/api/v1"
    sage_conn.save()
    invoices = [seed.seed_invoice("ACME", amount(i)) for i in range(events)]
    mirror.sync(sage_conn)
    post_all(
        Client(),
        "/webhooks/paytrace/paytrace-sandbox/",
        bodies(events, 740_000_000, invoices),
    )
    mock.calls.reset()
    profile = cProfile.Profile()
    began = time.perf_counter()
    profile.enable()
    run_queued_tasks(events * 4 + 100)
    profile.disable()
    elapsed = time.perf_counter() - began
    posted = Posting.objects.filter(state=Posting.State.POSTED).count()
    print(
        f"\npipeline, in process, under cProfile: {events} events drained in "
        f"{elapsed:.1f} s, {posted} posted, {len(mock.calls)} gateway calls"
    )
    summary(profile, events, top, "drain (the sandbox's views included)", "event")
    mock.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--what", choices=["ingest", "pipeline", "both"], default="both"
    )
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="portal-profile-") as db_dir:
        setup(db_dir)
        if args.what in ("pipeline", "both"):  # first: the ingest's events stay queued
            profile_pipeline(min(args.events, 500), args.top)
        if args.what in ("ingest", "both"):
            profile_ingest(args.events, args.top)
    return 0


if __name__ == "__main__":
    sys.exit(main())
