"""import_config, export_config and reconcile against hostile input: clear one-line
errors, nothing half-done, and the database's write lock held only while writing."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db_connection

from integrations import config as config_bundle
from integrations.config import plan as planning
from integrations.models import ReconciliationRun
from tests.mappings import test_config_bundle
from tests.mappings.test_config_bundle import export_text, import_file, write

pytestmark = pytest.mark.django_db

config = test_config_bundle.config  # the fixture

ROOT = Path(__file__).resolve().parents[2]


# import_config ---------------------------------------------------------------------------


def test_a_bundle_over_the_size_cap_is_refused_by_name_and_nothing_changes(
    config, tmp_path, settings
):
    settings.CONFIG_BUNDLE_MAX_BYTES = 4096
    bundle = config_bundle.export_bundle()
    bundle["connections"][0]["name"] = "Would change"
    path = tmp_path / "padded.json"
    # Valid JSON, padded past the cap with whitespace.
    path.write_text(config_bundle.dump_bundle(bundle) + " " * 8192)
    before = export_text()

    with pytest.raises(CommandError) as error:
        import_file(path, "--yes")

    message = str(error.value)
    assert "CONFIG_BUNDLE_MAX_BYTES" in message
    assert "4,096 bytes" in message
    assert str(path) in message
    assert export_text() == before


def test_a_huge_file_is_refused_without_being_read(config, tmp_path, monkeypatch):
    path = tmp_path / "huge.json"
    with path.open("wb") as file:
        file.truncate(200 * 1024 * 1024)  # sparse: no disk used
    reads = []
    real_read_bytes = Path.read_bytes

    def spy(self, *args, **kwargs):
        reads.append(self)
        return real_read_bytes(self, *args, **kwargs)

    monkeypatch.setattr(Path, "read_bytes", spy)
    monkeypatch.setattr(Path, "read_text", spy)

    with pytest.raises(CommandError, match="CONFIG_BUNDLE_MAX_BYTES"):
        import_file(path, "--dry-run")

    assert reads == []


def test_the_bundle_is_checked_before_the_write_transaction_begins(
    config, tmp_path, monkeypatch
):
    bundle = config_bundle.export_bundle()
    bundle["connections"][0]["name"] = "Renamed"
    path = write(tmp_path, bundle)
    outside = len(db_connection.atomic_blocks)
    depths = []
    validate = planning.validate_records

    def record_depth(bundle):
        depths.append(len(db_connection.atomic_blocks))
        return validate(bundle)

    monkeypatch.setattr(planning, "validate_records", record_depth)

    import_file(path, "--yes")

    assert "Renamed" in export_text()
    assert depths and all(depth == outside for depth in depths)


def test_a_deeply_nested_file_gets_a_one_line_error_naming_it(config, tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)

    with pytest.raises(CommandError) as error:
        import_file(path, "--dry-run")

    assert str(path) in str(error.value)
    assert "nests too deeply" in str(error.value)


def test_a_bundle_nested_deeper_than_any_bundle_is_refused(config, tmp_path):
    bundle = config_bundle.export_bundle()
    deep: list = []
    for _ in range(200):
        deep = [deep]
    bundle["connections"][0]["name"] = deep
    path = write(tmp_path, bundle)

    with pytest.raises(CommandError, match="nests more than 16 levels deep"):
        import_file(path, "--dry-run")


def test_a_file_that_is_not_utf8_gets_a_one_line_error_naming_it(config, tmp_path):
    path = tmp_path / "latin1.json"
    path.write_bytes(b'{"format": "payments-portal-config", "name": "caf\xe9"}')

    with pytest.raises(CommandError) as error:
        import_file(path, "--dry-run")

    assert f"{path} is not UTF-8 text (byte 49 is invalid)" in str(error.value)


def test_a_directory_or_a_missing_file_is_named(config, tmp_path):
    with pytest.raises(CommandError, match=f"read {tmp_path}: Is a directory"):
        import_file(tmp_path, "--dry-run")
    with pytest.raises(CommandError, match="No such file or directory"):
        import_file(tmp_path / "missing.json", "--dry-run")


def test_the_command_line_shows_the_error_without_a_traceback(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000)
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings_test"}

    done = subprocess.run(
        [sys.executable, "manage.py", "import_config", str(path), "--dry-run"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"CommandError: {path} nests too deeply to be a configuration bundle. "
        "Nothing changed."
    ]


# export_config ---------------------------------------------------------------------------


def test_export_to_a_missing_folder_says_to_create_it(config, tmp_path):
    target = tmp_path / "nowhere" / "qa.json"

    with pytest.raises(CommandError) as error:
        call_command("export_config", "--output", str(target))

    assert f"the folder {tmp_path / 'nowhere'} does not exist" in str(error.value)
    assert not target.exists()


def test_export_to_a_directory_asks_for_a_file_name(config, tmp_path):
    with pytest.raises(CommandError, match=f"--output {tmp_path} is a directory"):
        call_command("export_config", "--output", str(tmp_path))


def test_export_to_a_file_still_works(config, tmp_path):
    target = tmp_path / "qa.json"

    call_command("export_config", "--output", str(target))

    assert json.loads(target.read_text())["format"] == "payments-portal-config"


# reconcile -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("date_from", "date_to", "says"),
    [
        ("9999-12-31", "9999-12-31", "outside the dates a run can cover"),
        ("0001-01-01", "2026-01-31", "outside the dates a run can cover"),
        ("20261101", "2026-11-30", "--from '20261101' is not a date"),
        ("2026-11-01", "2026-W48-1", "--to '2026-W48-1' is not a date"),
        ("２０２６-11-01", "2026-11-30", "is not a date"),
        ("2020-01-01", "2025-12-31", "spans more than 366 days"),
    ],
)
def test_reconcile_refuses_dates_it_cannot_use_before_writing_a_run(
    paytrace_conn, date_from, date_to, says
):
    with pytest.raises(CommandError, match=says):
        call_command("reconcile", "--from", date_from, "--to", date_to)

    assert not ReconciliationRun.objects.exists()
