from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from integrations import demo


class Command(BaseCommand):
    help = (
        "Give the demo its past: about 60 days of sandbox payments, settlement "
        "batches and refunds, read by the pipeline, and the previous month "
        "reconciled. `manage.py demo` runs it on its first start; run it by hand "
        "against a running demo. DEMO_MODE=1 only; safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--days",
            type=int,
            default=demo.HISTORY_DAYS,
            help=f"Days of history ({demo.HISTORY_DAYS}).",
        )

    def handle(self, *args: Any, days: int, **options: Any) -> None:
        demo.require_demo_mode()
        for line in demo.seed_history(self.stdout.write, days=days):
            self.stdout.write(line)
