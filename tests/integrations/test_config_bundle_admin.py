"""The admin's bundle import: upload, signature verdict and diff, apply on confirmation,
and the list of bundles this environment applied."""

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from integrations import config as config_bundle
from integrations.config import signing
from integrations.models.bundles import ConfigBundleApplied
from integrations.roles import FINANCE_REVIEWER, INTEGRATION_ADMIN
from mappings.models import GlRule
from tests.factories import make_user
from tests.mappings import test_config_bundle

pytestmark = pytest.mark.django_db

config = test_config_bundle.config  # the fixture: two connections, every kind of row

PRIVATE, PUBLIC = signing.new_key_pair()
IMPORT_URL = reverse("admin:integrations_configbundleapplied_import")
LIST_URL = reverse("admin:integrations_configbundleapplied_changelist")


@pytest.fixture(autouse=True)
def keys(settings):
    settings.CONFIG_SIGNING_KEY = ("dev-2026", PRIVATE)
    settings.CONFIG_TRUSTED_KEYS = {"dev-2026": PUBLIC}
    settings.CONFIG_ALLOW_UNSIGNED = False
    return settings


@pytest.fixture
def admin_user():
    return make_user(group=INTEGRATION_ADMIN, username="ines")


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def signed_bundle(label="December GL rules", document=None):
    document = document or config_bundle.export_bundle()
    return signing.seal_bundle(
        document, label=label, environment="dev", signing_key=("dev-2026", PRIVATE)
    )


def upload(client, document, name="qa.json"):
    text = document if isinstance(document, bytes) else json.dumps(document).encode()
    return client.post(
        IMPORT_URL, {"bundle": SimpleUploadedFile(name, text, "application/json")}
    )


def apply(client, page):
    """Press "Apply" on a diff page: post back what its form carries."""
    context = page.context
    return client.post(
        IMPORT_URL,
        {
            "apply": "1",
            "bundle_name": context["bundle_name"],
            "bundle_text": context["bundle_text"],
            "fingerprint": context["fingerprint"],
        },
    )


def change_big_amex(account="9999-00", note=None):
    rule = GlRule.objects.get(name="Big Amex")
    rule.account = account
    if note is not None:
        rule.note = note
    rule.save()


def test_the_diff_shows_the_verdict_and_each_changed_field_before_anything_changes(
    config, admin_client
):
    document = signed_bundle()
    change_big_amex()
    GlRule.objects.create(connection=config, name="Hand-made rule", account="4000-00")

    page = upload(admin_client, document)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Signed by key &#x27;dev-2026&#x27;, signature verified." in html
    assert signing.origin_of(document).version in html
    assert "December GL rules" in html
    exported = signing.origin_of(document).exported_at
    assert f"at {exported:%Y-%m-%d %H:%M:%S} UTC" in html
    assert "GL rules: 0 added, 1 changed, 1 removed" in html
    assert '<td class="old">9999-00</td><td class="new">→ 1105-00</td>' in html
    assert (
        "GL rule paytrace-main: name &#x27;Hand-made rule&#x27; (not in the bundle)"
        in (html)
    )
    assert "Status maps: 0 added, 0 changed, 0 removed" in html
    assert 'id="apply-bundle"' in html
    # Nothing applied yet.
    assert GlRule.objects.get(name="Big Amex").account == "9999-00"
    assert not ConfigBundleApplied.objects.exists()


def test_apply_makes_the_configuration_the_bundles_and_records_who(
    config, admin_client, admin_user
):
    document = signed_bundle()
    change_big_amex()
    page = upload(admin_client, document)

    response = apply(admin_client, page)

    assert response.status_code == 302
    assert response.url == LIST_URL
    assert GlRule.objects.get(name="Big Amex").account == "1105-00"
    record = ConfigBundleApplied.current()
    assert record.version == signing.origin_of(document).version
    assert record.signer_key == "dev-2026"
    assert record.applied_by == admin_user
    assert record.applied_by_name == "ines"
    assert record.source == "admin upload qa.json"
    listing = admin_client.get(LIST_URL).content.decode()
    assert f"This environment runs bundle <strong>{record.version}</strong>" in listing
    assert "signed by dev-2026" in listing


def test_a_configuration_changed_since_the_diff_shows_it_again_and_applies_nothing(
    config, admin_client
):
    document = signed_bundle()
    change_big_amex()
    page = upload(admin_client, document)
    # Someone else edits the rule while the diff is open.
    change_big_amex(account="8888-00")

    response = apply(admin_client, page)

    assert response.status_code == 200
    html = response.content.decode()
    assert "The configuration changed since this diff was shown" in html
    assert '<td class="old">8888-00</td><td class="new">→ 1105-00</td>' in html
    assert GlRule.objects.get(name="Big Amex").account == "8888-00"
    assert not ConfigBundleApplied.objects.exists()
    # The new diff carries the new fingerprint: applying it now works.
    assert apply(admin_client, response).status_code == 302
    assert GlRule.objects.get(name="Big Amex").account == "1105-00"


def test_a_tampered_upload_is_refused_with_no_apply_button(config, admin_client):
    document = signed_bundle()
    document["gl_rules"][0]["account"] = "6666-00"

    page = upload(admin_client, document)

    assert page.status_code == 200
    html = page.content.decode()
    assert "Refused: The bundle was changed after it was signed" in html
    assert "apply-bundle" not in html


def test_a_bundle_tampered_on_its_way_back_from_the_diff_is_refused(
    config, admin_client
):
    document = signed_bundle()
    change_big_amex()
    page = upload(admin_client, document)
    tampered = json.loads(page.context["bundle_text"])
    tampered["gl_rules"][0]["account"] = "6666-00"

    response = admin_client.post(
        IMPORT_URL,
        {
            "apply": "1",
            "bundle_name": "qa.json",
            "bundle_text": json.dumps(tampered),
            "fingerprint": page.context["fingerprint"],
        },
    )

    assert "changed after it was signed" in response.content.decode()
    assert GlRule.objects.get(name="Big Amex").account == "9999-00"
    assert not ConfigBundleApplied.objects.exists()


def test_a_bundle_signed_by_an_untrusted_key_is_refused_naming_the_key(
    config, admin_client, keys
):
    keys.CONFIG_TRUSTED_KEYS = {}

    page = upload(admin_client, signed_bundle())

    assert (
        "signed by key &#x27;dev-2026&#x27; which this environment does not trust"
        in (page.content.decode())
    )


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"this is not json", "is not JSON"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[1, 2]", "not a configuration bundle"),
    ],
)
def test_a_bad_file_gets_a_clear_error(config, admin_client, content, expected):
    page = upload(admin_client, content, name="notes.txt")

    assert page.status_code == 200
    html = page.content.decode()
    assert expected in html
    assert "notes.txt" in html


def test_a_file_over_the_limit_is_refused(config, admin_client, settings):
    settings.CONFIG_BUNDLE_MAX_BYTES = 1000

    page = upload(admin_client, signed_bundle())

    assert "larger than CONFIG_BUNDLE_MAX_BYTES" in page.content.decode()


def test_a_signed_bundle_with_a_bad_record_lists_the_problem(config, admin_client):
    content = config_bundle.export_bundle()
    content["gl_rules"][0]["amount_min"] = 12.5

    page = upload(admin_client, signed_bundle(document=content))

    html = page.content.decode()
    assert "This bundle can't be imported" in html
    assert "write decimals as strings" in html
    assert "apply-bundle" not in html


def test_an_unsigned_bundle_is_refused_where_the_setting_is_off(config, admin_client):
    page = upload(admin_client, config_bundle.export_bundle())

    assert "CONFIG_ALLOW_UNSIGNED is off" in page.content.decode()
    assert "apply-bundle" not in page.content.decode()


def test_an_unsigned_bundle_needs_the_box_ticked_where_allowed(
    config, admin_client, keys
):
    keys.CONFIG_ALLOW_UNSIGNED = True
    document = config_bundle.export_bundle()
    change_big_amex()
    page = upload(admin_client, document)
    assert "Not signed" in page.content.decode()

    unticked = apply(admin_client, page)
    assert "tick “Apply it unsigned”" in unticked.content.decode()
    assert GlRule.objects.get(name="Big Amex").account == "9999-00"

    context = page.context
    response = admin_client.post(
        IMPORT_URL,
        {
            "apply": "1",
            "bundle_name": context["bundle_name"],
            "bundle_text": context["bundle_text"],
            "fingerprint": context["fingerprint"],
            "accept_unsigned": "1",
        },
    )
    assert response.status_code == 302
    assert ConfigBundleApplied.current().signature == "unsigned"


def test_a_finance_reviewer_cannot_import_or_see_the_list(config, client):
    client.force_login(make_user(group=FINANCE_REVIEWER))

    assert client.get(IMPORT_URL).status_code == 403
    assert upload(client, signed_bundle()).status_code == 403
    assert client.get(LIST_URL).status_code == 403
    assert not ConfigBundleApplied.objects.exists()


def test_nobody_edits_or_deletes_the_record(config, admin_client):
    page = upload(admin_client, signed_bundle())
    apply(admin_client, page)
    record = ConfigBundleApplied.current()

    detail = admin_client.get(
        reverse("admin:integrations_configbundleapplied_change", args=[record.pk])
    )
    delete = admin_client.post(
        reverse("admin:integrations_configbundleapplied_delete", args=[record.pk]),
        {"post": "yes"},
    )

    assert detail.status_code == 200
    assert 'name="_save"' not in detail.content.decode()
    assert delete.status_code == 403
    assert ConfigBundleApplied.objects.filter(pk=record.pk).exists()


def test_a_bundle_too_large_to_post_back_is_shown_but_left_to_the_command(
    config, admin_client, settings
):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 5000

    page = upload(admin_client, signed_bundle())

    html = page.content.decode()
    assert "Signed by key" in html
    assert "apply it with <code>manage.py import_config qa.json</code>" in html
    assert "apply-bundle" not in html
