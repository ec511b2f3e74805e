from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import config
from integrations.config import signing


class Command(BaseCommand):
    help = (
        "Write the configuration (connections without secrets, status maps, GL rules, "
        "field mappings, currency rates) as one JSON bundle for import_config, "
        "versioned and signed with CONFIG_SIGNING_KEY."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--output", "-o", help="File to write (default: standard output)."
        )
        parser.add_argument(
            "--connection",
            dest="slugs",
            action="extend",
            nargs="+",
            metavar="SLUG",
            help="Export only these connections and their rows (repeatable).",
        )
        parser.add_argument(
            "--label",
            default="",
            help="A name for this version, e.g. 'December GL rules' (signed with it).",
        )

    def handle(
        self,
        *args: Any,
        output: str | None,
        slugs: list[str] | None,
        label: str,
        **options: Any,
    ) -> None:
        if len(label) > 200:
            raise CommandError("--label is longer than 200 characters; shorten it.")
        try:
            bundle = config.export_bundle(slugs)
        except config.BundleError as exc:
            raise CommandError(str(exc)) from exc
        for problem in config.duplicate_keys(bundle):
            self.stderr.write(f"Warning: {problem} import_config will refuse it.")
        key = settings.CONFIG_SIGNING_KEY
        sealed = signing.seal_bundle(bundle, label=label, signing_key=key)
        origin = signing.origin_of(sealed)
        if key is None:
            self.stderr.write(
                f"Warning: bundle {origin.version} is not signed (CONFIG_SIGNING_KEY "
                "is not set here): QA and Production will refuse it. Make a key with "
                "`manage.py config_keys NAME`."
            )
        else:
            self.stderr.write(f"Bundle {origin.version}, signed with key {key[0]!r}.")
        text = config.dump_bundle(sealed)
        if output:
            write(Path(output), text)
            counts = ", ".join(
                f"{len(bundle[s.name])} {s.plural}" for s in config.SECTIONS
            )
            self.stderr.write(f"Wrote {counts} to {output}.")
        else:
            self.stdout.write(text, ending="")


def write(path: Path, text: str) -> None:
    """Write the bundle, or fail with one line naming the file and what to do."""
    if path.is_dir():
        raise CommandError(
            f"--output {path} is a directory; name a file, e.g. {path / 'config.json'}."
        )
    if not path.parent.is_dir():
        raise CommandError(
            f"--output {path}: the folder {path.parent} does not exist; create it "
            "first or write elsewhere."
        )
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise CommandError(
            f"Can't write --output {path}: {exc.strerror}. Check the path and its "
            "permissions."
        ) from exc
