from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import retention


class Command(BaseCommand):
    help = (
        "Delete raw webhook deliveries (InboundDelivery) older than N days, in "
        "batches; events, transactions, postings and review decisions are kept. "
        "Safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than-days",
            type=int,
            default=None,
            help="Age in days past which raw deliveries go (default: "
            "DELIVERY_RETENTION_DAYS, 90 unless set).",
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Count what would be deleted; delete nothing.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=retention.BATCH_SIZE,
            help=f"Rows deleted per transaction ({retention.BATCH_SIZE}).",
        )

    def handle(
        self,
        *args: Any,
        older_than_days: int | None,
        dry_run: bool,
        batch_size: int,
        **options: Any,
    ) -> None:
        days = older_than_days
        if days is None:
            days = settings.DELIVERY_RETENTION_DAYS
            if not days:
                self.stdout.write(
                    "DELIVERY_RETENTION_DAYS is 0 (keep forever): nothing to do. "
                    "Pass --older-than-days N to purge anyway."
                )
                return
        if days < 1:
            raise CommandError(
                f"--older-than-days {days}: give a whole number of days, 1 or more."
            )
        if batch_size < 1:
            raise CommandError(f"--batch-size {batch_size}: give 1 or more.")
        result = retention.purge_deliveries(
            days, dry_run=dry_run, batch_size=batch_size, progress=self.stdout.write
        )
        self.stdout.write(result.summary())
