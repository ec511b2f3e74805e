import json
import re
from datetime import date, timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from integrations import reconciliation
from integrations.connectors.base import ConnectorError
from integrations.models import Connection

# Dates are written one way only: `20261101` or `2026-W44-7` would be read as dates by
# `date.fromisoformat`, and a typo should fail rather than reconcile some other day.
DAY = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", re.ASCII)
EARLIEST = date(2000, 1, 1)
# How far past today a range may end (a month-end run set up in advance), and how long
# one run may be.
MAX_AHEAD = timedelta(days=366)
MAX_SPAN = timedelta(days=366)


def parse_day(value: str, option: str) -> date:
    try:
        if not DAY.fullmatch(value):
            raise ValueError
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{option} {value!r} is not a date; write it as YYYY-MM-DD, e.g. 2025-05-31."
        ) from None


def check_range(date_from: date, date_to: date) -> None:
    """Refuse a range no reconciliation can mean, before any run row is written."""
    latest = timezone.now().date() + MAX_AHEAD
    for option, day in (("--from", date_from), ("--to", date_to)):
        if not EARLIEST <= day <= latest:
            raise CommandError(
                f"{option} {day} is outside the dates a run can cover "
                f"({EARLIEST} to {latest}); check the year."
            )
    if date_to < date_from:
        raise CommandError(f"--to {date_to} is before --from {date_from}; swap them.")
    if date_to - date_from >= MAX_SPAN:
        raise CommandError(
            f"--from {date_from} --to {date_to} spans more than {MAX_SPAN.days} days; "
            "reconcile a year or less per run (e.g. one month at a time)."
        )


class Command(BaseCommand):
    help = (
        "Reconcile PayTrace transactions created in a date range (business time zone) "
        "against Sage Pro receipts and store a reconciliation run per connection."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--from", dest="date_from", required=True, help="YYYY-MM-DD"
        )
        parser.add_argument("--to", dest="date_to", required=True, help="YYYY-MM-DD")
        parser.add_argument(
            "--connection",
            metavar="SLUG",
            help="One PayTrace connection (default: every active one).",
        )
        parser.add_argument(
            "--json",
            action="store_true",
            help="Print one JSON object: buckets (count, amount) and one line per "
            "transaction and orphan receipt.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        date_from = parse_day(options["date_from"], "--from")
        date_to = parse_day(options["date_to"], "--to")
        check_range(date_from, date_to)
        connections = self.connections(options["connection"])
        runs = []
        for connection in connections:
            try:
                runs.append(
                    reconciliation.reconcile(
                        connection, date_from, date_to, progress=self.progress
                    )
                )
            except (ConnectorError, reconciliation.ReconciliationError) as exc:
                raise CommandError(
                    f"Reconciliation of {connection.slug} failed: {exc}"
                ) from exc
        if options["json"]:
            self.stdout.write(json.dumps(reconciliation.as_json(runs), indent=1))
            return
        for run in runs:
            self.stdout.write(f"{run.connection.slug}: {reconciliation.summarize(run)}")

    def connections(self, slug: str | None) -> list[Connection]:
        paytrace = Connection.objects.filter(kind=Connection.Kind.PAYTRACE)
        if slug:
            connection = paytrace.filter(slug=slug).first()
            if connection is None:
                known = ", ".join(paytrace.values_list("slug", flat=True)) or "none"
                raise CommandError(
                    f"No PayTrace connection {slug!r}. Known PayTrace connections: {known}."
                )
            return [connection]
        active = list(paytrace.filter(is_active=True).select_related("sagepro"))
        if not active:
            raise CommandError(
                "There is no active PayTrace connection; add one in the admin or pass --connection."
            )
        return active

    def progress(self, message: str) -> None:
        self.stderr.write(message)
