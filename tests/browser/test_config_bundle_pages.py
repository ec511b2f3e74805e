"""An integration admin promotes a signed configuration bundle, in a browser: upload,
read the signature verdict and the diff, apply, and see the version QA now runs."""

import pytest

from integrations import config as config_bundle
from integrations.config import signing
from integrations.models.bundles import ConfigBundleApplied
from integrations.roles import INTEGRATION_ADMIN
from mappings.models import GlRule
from tests.factories import make_user
from tests.mappings import test_config_bundle

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

config = test_config_bundle.config  # the fixture: two connections, every kind of row

PASSWORD = "admin-pass-2026"
PRIVATE, PUBLIC = signing.new_key_pair()


@pytest.fixture
def qa(config, settings, tmp_path):
    """Dev's signed bundle on disk, and QA, which has drifted from it by hand."""
    settings.CONFIG_TRUSTED_KEYS = {"dev-2026": PUBLIC}
    settings.CONFIG_ALLOW_UNSIGNED = False
    document = signing.seal_bundle(
        config_bundle.export_bundle(),
        label="December GL rules",
        environment="dev",
        signing_key=("dev-2026", PRIVATE),
    )
    path = tmp_path / "dev-december.json"
    path.write_text(config_bundle.dump_bundle(document))
    rule = GlRule.objects.get(name="Big Amex")
    rule.account = "1105-50"
    rule.amount_min = "500.00"
    rule.save()
    GlRule.objects.create(
        connection=config, name="Temporary QA rule", account="4000-00"
    )
    make_user(group=INTEGRATION_ADMIN, username="ines", password=PASSWORD)
    return {"path": path, "version": signing.origin_of(document).version}


def sign_in(page, live_server):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", "ines")
    page.fill("#id_password", PASSWORD)
    page.click("input[type=submit]")
    page.wait_for_url(f"{live_server.url}/admin/")


def test_an_admin_reads_the_diff_of_a_signed_bundle_and_applies_it(
    live_server, browser_page, screenshot, qa
):
    page = browser_page
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/integrations/configbundleapplied/")
    assert "No bundle has been applied here yet" in page.inner_text("#content")
    page.click("#import-bundle")
    page.set_input_files("#id_bundle", str(qa["path"]))
    page.click("#check-bundle")

    page.wait_for_selector("#bundle-diff")
    verdict = page.inner_text("#signature-verdict")
    assert verdict == "Signed by key 'dev-2026', signature verified."
    text = " ".join(page.inner_text("#content").split())
    assert f"Bundle {qa['version']}" in text
    assert "Exported from dev" in text
    assert "December GL rules" in text
    assert "GL rules: 0 added, 1 changed, 1 removed" in text
    assert "account 1105-50 → 1105-00" in text
    assert "amount_min 500.00 → 1000.00" in text
    assert "Temporary QA rule" in text
    screenshot("config-bundle-diff")
    assert GlRule.objects.get(name="Big Amex").account == "1105-50"

    page.click("#apply-bundle")

    page.wait_for_selector(".messagelist .success")
    assert f"Applied bundle {qa['version']}" in page.inner_text(".messagelist")
    assert f"This environment runs bundle {qa['version']}" in page.inner_text(
        "#current-bundle"
    )
    assert GlRule.objects.get(name="Big Amex").account == "1105-00"
    assert not GlRule.objects.filter(name="Temporary QA rule").exists()
    assert ConfigBundleApplied.current().applied_by_name == "ines"


def test_a_tampered_bundle_is_refused_in_the_browser(live_server, browser_page, qa):
    page = browser_page
    path = qa["path"]
    path.write_text(path.read_text().replace('"1105-00"', '"1105-99"'))
    sign_in(page, live_server)

    page.goto(f"{live_server.url}/admin/integrations/configbundleapplied/import/")
    page.set_input_files("#id_bundle", str(path))
    page.click("#check-bundle")

    page.wait_for_selector("#signature-verdict")
    assert "The bundle was changed after it was signed" in page.inner_text(
        "#signature-verdict"
    )
    assert page.locator("#apply-bundle").count() == 0
