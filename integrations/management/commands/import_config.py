import sys
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from integrations import config
from integrations.config import history, signing
from integrations.models import Environment


class Command(BaseCommand):
    help = (
        "Check a bundle's signature, show how it differs from this database's "
        "configuration, then apply it in one transaction and record its version. "
        "Secrets are never imported."
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
        parser.add_argument(
            "--allow-unsigned",
            action="store_true",
            help="Accept a legacy unsigned bundle (only where CONFIG_ALLOW_UNSIGNED "
            "is on, e.g. in Dev).",
        )

    def handle(
        self,
        *args: Any,
        file: str,
        dry_run: bool,
        yes: bool,
        environment: str | None,
        allow_unsigned: bool,
        **options: Any,
    ) -> None:
        try:
            document = config.read_bundle(file)
        except config.BundleError as exc:
            raise CommandError(f"{exc} Nothing changed.") from exc
        verdict = signing.check_bundle(document)
        refusal = _refusal(verdict, allow_unsigned)
        if refusal:
            raise CommandError(f"{file} was not imported. {refusal} Nothing changed.")
        self.stdout.write(
            f"Bundle {verdict.origin.version}"
            + (f" ({verdict.origin.label})" if verdict.origin.label else "")
            + f": {verdict.describe()}"
        )
        try:
            plan = config.plan_import(verdict.content, environment=environment)
        except (config.BundleError, DatabaseError) as exc:
            raise CommandError(
                "The bundle was not imported; nothing changed.\n" + str(exc)
            ) from exc
        for line in plan.lines():
            self.stdout.write(line)
        if dry_run:
            self.stdout.write(f"Dry run: nothing changed ({plan.summary()}).")
            return
        if not plan.is_empty and not yes and sys.stdin.isatty():
            answer = input(f"Apply ({plan.summary()})? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                raise CommandError("Not applied; nothing changed.")
        if plan.is_empty:
            self.stdout.write("Nothing to change.")
        else:
            self.stdout.write(f"Applying: {plan.summary()}")
        try:
            plan, record = history.apply_verified(
                verdict,
                source=f"import_config {file}",
                comment=f"Imported from {file}",
                environment=environment,
                progress=self.stdout.write,
            )
        except (config.BundleError, DatabaseError) as exc:
            raise CommandError(
                "The bundle was not imported; nothing changed.\n" + str(exc)
            ) from exc
        self.stdout.write(
            f"Imported {file}: {plan.summary()}. This environment now runs bundle "
            f"{record.version}."
        )
        if plan.secrets_needed:
            self.stdout.write(
                "Enter these secrets in the admin (Connections), they are never "
                "imported:"
            )
            for line in plan.secrets_needed:
                self.stdout.write(f"  {line}")


def _refusal(verdict: signing.Verdict, allow_unsigned: bool) -> str:
    """Why the bundle may not be imported here, or "" if it may."""
    if verdict.state is signing.SignatureState.REFUSED:
        return f"{verdict.reason[0].upper()}{verdict.reason[1:]}"
    if verdict.state is signing.SignatureState.VERIFIED:
        return ""
    if not allow_unsigned:
        return (
            "The bundle is not signed. Export it again where CONFIG_SIGNING_KEY is "
            "set; for a legacy bundle pass --allow-unsigned (accepted only where "
            "CONFIG_ALLOW_UNSIGNED is on, e.g. in Dev)."
        )
    if not settings.CONFIG_ALLOW_UNSIGNED:
        return (
            "The bundle is not signed, and this environment does not accept unsigned "
            "bundles (CONFIG_ALLOW_UNSIGNED is off), --allow-unsigned or not. Export "
            "it again where CONFIG_SIGNING_KEY is set."
        )
    return ""
