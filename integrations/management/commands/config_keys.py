import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations.config import signing

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class Command(BaseCommand):
    help = (
        "Make an Ed25519 key pair for signing configuration bundles and print what to "
        "put where: the private key in the exporting environment (Dev), the public "
        "key in every importing one (QA, Production)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "name",
            help="The key's name, shown in every bundle it signs, e.g. dev-2026.",
        )

    def handle(self, *args: Any, name: str, **options: Any) -> None:
        if not _NAME.fullmatch(name):
            raise CommandError(
                f"Key name {name[:70]!r}: use up to 64 letters, digits, '.', '_' or "
                "'-', starting with a letter or digit (e.g. dev-2026)."
            )
        private, public = signing.new_key_pair()
        self.stdout.write(
            f"""Key pair {name!r} (Ed25519).

1. In the environment that exports bundles (Dev) only, keep this secret like the
   database password (a secrets manager, or an environment file readable by the
   portal's account only):

CONFIG_SIGNING_KEY={name}:{private}

2. In every environment that imports bundles (QA, Production), add this public key to
   CONFIG_TRUSTED_KEYS (comma-separated; during a rotation keep the old key listed
   until no bundle it signed is still to be imported, then remove it):

CONFIG_TRUSTED_KEYS={name}:{public}

Restart the portal after changing either. Bundles exported from then on name the
key {name!r}; import_config and the admin refuse any bundle signed by a key they
do not trust.
"""
        )
