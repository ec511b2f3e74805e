"""Signed configuration bundles: export signs, import refuses what it can't trust,
and every applied bundle's version is recorded."""

import json
import re

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import CommandError, call_command
from reversion.models import Revision

from integrations import config as config_bundle
from integrations.config import signing
from integrations.models.bundles import ConfigBundleApplied
from mappings.models import GlRule
from portal.settings_bundles import parse_named_key
from tests.mappings import test_config_bundle
from tests.mappings.test_config_bundle import SECRET, WEBHOOK_SECRET

pytestmark = pytest.mark.django_db

config = test_config_bundle.config  # the fixture: two connections, every kind of row

DEV_PRIVATE, DEV_PUBLIC = signing.new_key_pair()
NEW_PRIVATE, NEW_PUBLIC = signing.new_key_pair()
OTHER_PRIVATE, OTHER_PUBLIC = signing.new_key_pair()


@pytest.fixture
def keys(settings):
    """Dev signs with dev-2026; this environment trusts dev-2026 only."""
    settings.CONFIG_SIGNING_KEY = ("dev-2026", DEV_PRIVATE)
    settings.CONFIG_TRUSTED_KEYS = {"dev-2026": DEV_PUBLIC}
    settings.CONFIG_ALLOW_UNSIGNED = False
    settings.PORTAL_ENVIRONMENT = "dev"
    return settings


def export_file(tmp_path, *args, name="bundle.json"):
    path = tmp_path / name
    call_command("export_config", "--output", str(path), *args)
    return path


def import_file(path, *args):
    call_command("import_config", str(path), "--yes", *args)


def big_amex():
    return GlRule.objects.get(name="Big Amex")


def drift():
    """Someone changes QA by hand after the export: an import puts it back."""
    rule = big_amex()
    rule.account = "9999-00"
    rule.save()


# Signing and verifying ------------------------------------------------------------------


def test_an_exported_bundle_names_its_key_version_and_verifies(config, keys, tmp_path):
    path = export_file(tmp_path, "--label", "December GL rules")

    document = json.loads(path.read_text())
    assert document["signature"]["key"] == "dev-2026"
    assert document["signature"]["algorithm"] == "ed25519"
    assert document["origin"]["environment"] == "dev"
    assert document["origin"]["label"] == "December GL rules"
    verdict = signing.check_bundle(document)
    assert verdict.state is signing.SignatureState.VERIFIED
    assert verdict.key == "dev-2026"
    assert re.fullmatch(r"dev-\d{8}-\d{6}-[0-9a-f]{12}", verdict.origin.version)
    # The configuration itself is what export_bundle gives, untouched.
    assert verdict.content == config_bundle.export_bundle()


def test_the_signed_bundle_holds_no_secrets(config, keys, tmp_path):
    text = export_file(tmp_path).read_text()

    assert SECRET not in text
    assert WEBHOOK_SECRET not in text
    assert DEV_PRIVATE not in text
    assert "password" not in text


def test_export_without_a_key_warns_that_qa_will_refuse_it(
    config, keys, tmp_path, capsys
):
    keys.CONFIG_SIGNING_KEY = None

    path = export_file(tmp_path)

    assert "signature" not in json.loads(path.read_text())
    assert "is not signed" in capsys.readouterr().err


def test_changing_one_byte_is_refused_and_nothing_changes(config, keys, tmp_path):
    path = export_file(tmp_path)
    drift()
    text = path.read_text()
    assert text.count('"1105-00"') == 1
    path.write_text(text.replace('"1105-00"', '"1105-01"'))

    with pytest.raises(CommandError, match="changed after it was signed"):
        import_file(path)

    assert big_amex().account == "9999-00"
    assert not ConfigBundleApplied.objects.exists()


def test_a_dry_run_refuses_a_tampered_bundle_too(config, keys, tmp_path):
    path = export_file(tmp_path)
    document = json.loads(path.read_text())
    document["gl_rules"][0]["note"] = "edited by hand"
    path.write_text(json.dumps(document))

    with pytest.raises(CommandError, match="changed after it was signed"):
        import_file(path, "--dry-run")


def test_reindenting_or_reordering_keys_keeps_the_signature(config, keys, tmp_path):
    path = export_file(tmp_path)
    document = json.loads(path.read_text())
    reordered = {k: document[k] for k in reversed(list(document))}
    reordered["gl_rules"] = [dict(reversed(r.items())) for r in document["gl_rules"]]
    path.write_text(json.dumps(reordered, indent=7))
    drift()

    import_file(path)

    assert big_amex().account == "1105-00"


def test_reordering_rules_breaks_the_signature(config, keys, tmp_path):
    """Rules are tried in list order: a reordered list is a different configuration."""
    path = export_file(tmp_path)
    document = json.loads(path.read_text())
    document["gl_rules"].reverse()
    path.write_text(json.dumps(document))

    with pytest.raises(CommandError, match="changed after it was signed"):
        import_file(path)


def test_a_signature_swapped_in_from_another_bundle_is_refused(config, keys, tmp_path):
    first = json.loads(export_file(tmp_path, name="first.json").read_text())
    drift()
    second_path = export_file(tmp_path, name="second.json")
    second = json.loads(second_path.read_text())
    second["signature"] = first["signature"]
    second_path.write_text(json.dumps(second))

    with pytest.raises(CommandError, match="changed after it was signed"):
        import_file(second_path)


def test_a_changed_label_is_refused(config, keys, tmp_path):
    path = export_file(tmp_path, "--label", "QA only")
    document = json.loads(path.read_text())
    document["origin"]["label"] = "Approved for production"
    path.write_text(json.dumps(document))

    with pytest.raises(CommandError, match="changed after it was signed"):
        import_file(path)


def test_a_bundle_signed_by_a_key_this_environment_does_not_trust_is_refused(
    config, keys, tmp_path
):
    keys.CONFIG_SIGNING_KEY = ("laptop-key", OTHER_PRIVATE)
    path = export_file(tmp_path)

    with pytest.raises(CommandError) as refused:
        import_file(path)

    message = str(refused.value)
    assert "signed by key 'laptop-key' which this environment does not trust" in (
        message
    )
    assert "CONFIG_TRUSTED_KEYS" in message
    assert not ConfigBundleApplied.objects.exists()


def test_a_key_named_like_a_trusted_one_but_different_is_refused(
    config, keys, tmp_path
):
    """The name is only a label: the signature must check out with the trusted key."""
    keys.CONFIG_SIGNING_KEY = ("dev-2026", OTHER_PRIVATE)
    path = export_file(tmp_path)

    with pytest.raises(CommandError, match="changed after it was signed"):
        import_file(path)


@pytest.mark.parametrize(
    ("signature", "expected"),
    [
        ("not an object", "signature block is not an object"),
        ({"algorithm": "hmac-sha256", "key": "dev-2026", "value": "AA=="}, "hmac"),
        ({"algorithm": "ed25519", "key": "dev-2026", "value": "???"}, "not a base64"),
        ({"algorithm": "ed25519", "key": "", "value": "AA=="}, "names no key"),
    ],
)
def test_a_malformed_signature_block_is_refused(
    config, keys, tmp_path, signature, expected
):
    path = export_file(tmp_path)
    document = json.loads(path.read_text())
    document["signature"] = signature
    path.write_text(json.dumps(document))

    with pytest.raises(CommandError, match=expected):
        import_file(path)


# Key rotation ---------------------------------------------------------------------------


def test_during_a_rotation_both_keys_are_accepted_then_only_the_new_one(
    config, keys, tmp_path
):
    old = export_file(tmp_path, name="old.json")
    keys.CONFIG_SIGNING_KEY = ("dev-2027", NEW_PRIVATE)
    new = export_file(tmp_path, name="new.json")
    keys.CONFIG_TRUSTED_KEYS = {"dev-2026": DEV_PUBLIC, "dev-2027": NEW_PUBLIC}

    import_file(old)
    import_file(new)
    assert [r.signer_key for r in ConfigBundleApplied.objects.all()] == [
        "dev-2027",
        "dev-2026",
    ]

    keys.CONFIG_TRUSTED_KEYS = {"dev-2027": NEW_PUBLIC}
    with pytest.raises(CommandError, match="'dev-2026' which this environment"):
        import_file(old)
    import_file(new)


# Unsigned (legacy) bundles ---------------------------------------------------------------


def legacy_bundle(tmp_path):
    path = tmp_path / "legacy.json"
    path.write_text(config_bundle.dump_bundle(config_bundle.export_bundle()))
    return path


def test_an_unsigned_bundle_is_refused_naming_the_fix(config, keys, tmp_path):
    with pytest.raises(CommandError, match="--allow-unsigned"):
        import_file(legacy_bundle(tmp_path))


def test_allow_unsigned_is_refused_where_the_setting_is_off(config, keys, tmp_path):
    with pytest.raises(CommandError, match="CONFIG_ALLOW_UNSIGNED is off"):
        import_file(legacy_bundle(tmp_path), "--allow-unsigned")


def test_allow_unsigned_imports_a_legacy_bundle_where_the_setting_allows(
    config, keys, tmp_path
):
    keys.CONFIG_ALLOW_UNSIGNED = True
    path = legacy_bundle(tmp_path)
    drift()

    import_file(path, "--allow-unsigned")

    assert big_amex().account == "1105-00"
    record = ConfigBundleApplied.current()
    assert record.signature == ConfigBundleApplied.Signature.UNSIGNED
    assert record.signer_key == ""
    assert record.version.startswith("unversioned-")


# The record of applied bundles -----------------------------------------------------------


def test_an_import_records_the_version_the_environment_now_runs(
    config, keys, tmp_path, capsys
):
    path = export_file(tmp_path, "--label", "December GL rules")
    document = json.loads(path.read_text())
    drift()

    import_file(path)

    record = ConfigBundleApplied.current()
    origin = signing.origin_of(document)
    assert record.version == origin.version
    assert record.content_hash == origin.content_hash
    assert record.label == "December GL rules"
    assert record.source_environment == "dev"
    assert record.exported_at == origin.exported_at
    assert record.signer_key == "dev-2026"
    assert record.summary == "GL rules: 1 changed"
    assert "      account: '9999-00' → '1105-00'" in record.plan_lines
    assert record.source == f"import_config {path}"
    assert f"now runs bundle {record.version}" in capsys.readouterr().out
    assert Revision.objects.filter(comment=f"Imported from {path}").exists()


def test_reimporting_an_unchanged_bundle_still_records_it(config, keys, tmp_path):
    path = export_file(tmp_path)

    import_file(path)

    record = ConfigBundleApplied.current()
    assert record.summary == "nothing to change"


def test_a_dry_run_records_nothing(config, keys, tmp_path):
    import_file(export_file(tmp_path), "--dry-run")

    assert not ConfigBundleApplied.objects.exists()


# Keys -----------------------------------------------------------------------------------


def test_config_keys_prints_a_pair_that_signs_and_verifies(config, keys, capsys):
    call_command("config_keys", "qa-2026")

    out = capsys.readouterr().out
    private = re.search(r"^CONFIG_SIGNING_KEY=(.+)$", out, re.M).group(1)
    public = re.search(r"^CONFIG_TRUSTED_KEYS=(.+)$", out, re.M).group(1)
    name, private_key = parse_named_key("CONFIG_SIGNING_KEY", private, private=True)
    trusted = dict([parse_named_key("CONFIG_TRUSTED_KEYS", public, private=False)])
    assert name == "qa-2026"
    sealed = signing.seal_bundle({"x": 1}, signing_key=(name, private_key))
    assert signing.check_bundle(sealed, trusted).is_signed


def test_config_keys_refuses_a_name_that_cannot_be_read_back():
    with pytest.raises(CommandError, match="Key name"):
        call_command("config_keys", "dev 2026:x")


@pytest.mark.parametrize(
    ("value", "private", "expected"),
    [
        ("no-name-here", False, "name:base64-key"),
        ("dev:bm90IGEga2V5", False, "not a base64 Ed25519 public key"),
        (f"dev:{DEV_PRIVATE[:-4]}", True, "not a base64 Ed25519 private key"),
    ],
    # The keys are made per run: ids that do not show them, the same in every
    # pytest-xdist worker.
    ids=["no-name", "not-a-public-key", "truncated-private-key"],
)
def test_a_malformed_key_stops_startup_without_showing_it(value, private, expected):
    with pytest.raises(ImproperlyConfigured, match=expected) as refused:
        parse_named_key("CONFIG_TRUSTED_KEYS", value, private=private)

    key = value.partition(":")[2]
    if key:
        assert key not in str(refused.value)
