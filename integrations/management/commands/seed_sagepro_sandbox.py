from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from integrations.sandbox.sagepro.seed import seed


class Command(BaseCommand):
    help = "Create the Sage Pro sandbox's demo data (safe to run again)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--company", default="01", help="2-character company id")

    def handle(self, *args: Any, **options: Any) -> None:
        created = seed(options["company"])
        summary = ", ".join(f"{count} {kind}" for kind, count in created.items())
        self.stdout.write(
            f"Sage Pro sandbox company {options['company']}: created {summary}."
        )
