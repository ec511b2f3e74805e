import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from integrations import config
from integrations.models import Environment


class Command(BaseCommand):
    help = (
        "Show how a bundle from export_config differs from this database's "
        "configuration, then apply it in one transaction. Secrets are never imported."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The bundle written by export_config.")
        parser.add_argument(
            "--dry-run", action="store_true", help="Show the changes and stop."
        )
        parser.add_argument(
            "--yes", action="store_true", help="Apply without asking for confirmation."
        )
        parser.add_argument(
            "--environment",
            choices=Environment.values,
            help="Environment of new connections (default: that of the connections "
            "already here).",
        )

    def handle(
        self,
        *args: Any,
        file: str,
        dry_run: bool,
        yes: bool,
        environment: str | None,
        **options: Any,
    ) -> None:
        try:
            bundle = config.read_bundle(file)
        except config.BundleError as exc:
            raise CommandError(f"{exc} Nothing changed.") from exc
        try:
            plan = config.plan_import(bundle, environment=environment)
        except (config.BundleError, DatabaseError) as exc:
            raise CommandError(
                "The bundle was not imported; nothing changed.\n" + str(exc)
            ) from exc
        for line in plan.lines():
            self.stdout.write(line)
        if dry_run:
            self.stdout.write(f"Dry run: nothing changed ({plan.summary()}).")
            return
        if plan.is_empty:
            self.stdout.write("Nothing to change.")
            return
        if not yes and sys.stdin.isatty():
            answer = input(f"Apply ({plan.summary()})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Not applied; nothing changed.")
        self.stdout.write(f"Applying: {plan.summary()}")
        try:
            plan = config.apply_bundle(
                bundle,
                comment=f"Imported from {file}",
                environment=environment,
                progress=self.stdout.write,
            )
        except (config.BundleError, DatabaseError) as exc:
            raise CommandError(
                "The bundle was not imported; nothing changed.\n" + str(exc)
            ) from exc
        self.stdout.write(f"Imported {file}: {plan.summary()}.")
        if plan.secrets_needed:
            self.stdout.write(
                "Enter these secrets in the admin (Connections), they are never "
                "imported:"
            )
            for line in plan.secrets_needed:
                self.stdout.write(f"  {line}")
