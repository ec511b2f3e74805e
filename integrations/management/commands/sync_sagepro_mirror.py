"""Bring the local mirror of Sage Pro up to date now (the schedule does it every
MIRROR_SYNC_MINUTES), or rebuild it from a full listing with --full."""

from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import mirror
from integrations.models import Connection
from integrations.models.failures import describe_failure


class Command(BaseCommand):
    help = (
        "Sync the mirror of Sage Pro's customers, invoices, GL accounts and periods "
        "from the gateway's change feeds (--full: list everything and drop what is gone)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--connection",
            metavar="SLUG",
            help="Sage Pro connection slug (default: every active one).",
        )
        parser.add_argument(
            "--full",
            action="store_true",
            help="Start from the beginning and remove rows Sage Pro no longer lists.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connections = Connection.objects.filter(
            kind=Connection.Kind.SAGEPRO, is_active=True
        )
        slug = options["connection"]
        if slug:
            connections = connections.filter(slug=slug)
            if not connections.exists():
                raise CommandError(
                    f"No active Sage Pro connection {slug!r}. The admin's Connections "
                    "page lists them (kind: Sage Pro gateway); check the slug, or "
                    "activate the connection."
                )
        full = options["full"]
        failed = []
        for connection in connections:
            self.stdout.write(
                f"{connection.slug}: {'full resync' if full else 'sync'} from "
                f"{connection.base_url}"
            )
            try:
                result = mirror.sync(
                    connection, full=full, progress=self._progress(connection)
                )
            except Exception as exc:
                failed.append(connection.slug)
                self.stderr.write(
                    f"{connection.slug}: the sync stopped: {describe_failure(exc)}. "
                    "What was stored before stays, and the next run resumes from the "
                    "saved cursor. Check the connection's base URL and API key in "
                    "the admin (Connections), and that the gateway answers, then run "
                    f"manage.py sync_sagepro_mirror --connection {connection.slug} "
                    "again."
                )
                continue
            if result.skipped:
                self.stderr.write(
                    f"{connection.slug}: another sync of this mirror is running; "
                    "try again when it has finished."
                )
                continue
            self.stdout.write(result.describe())
        if failed:
            raise CommandError(f"The mirror of {', '.join(failed)} could not sync.")

    def _progress(self, connection: Connection):  # noqa: ANN202
        def report(text: str) -> None:
            self.stdout.write(f"{connection.slug}: {text}")

        return report
