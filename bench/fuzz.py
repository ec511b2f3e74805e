"""Attack run: thousands of hostile webhooks and schemathesis cases, then a full sweep.

    .venv/bin/python -m bench.fuzz [--db sqlite|postgres|both] [--webhooks 10000]
        [--schemathesis 5000] [--seed N] [--keep]

On a fresh, migrated and seeded database (see `bench/harness.py`), in this process:

1. hypothesis draws `--webhooks` hostile requests (`tests/support/attack.py`: signed
   adversarial bodies, bad and missing headers, oversized and card-shaped ids, card
   numbers planted in every disguise, silent posts) and sends each through the WSGI
   stack; the queue is drained like a worker every 250 requests,
2. schemathesis sends `--schemathesis` cases over `/api/schema/` as a superuser,
3. every page of every list (admin and API) is read, and every column of every table,
   the SQLite file and WAL, the captured log and django-q2's payloads and results are
   searched for the planted card numbers.

Prints the figures and every failure with the request that caused it; exits 1 on any
5xx, a request without its delivery row, a worker crash, a list page not answering 200,
or a card number found.
"""

import math
import sys
import time
from collections import Counter

from bench import harness
from bench.harness import PAYTRACE_SLUG, say

DRAIN_EVERY = 250


def run(args) -> int:  # noqa: ANN001
    # The run logs a warning per refused request; only errors reach the terminal.
    bench = harness.Bench(args.db, env_overrides={"LOG_LEVEL": "ERROR"}, keep=args.keep)
    with bench:
        bench.prepare()
        return attack(args)


def attack(args) -> int:  # noqa: ANN001
    import responses
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.test import Client
    from django.test.utils import setup_test_environment
    from hypothesis import HealthCheck, Phase, given
    from hypothesis import settings as hsettings

    from integrations.models import Connection
    from tests import bridge
    from tests.support.apifuzz import run_api_fuzz
    from tests.support.attack import attacks
    from tests.support.campaign import Campaign

    setup_test_environment()  # the in-process client's "testserver" host, local email
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver", "localhost"]
    # The connectors reach the sandboxes in-process (tests.bridge), not over a socket.
    Connection.objects.filter(kind=Connection.Kind.PAYTRACE).update(
        base_url="http://testserver/sandbox/paytrace"
    )
    Connection.objects.filter(kind=Connection.Kind.SAGEPRO).update(
        base_url="http://testserver/sandbox/sagepro/api/v1"
    )
    user = get_user_model().objects.create_superuser(
        "fuzz-admin", "fuzz@example.com", "fuzz-admin-password"
    )
    admin = Client(raise_request_exception=False)
    admin.force_login(user)
    quiet = hsettings(
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        derandomize=args.seed is None,
        print_blob=False,
    )
    started = time.monotonic()
    invoices = tuple(str(n) for n in range(10001, 10040)) + ("99999", "")

    with responses.RequestsMock(assert_all_requests_are_fired=False) as mock:
        bridge.register(mock)
        with Campaign(admin=admin, max_failures_per_kind=20) as campaign:
            campaign.counts["tasks"] = 0

            @hsettings(parent=quiet, max_examples=args.webhooks)
            @given(attacks(PAYTRACE_SLUG, settings.DEMO_WEBHOOK_SECRET, invoices))
            def send(one):  # noqa: ANN001, ANN202
                campaign.send(one)
                sent = campaign.counts["requests"]
                if sent % DRAIN_EVERY == 0:
                    campaign.drain()
                    say(f"  {sent}/{args.webhooks} sent, {elapsed(started)}")

            if args.seed is not None:
                from hypothesis import seed

                send = seed(args.seed)(send)
            say(f"Sending {args.webhooks} hostile webhooks and silent posts…")
            send()
            campaign.drain()
            say(f"Webhooks done in {elapsed(started)}; schemathesis…")

            api = None
            if args.schemathesis:
                operations = 8
                api = run_api_fuzz(
                    user, math.ceil(args.schemathesis / operations), base=quiet
                )
            say(f"schemathesis done in {elapsed(started)}; reading every list page…")
            campaign.check_pages(all_pages=True)
            say(
                f"Sweeping tables, files and logs for {len(campaign.planted)} planted card numbers…"
            )
            findings = campaign.sweep(files=True)

    return summarise(campaign, api, findings, started)


def summarise(campaign, api, findings, started) -> int:  # noqa: ANN001
    counts = campaign.counts
    server_errors = sum(n for s, n in campaign.statuses.items() if s >= 500)
    crashes = counts["failures.worker_crash"]
    bad_pages = counts["failures.list_page"]
    card_places = Counter(f.where for f in findings)
    card_places.update(
        "response body / queued task"
        for f in campaign.failures
        if f.kind == "card_number" and f.detail.startswith(("echoed", "queued"))
    )
    say("")
    say("===== fuzz results =====")
    say(f"webhook requests sent:      {counts['requests']}")
    say(f"  statuses:                 {dict(sorted(campaign.statuses.items()))}")
    say(f"  5xx answers:              {server_errors}")
    say(
        f"  delivery rows:            {counts['deliveries']} for {counts['requests']} requests"
    )
    say(f"  false duplicates:         {counts['failures.false_duplicate']}")
    say(f"tasks run:                  {counts['tasks']}")
    events = {
        k.removeprefix("events."): v
        for k, v in counts.items()
        if k.startswith("events.")
    }
    say(f"  events by state:          {events}")
    say(f"  worker crashes:           {crashes}")
    if api is not None:
        api_5xx = len(api.server_errors)
        say(f"schemathesis cases:         {api.cases}, 5xx: {api_5xx}")
        by_status = Counter()
        for (_, status), n in api.statuses.items():
            by_status[status] += n
        say(f"  statuses:                 {dict(sorted(by_status.items()))}")
        for key, n in sorted(api.nonconformant.items()):
            say(f"  not conformant x{n}: {key}")
        server_errors += api_5xx
    say(f"list pages read:            {counts['pages']}")
    for (url, status), n in sorted(campaign.page_statuses.items()):
        say(f"  {url} -> {status} x{n}")
    say(f"card numbers planted:       {len(campaign.planted)}")
    say(f"card numbers found:         {sum(card_places.values())}")
    for where, n in card_places.most_common():
        say(f"  {where}: {n}")
    say(f"elapsed:                    {elapsed(started)}")
    if campaign.failures:
        say("\n===== failures (first of each kind, with the request) =====")
        for failure in campaign.failures:
            say(failure.describe())
            say("")
    if api is not None:
        for detail in api.server_errors[:20]:
            say(f"schemathesis 5xx: {detail}\n")
    failed = (
        server_errors
        or counts["deliveries"] != counts["requests"]
        or crashes
        or bad_pages
        or card_places
        or counts["failures.false_duplicate"]
        or counts["failures.delivery_rows"]
    )
    say("FAILED" if failed else "PASSED")
    return 1 if failed else 0


def elapsed(started: float) -> str:
    return f"{time.monotonic() - started:.1f} s"


def main(argv: list[str]) -> int:
    parser = harness.argument_parser(__doc__.splitlines()[0])
    parser.set_defaults(db="sqlite")
    parser.add_argument("--webhooks", type=int, default=10_000)
    parser.add_argument("--schemathesis", type=int, default=5_000)
    parser.add_argument(
        "--seed", type=int, default=None, help="Random seed (default: derandomized)."
    )
    args = parser.parse_args(argv)
    if args.db == "both":
        return harness.run_per_database("bench.fuzz", args, argv)
    return run(args)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
