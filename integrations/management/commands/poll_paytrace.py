"""Backfill: read PayTrace's export day by day and feed what the portal has not seen."""

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import polling
from integrations.models import Connection, SyncRun


def _date(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise CommandError(
            f"{value!r} is not a date; use YYYY-MM-DD, e.g. 2026-11-01."
        ) from exc


class Command(BaseCommand):
    help = "Read PayTrace transactions since a date and feed new ones and changes into the pipeline."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--since", required=True, help="First gateway day, YYYY-MM-DD."
        )
        parser.add_argument(
            "--until", help="Last gateway day, YYYY-MM-DD (default: today)."
        )
        parser.add_argument(
            "--connection",
            action="append",
            help="PayTrace connection slug (default: all active).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connections = Connection.objects.filter(
            kind=Connection.Kind.PAYTRACE, is_active=True
        )
        if options["connection"]:
            connections = connections.filter(slug__in=options["connection"])
            missing = set(options["connection"]) - set(
                connections.values_list("slug", flat=True)
            )
            if missing:
                raise CommandError(
                    f"No active PayTrace connection {', '.join(sorted(missing))}; see the admin's Connections page."
                )
        since = _date(options["since"])
        for connection in connections:
            until = (
                _date(options["until"])
                if options["until"]
                else polling.gateway_today(connection)
            )
            if until < since:
                raise CommandError(f"--until {until} is before --since {since}.")
            total = (until - since).days + 1
            run = polling.poll(
                connection,
                start=since,
                end=until,
                kind=SyncRun.Kind.BACKFILL,
                progress=self._progress(connection, since, total),
            )
            self.stdout.write("")
            if run.state == SyncRun.State.SKIPPED:
                self.stderr.write(
                    f"{connection.slug}: another poll is running; try again when it has finished."
                )
                continue
            if run.state == SyncRun.State.FAILED:
                raise CommandError(
                    f"{connection.slug}: {run.error}. Check the connection's credentials and base URL, then rerun with --since {since}."
                )
            self.stdout.write(
                f"{connection.slug}: {run.fetched} transactions read, {run.new} new, {run.changed} changed, {run.unchanged} unchanged."
            )

    def _progress(self, connection: Connection, since: date, total: int):  # noqa: ANN202
        def report(run: SyncRun, first: date, last: date) -> None:
            done = (last - since).days + 1
            filled = round(30 * done / total)
            bar = "#" * filled + "." * (30 - filled)
            self.stdout.write(
                f"\r{connection.slug} [{bar}] {done}/{total} days, {run.fetched} read, {run.new} new, {run.changed} changed",
                ending="",
            )
            self.stdout.flush()

        return report
