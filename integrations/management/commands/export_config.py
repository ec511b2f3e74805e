from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from integrations import config


class Command(BaseCommand):
    help = (
        "Write the configuration (connections without secrets, status maps, GL rules, "
        "field mappings, currency rates) as one JSON bundle for import_config."
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

    def handle(
        self, *args: Any, output: str | None, slugs: list[str] | None, **options: Any
    ) -> None:
        try:
            bundle = config.export_bundle(slugs)
        except config.BundleError as exc:
            raise CommandError(str(exc)) from exc
        for problem in config.duplicate_keys(bundle):
            self.stderr.write(f"Warning: {problem} import_config will refuse it.")
        text = config.dump_bundle(bundle)
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
