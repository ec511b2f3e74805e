"""Configuration bundles: export, import with a plan, round trip, secrets stay home."""

import json
from datetime import date
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command
from django.db import connection as db_connection
from django.test import override_settings
from reversion.models import Revision, Version

from integrations import config as config_bundle
from integrations.config import apply as applying
from integrations.models import Connection, WebhookSecret
from mappings.models import (
    CurrencyRate,
    FieldMapping,
    GlRule,
    MatchingRule,
    StatusMap,
)
from tests.factories import make_connection, make_webhook_secret

pytestmark = pytest.mark.django_db

SECRET = "super-secret-key"
WEBHOOK_SECRET = "whsec_c2VjcmV0LXRoYXQtbXVzdC1uZXZlci1sZWF2ZQ=="


@pytest.fixture
def config():
    """A Sage Pro and a PayTrace connection with every kind of configuration row."""
    sage = make_connection(
        Connection.Kind.SAGEPRO, slug="sage-main", name="Sage main", password=SECRET
    )
    paytrace = make_connection(
        slug="paytrace-main",
        name="PayTrace main",
        password=SECRET,
        integrator_id="INT0001",
        sagepro=sage,
        suspense_account="1999-00",
    )
    make_webhook_secret(paytrace, secret=WEBHOOK_SECRET)
    declined = paytrace.status_maps.filter(gateway_status="declined").first()
    declined.action = StatusMap.Action.REVIEW
    declined.save()
    StatusMap.objects.create(
        connection=paytrace,
        priority=7,
        event_type="transaction.approved",
        status_message_pattern="*HOLD*",
        response_code=101,
        gateway_status="approved",
        payment_status="Pending",
        action=StatusMap.Action.REVIEW,
        is_active=False,
    )
    GlRule.objects.create(
        connection=paytrace,
        name="Big Amex",
        priority=10,
        card_brands="AMEX",
        amount_min=Decimal("1000.00"),
        amount_max=Decimal("99999.99"),
        currency="USD",
        account="1105-00",
        note="Amex over a thousand — separate clearing account.",
    )
    GlRule.objects.create(
        connection=paytrace,
        name="Web orders",
        customer_pattern="WEB*",
        account="1100-00",
    )
    FieldMapping.objects.create(
        connection=paytrace,
        target_field="invno",
        source_path="invoice_id",
        transforms=[{"op": "upper"}, {"op": "pad", "width": 10, "align": "right"}],
        position=1,
    )
    FieldMapping.objects.create(
        connection=paytrace, document="customer", target_field="custno", position=2
    )
    MatchingRule.objects.create(
        connection=paytrace,
        name="Web orders, 1% tolerance",
        priority=20,
        customer_pattern="WEB*",
        reference_mode=MatchingRule.ReferenceMode.NORMALIZED,
        tolerance_type=MatchingRule.Tolerance.PERCENT,
        tolerance_value=Decimal("1.5"),
        auto_apply=False,
    )
    CurrencyRate.objects.create(
        currency="CAD", rate=Decimal("0.73125000"), valid_on=date(2025, 3, 1)
    )
    CurrencyRate.objects.create(
        currency="EUR", rate=Decimal("1.08"), valid_on=date(2025, 3, 1), source="ECB"
    )
    return paytrace


def export_text(*args):
    bundle = config_bundle.export_bundle(*args)
    return config_bundle.dump_bundle(bundle)


def wipe_configuration():
    """Empty the configuration tables, as in a freshly migrated database."""
    Connection.objects.filter(kind=Connection.Kind.PAYTRACE).delete()
    Connection.objects.all().delete()
    CurrencyRate.objects.all().delete()
    assert not StatusMap.objects.exists()
    assert not GlRule.objects.exists()


def import_file(path, *args):
    """Import a legacy (unsigned) bundle, as an environment that allows them may;
    signed bundles are tested in tests/integrations/test_config_signing.py."""
    with override_settings(CONFIG_ALLOW_UNSIGNED=True):
        call_command("import_config", str(path), "--allow-unsigned", *args)


def write(tmp_path, bundle, name="bundle.json"):
    path = tmp_path / name
    path.write_text(config_bundle.dump_bundle(bundle))
    return path


# Export ---------------------------------------------------------------------------------


def test_it_exports_natural_keys_strings_for_decimals_and_iso_dates(config):
    bundle = json.loads(export_text())

    assert bundle["format"] == "payments-portal-config"
    assert bundle["version"] == 1
    paytrace = next(c for c in bundle["connections"] if c["slug"] == "paytrace-main")
    assert paytrace["sagepro"] == "sage-main"
    assert "environment" not in paytrace
    assert "id" not in paytrace
    rule = next(r for r in bundle["gl_rules"] if r["name"] == "Big Amex")
    assert rule["connection"] == "paytrace-main"
    assert rule["amount_min"] == "1000.00"
    assert bundle["matching_rules"][0]["tolerance_value"] == "1.5000"
    assert bundle["currency_rates"][0] == {
        "currency": "CAD",
        "base_currency": "USD",
        "valid_on": "2025-03-01",
        "rate": "0.73125000",
        "source": "",
    }
    # Status maps in the order they are tried.
    priorities = [m["priority"] for m in bundle["status_maps"]]
    assert priorities == sorted(priorities)


def test_two_exports_are_byte_identical(config):
    assert export_text() == export_text()


def test_every_field_is_exported_or_deliberately_left_out():
    for section in config_bundle.SECTIONS:
        model_fields = {f.name for f in section.model._meta.concrete_fields}
        left_out = config_bundle.NOT_EXPORTED[section.model]
        assert model_fields - left_out == set(section.fields), section.name


def test_secrets_never_appear_in_the_bundle(config, tmp_path):
    out = tmp_path / "config.json"
    call_command("export_config", "--output", str(out))

    text = out.read_text()
    assert SECRET not in text
    assert WEBHOOK_SECRET not in text
    assert "password" not in text
    assert "webhook" not in text.lower()
    assert "fernet:" not in text


def test_it_exports_only_the_connections_asked_for(config, capsys):
    other = make_connection(slug="paytrace-other")
    GlRule.objects.create(connection=other, name="Other", account="1200-00")

    call_command("export_config", "--connection", "paytrace-other")

    bundle = json.loads(capsys.readouterr().out)
    assert [c["slug"] for c in bundle["connections"]] == ["paytrace-other"]
    assert [r["name"] for r in bundle["gl_rules"]] == ["Other"]
    assert {m["connection"] for m in bundle["status_maps"]} == {"paytrace-other"}


def test_exporting_an_unknown_connection_fails():
    with pytest.raises(CommandError, match="No connection with slug 'nope'"):
        call_command("export_config", "--connection", "nope")


# Round trip -----------------------------------------------------------------------------


def test_export_import_into_an_empty_database_export_round_trips(config, tmp_path):
    first = export_text()
    path = tmp_path / "dev.json"
    path.write_text(first)
    wipe_configuration()

    import_file(path, "--yes")

    assert export_text() == first


def test_import_gives_a_new_paytrace_connection_exactly_the_bundles_status_map(
    config, tmp_path
):
    bundle = config_bundle.export_bundle()
    bundle["status_maps"] = [
        m for m in bundle["status_maps"] if m["gateway_status"] != "voided"
    ]
    path = write(tmp_path, bundle)
    wipe_configuration()

    import_file(path, "--yes")

    rows = StatusMap.objects.filter(connection__slug="paytrace-main")
    assert rows.count() == len(bundle["status_maps"])
    assert not rows.filter(gateway_status="voided").exists()


def test_import_says_which_connections_need_their_secrets(config, tmp_path, capsys):
    path = write(tmp_path, config_bundle.export_bundle())
    wipe_configuration()

    import_file(path, "--yes")

    out = capsys.readouterr().out
    assert "paytrace-main: its password and a webhook secret" in out
    assert "sage-main: its API key" in out
    assert Connection.objects.get(slug="paytrace-main").password == ""
    assert not WebhookSecret.objects.exists()


def test_import_is_one_revision_commented_with_the_file(config, tmp_path):
    bundle = config_bundle.export_bundle()
    bundle["gl_rules"][0]["account"] = "1106-00"
    path = write(tmp_path, bundle, "qa.json")

    import_file(path, "--yes")

    revision = Revision.objects.order_by("-pk").first()
    assert revision.comment == f"Imported from {path}"
    rule = GlRule.objects.get(name=bundle["gl_rules"][0]["name"])
    assert Version.objects.get_for_object(rule).first().revision == revision


def test_new_connections_take_the_targets_environment(config, tmp_path):
    Connection.objects.update(environment="qa")
    bundle = config_bundle.export_bundle()
    bundle["connections"].append(
        dict(bundle["connections"][0], slug="sage-second", name="Sage second")
    )
    path = write(tmp_path, bundle)

    import_file(path, "--yes")

    assert Connection.objects.get(slug="sage-second").environment == "qa"


# Plan and dry run -----------------------------------------------------------------------


def test_dry_run_prints_creates_updates_and_deletes_and_changes_nothing(
    config, tmp_path, capsys
):
    path = write(tmp_path, config_bundle.export_bundle())
    GlRule.objects.filter(name="Web orders").update(account="1300-00")
    paytrace = Connection.objects.get(slug="paytrace-main")
    paytrace.status_maps.filter(gateway_status="voided").first().delete()
    FieldMapping.objects.create(
        connection=paytrace, target_field="refno", source_path="transaction_id"
    )
    before = export_text()
    revisions = Revision.objects.count()

    import_file(path, "--dry-run")

    out = capsys.readouterr().out
    assert "~ update GL rule paytrace-main: name 'Web orders'" in out
    assert "account: '1300-00' → '1100-00'" in out
    assert "+ create status map paytrace-main:" in out
    assert "- delete field mapping paytrace-main: document 'cash_receipt', " in out
    assert "target_field 'refno' (not in the bundle)" in out
    assert "Dry run: nothing changed" in out
    assert export_text() == before
    assert Revision.objects.count() == revisions


def test_import_applies_the_plan(config, tmp_path, capsys):
    wanted = export_text()
    path = tmp_path / "bundle.json"
    path.write_text(wanted)
    GlRule.objects.filter(name="Web orders").update(account="1300-00")
    paytrace = Connection.objects.get(slug="paytrace-main")
    paytrace.status_maps.filter(gateway_status="voided").first().delete()
    FieldMapping.objects.create(
        connection=paytrace, target_field="refno", source_path="transaction_id"
    )

    import_file(path, "--yes")

    assert export_text() == wanted
    assert "Imported" in capsys.readouterr().out


def test_an_unchanged_bundle_changes_nothing(config, tmp_path, capsys):
    path = write(tmp_path, config_bundle.export_bundle())
    revisions = Revision.objects.count()

    import_file(path, "--yes")

    assert "Nothing to change." in capsys.readouterr().out
    assert Revision.objects.count() == revisions


def test_per_environment_fields_of_an_existing_connection_are_kept(
    config, tmp_path, capsys
):
    bundle = config_bundle.export_bundle()
    for record in bundle["connections"]:
        record["base_url"] = "https://prod.example/api"
        record["username"] = "prod-user"
    bundle["connections"][0]["name"] = "Renamed"
    path = write(tmp_path, bundle)

    import_file(path, "--yes")

    paytrace = Connection.objects.get(slug="paytrace-main")
    assert paytrace.base_url == "https://api.sandbox.paytrace.example"
    assert paytrace.username == "api-user"
    assert Connection.objects.get(slug=bundle["connections"][0]["slug"]).name == (
        "Renamed"
    )
    assert "kept, it is set per environment" in capsys.readouterr().out


# Bad bundles ----------------------------------------------------------------------------


def test_a_wrong_format_is_refused(config, tmp_path):
    path = tmp_path / "other.json"
    path.write_text(json.dumps({"format": "something-else", "version": 1}))

    with pytest.raises(CommandError, match="Not a configuration bundle"):
        import_file(path, "--yes")


def test_an_unknown_slug_reference_is_refused_and_nothing_changes(config, tmp_path):
    bundle = config_bundle.export_bundle()
    bundle["connections"][1]["name"] = "Would change"
    bundle["connections"][1]["sagepro"] = "sage-missing"
    bundle["gl_rules"].append(dict(bundle["gl_rules"][0], connection="ghost"))
    path = write(tmp_path, bundle)
    before = export_text()

    with pytest.raises(CommandError) as error:
        import_file(path, "--yes")

    message = str(error.value)
    assert "nothing changed" in message
    assert "'sage-missing', which is neither in the bundle nor in this database" in (
        message
    )
    assert "--connection sage-missing" in message
    assert "gl_rules[2]" in message
    assert "connection 'ghost' is not in the bundle's connections" in message
    assert export_text() == before


def test_bad_values_name_the_record_and_the_field(config, tmp_path):
    bundle = config_bundle.export_bundle()
    bundle["connections"][0]["kind"] = "stripe"
    bundle["status_maps"][0]["action"] = "shrug"
    bundle["currency_rates"][0]["rate"] = 0.7
    path = write(tmp_path, bundle)

    with pytest.raises(CommandError) as error:
        import_file(path, "--yes")

    message = str(error.value)
    assert "unknown connection kind 'stripe'" in message
    assert "status_maps[0]" in message
    assert "action: Value 'shrug' is not a valid choice." in message
    assert "currency_rates[0]" in message
    assert "write decimals as strings" in message


def test_an_error_while_applying_rolls_everything_back(config, tmp_path, monkeypatch):
    bundle = config_bundle.export_bundle()
    bundle["connections"][0]["name"] = "Renamed"
    bundle["gl_rules"][0]["account"] = "1106-00"
    bundle["currency_rates"][0]["rate"] = "0.80000000"
    path = write(tmp_path, bundle)
    before = export_text()
    apply_rows = applying._apply_rows

    def fail_on_rates(plan, section, by_slug):
        if section is config_bundle.CURRENCY_RATES:
            raise config_bundle.BundleError(["disk on fire"])
        apply_rows(plan, section, by_slug)

    monkeypatch.setattr(applying, "_apply_rows", fail_on_rates)

    with pytest.raises(CommandError, match="disk on fire"):
        import_file(path, "--yes")

    assert export_text() == before


# Secrets --------------------------------------------------------------------------------


def stored_secrets():
    """The encrypted values exactly as stored."""
    with db_connection.cursor() as cursor:
        cursor.execute("SELECT id, password FROM integrations_connection ORDER BY id")
        passwords = cursor.fetchall()
        cursor.execute("SELECT id, secret FROM integrations_webhooksecret ORDER BY id")
        return passwords, cursor.fetchall()


def test_an_import_leaves_secrets_untouched(config, tmp_path):
    bundle = config_bundle.export_bundle()
    for record in bundle["connections"]:
        record["name"] += " (renamed)"
        record["suspense_account"] = "1998-00"
    path = write(tmp_path, bundle)
    before = stored_secrets()

    import_file(path, "--yes")

    assert (
        Connection.objects.get(slug="paytrace-main").name == "PayTrace main (renamed)"
    )
    assert stored_secrets() == before
    assert Connection.objects.get(slug="paytrace-main").password == SECRET
    assert config.active_webhook_secrets() == [WEBHOOK_SECRET]


def test_a_bundle_from_before_gl_rules_had_a_purpose_still_imports(config, tmp_path):
    bundle = config_bundle.export_bundle()
    for rule in bundle["gl_rules"]:
        del rule["purpose"]
    GlRule.objects.filter(name="Web orders").update(purpose="refund")
    path = write(tmp_path, bundle)

    import_file(path, "--yes")

    # A rule of an older bundle is a receipt rule, as every rule was then.
    assert set(GlRule.objects.values_list("purpose", flat=True)) == {"receipt"}
