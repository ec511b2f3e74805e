import json
from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import reconciliation
from integrations.connectors.base import ConnectorError
from integrations.models import Connection


def parse_day(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise CommandError(
            f"{value!r} is not a date; write it as YYYY-MM-DD, e.g. 2025-05-31."
        ) from None


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
        date_from, date_to = (
            parse_day(options["date_from"]),
            parse_day(options["date_to"]),
        )
        if date_to < date_from:
            raise CommandError(
                f"--to {date_to} is before --from {date_from}; swap them."
            )
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
