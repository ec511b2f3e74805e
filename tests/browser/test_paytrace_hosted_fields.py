"""The PayTrace sandbox's hosted-fields stand-in in a real browser, under a strict
Content-Security-Policy: the card is typed into the iframe, bad input is answered with
PayTrace's codes, a good card gives the page a token and the sandbox keeps only its last
four digits."""

import pytest
from playwright.sync_api import expect

from integrations.sandbox.paytrace.models import HostedFieldsToken

pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True),
]


def test_hosted_fields_tokenize_in_a_browser_without_csp_violations(
    live_server, browser_page
):
    page = browser_page
    messages: list[str] = []
    page.on("console", lambda m: messages.append(m.text))
    page.goto(f"{live_server.url}/sandbox/paytrace/protect/try")
    page.wait_for_selector("#try_submit:not([disabled])")
    frame = page.frame_locator("#pt_hpf_frame")
    frame.locator("#pt_cc_number").fill("4111 1111 1111 1112")
    frame.locator("#pt_cc_exp_month").fill("12")
    frame.locator("#pt_cc_exp_year").fill("2030")
    frame.locator("#pt_cc_csc").fill("12")
    page.click("#try_submit")
    expect(page.locator("#try_result")).to_contain_text("35:")
    text = page.locator("#try_result").text_content() or ""
    assert "35:" in text and "148:" in text, text
    frame.locator("#pt_cc_number").fill("4111111111111111")
    frame.locator("#pt_cc_csc").fill("123")
    page.click("#try_submit")
    expect(page.locator("#try_result")).to_contain_text("hpf_token")
    text = page.locator("#try_result").text_content() or ""
    assert "4111111111111111" not in text
    assert not [m for m in messages if "Content Security Policy" in m], messages
    assert HostedFieldsToken.objects.get().card_last4 == "1111"
