from typing import Any

from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from integrations import demo


class Command(BaseCommand):
    help = (
        "Seed the sandboxes, the two sandbox connections, the demo webhook secret and "
        "the demo logins (admin/admin, reviewer/reviewer); with DEMO_SAGEPRO=agent, "
        "also the demo agent's FoxPro files, site mapping and enrolment. DEMO_MODE=1 "
        "only; safe to run again."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--port", type=int, default=8000, help="Port the demo serves on (8000)."
        )

    def handle(self, *args: Any, port: int, **options: Any) -> None:
        demo.require_demo_mode()
        with transaction.atomic():
            report = demo.seed_demo(port)
        for line in report:
            self.stdout.write(line)
