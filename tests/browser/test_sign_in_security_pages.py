"""Sign-in security in a real browser (issue 16): a superuser sets up two-factor
sign-in from the QR page and keeps the recovery codes; an enrolled person signs in with
a code from the app; five wrong passwords show the lockout page."""

import re

import pytest
from django_otp.oath import totp

from portal.models import (
    AccessAuditEntry,
    AuthenticatorDevice,
    RecoveryCode,
    recovery_code_digest,
)
from tests.factories import make_user

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]

PASSWORD = "sign-in-pages-2026"


@pytest.fixture
def two_factor_on(settings):
    settings.TWO_FACTOR_REQUIRED = True


def sign_in(page, live_server, username, password=PASSWORD):
    page.goto(f"{live_server.url}/admin/login/?next=/admin/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")


# How many lines each shown recovery code takes up on the page.
LINES_PER_CODE = """() => [...document.querySelectorAll('#recovery-codes li')].map(li => {
    const range = document.createRange();
    range.selectNodeContents(li);
    return range.getClientRects().length;
})"""


def code_for(device):
    return f"{totp(device.bin_key):06d}"


def test_a_superuser_sets_up_two_factor_and_is_shown_the_recovery_codes_once(
    live_server, browser_page, screenshot, two_factor_on
):
    root = make_user(username="root", password=PASSWORD, is_superuser=True)
    page = browser_page

    sign_in(page, live_server, "root")

    page.wait_for_url(re.compile(r"/admin/two-factor/setup/"))
    assert page.locator("#setup-qr svg").is_visible()
    assert "must use two-factor sign-in" in page.locator("#setup-required").inner_text()
    secret = page.locator("#setup-secret").inner_text()
    device = AuthenticatorDevice.objects.get(user=root, confirmed=False)
    assert secret.replace(" ", "") in device.config_url
    screenshot("two-factor-setup")

    page.fill("#id_code", code_for(device))
    page.click("#setup-form input[type=submit]")

    store = page.locator("#store-now")
    assert "Store these codes now" in store.inner_text()
    shown = page.locator("#recovery-codes li").all_inner_texts()
    assert len(shown) == 10
    stored = set(RecoveryCode.objects.values_list("digest", flat=True))
    assert {recovery_code_digest(code) for code in shown} == stored
    assert page.evaluate(LINES_PER_CODE) == [1] * 10  # no code broken across lines
    screenshot("two-factor-recovery-codes")

    page.click("#codes-stored")
    page.wait_for_url(f"{live_server.url}/admin/")
    assert page.locator("#two-factor-link").is_visible()
    assert AccessAuditEntry.objects.filter(
        kind="two_factor_enrolled", username="root"
    ).exists()


def test_an_enrolled_person_signs_in_with_a_code_from_the_app(
    live_server, browser_page, screenshot, two_factor_on
):
    meg = make_user(username="meg", password=PASSWORD, is_superuser=True)
    device = AuthenticatorDevice.objects.create(user=meg, name="app", confirmed=True)
    page = browser_page

    sign_in(page, live_server, "meg")
    page.wait_for_url(re.compile(r"/admin/two-factor/verify/"))
    page.fill("#id_code", "000000")
    page.click("#verify-form input[type=submit]")
    assert "That code is not right" in page.locator("#code-error").inner_text()

    blocked = page.goto(f"{live_server.url}/admin/integrations/reviewitem/")
    assert blocked is not None
    page.wait_for_url(re.compile(r"/admin/two-factor/verify/\?next="))
    screenshot("two-factor-sign-in")

    page.wait_for_timeout(1100)  # the one-second pause after a wrong code
    page.fill("#id_code", code_for(device))
    page.click("#verify-form input[type=submit]")

    page.wait_for_url(f"{live_server.url}/admin/integrations/reviewitem/")
    assert page.locator("#content h1").inner_text()


def test_five_wrong_passwords_show_the_lockout_page(
    live_server, browser_page, screenshot, settings
):
    settings.AXES_ENABLED = True
    make_user(username="ada", password=PASSWORD)
    page = browser_page

    for _ in range(5):
        sign_in(page, live_server, "ada", "not-the-password")

    assert page.locator("h1").last.inner_text() == "Sign-in locked"
    assert "15 minutes" in page.locator("#locked-out-when").inner_text()
    assert "ada" not in page.locator("#content-main").inner_text()
    screenshot("sign-in-locked-out")

    sign_in(page, live_server, "ada")
    assert page.locator("#locked-out").is_visible()
