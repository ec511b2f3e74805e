"""The demo's side of getting paid (issue 15): its API token and its cards on file."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection
from django.test import override_settings

from integrations import demo
from integrations.models.autopay import AutopaySettings, RecurringSchedule
from integrations.models.cards import CardOnFile
from mappings.models import PayerLink
from portal.models import ApiToken
from tests.support.pansweep import sweep_database

pytestmark = pytest.mark.django_db

KEY = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(autouse=True)
def key_file(tmp_path, monkeypatch):
    """The random key's file, in the test's own folder (not the clone's var/)."""
    path = tmp_path / "demo-api-token"
    monkeypatch.setattr(demo, "API_TOKEN_FILE", path)
    return path


def seed_demo(port=8000):
    out = StringIO()
    call_command("seed_demo", port=port, stdout=out)
    return out.getvalue()


def charge_headers(key, idempotency_key="demo-test-1"):
    return {"Authorization": f"Token {key}", "Idempotency-Key": idempotency_key}


# The API token ----------------------------------------------------------------------


@override_settings(DEMO_MODE=True, DEMO_API_TOKEN=KEY)
def test_the_token_from_the_environment_opens_the_api_for_the_admin(client, key_file):
    out = seed_demo()

    assert "API token for admin: created (key from DEMO_API_TOKEN)" in out
    token = ApiToken.objects.get()
    assert token.user.username == "admin" and token.user.has_perm(
        "integrations.add_charge"
    )
    assert KEY not in token.digest  # only the digest is kept
    assert not key_file.exists()  # the setting's key is never written down
    answer = client.get("/api/transactions/", headers={"Authorization": f"Token {KEY}"})
    assert answer.status_code == 200
    wrong = client.get(
        "/api/transactions/", headers={"Authorization": f"Token {'f' * 40}"}
    )
    assert wrong.status_code == 401
    # The charge API knows the token's user: not refused as unauthenticated.
    charge = client.post(
        "/api/payments/charge",
        data={},
        content_type="application/json",
        headers=charge_headers(KEY),
    )
    assert charge.status_code not in (401, 403)


@pytest.mark.parametrize(
    "bad",
    [
        "0123456789ABCDEF0123456789ABCDEF01234567",  # upper case
        "0123456789abcdef",  # too short
        "0123456789abcdef0123456789abcdef01234567ff",  # too long
        "zz23456789abcdef0123456789abcdef01234567",  # not hex
        "4111111111111111",  # someone's idea of a secret
    ],
)
def test_a_bad_token_setting_stops_the_seed_naming_the_variable_and_format(bad):
    with (
        override_settings(DEMO_MODE=True, DEMO_API_TOKEN=bad),
        pytest.raises(CommandError) as refused,
    ):
        seed_demo()

    message = str(refused.value)
    assert "DEMO_API_TOKEN" in message and "40 lowercase hexadecimal" in message
    assert bad not in message  # a secret is not echoed
    assert not ApiToken.objects.exists()


@override_settings(DEMO_MODE=True, DEMO_API_TOKEN="")
def test_without_the_setting_a_random_key_is_made_once_and_kept(client, key_file):
    seed_demo()
    key = key_file.read_text().strip()
    assert len(key) == 40 and int(key, 16) >= 0
    assert key_file.stat().st_mode & 0o077 == 0  # readable by its owner only

    out = seed_demo()

    assert "API token for admin: unchanged" in out
    assert key_file.read_text().strip() == key
    assert ApiToken.objects.count() == 1
    answer = client.get("/api/transactions/", headers={"Authorization": f"Token {key}"})
    assert answer.status_code == 200
    banner = "\n".join(demo.api_banner(8000))
    assert key in banner
    assert "curl -i -X POST http://127.0.0.1:8000/api/payments/charge" in banner
    assert "KEY=demo-$(date +%s)" in banner and "Idempotency-Key: $KEY" in banner


@override_settings(DEMO_MODE=True, DEMO_API_TOKEN=KEY)
def test_a_changed_token_setting_replaces_the_old_key(client):
    seed_demo()
    other = "f" * 40

    with override_settings(DEMO_API_TOKEN=other):
        out = seed_demo()

    assert "1 earlier demo token(s) deleted" in out
    assert ApiToken.objects.count() == 1
    old = client.get("/api/transactions/", headers={"Authorization": f"Token {KEY}"})
    assert old.status_code == 401
    new = client.get("/api/transactions/", headers={"Authorization": f"Token {other}"})
    assert new.status_code == 200


# Cards on file ----------------------------------------------------------------------


@pytest.fixture
def demo_world(paytrace_conn, sagepro_conn, sage, http, settings):
    """The demo's rows over the test's sandbox connections (reached through `http`)."""
    settings.DEMO_MODE = True
    settings.DEMO_API_TOKEN = KEY
    seed_demo()
    # seed_demo points the connections at 127.0.0.1:<port>; the tests reach the
    # sandboxes in-process instead.
    paytrace_conn.refresh_from_db()
    paytrace_conn.base_url = "http://testserver/sandbox/paytrace"
    paytrace_conn.save()
    sagepro_conn.refresh_from_db()
    sagepro_conn.base_url = "http://testserver/sandbox/sagepro/api/v1"
    sagepro_conn.save()
    return paytrace_conn, sagepro_conn


def vault_state():
    return {
        "cards": sorted(
            CardOnFile.objects.values_list(
                "custno", "vault_customer_id", "last4", "autopay", "updated_at"
            )
        ),
        "links": PayerLink.objects.count(),
        "schedules": RecurringSchedule.objects.count(),
        "autopay": list(AutopaySettings.objects.values_list("pk", "updated_at")),
    }


def test_seeding_puts_the_demo_cards_on_file_keeping_only_what_may_be_kept(
    demo_world,
):
    paytrace, sagepro = demo_world

    report = demo.seed_vault_customers()

    cards = {c.custno: c for c in CardOnFile.objects.all()}
    assert set(cards) == {custno for custno, *_ in demo.DEMO_VAULT_CARDS}
    for custno, number, autopay, _ in demo.DEMO_VAULT_CARDS:
        card = cards[custno]
        assert card.paytrace == paytrace and card.sagepro == sagepro
        assert card.last4 == number[-4:]
        assert (card.exp_month, card.exp_year) == demo.DEMO_CARD_EXPIRY
        assert card.vault_customer_id.startswith(f"{custno}-")
        assert card.brand
        assert card.autopay is autopay
    config = AutopaySettings.objects.get(sagepro=sagepro)
    assert config.enabled and config.finance_emails == demo.DEMO_FINANCE_EMAIL
    # The vault ids lead the customers' payments (recurring ones) to them.
    for card in cards.values():
        assert PayerLink.objects.filter(custno=card.custno).exists()
    assert any("put on file" in line for line in report)
    # One monthly schedule, made in PayTrace, on BLUEOX's card.
    schedule = RecurringSchedule.objects.get()
    assert schedule.card == cards["BLUEOX"]
    assert schedule.amount == Decimal("49.00") and schedule.frequency == "monthly"
    assert schedule.state == RecurringSchedule.State.ACTIVE and schedule.recurrence_id
    # No card number anywhere in the database: only the last four.
    numbers = [number for _, number, _, _ in demo.DEMO_VAULT_CARDS]
    findings = sweep_database(numbers)
    assert not findings, [f.describe() for f in findings]
    # The banner's curl names a real card and one of its customer's open invoices.
    example = demo.charge_example()
    if example is not None:
        assert example[0] in {c.vault_customer_id for c in cards.values()}


def test_seeding_the_cards_twice_adds_nothing(demo_world):
    demo.seed_vault_customers()
    before = vault_state()

    report = demo.seed_vault_customers()

    assert vault_state() == before
    assert all("already" in line for line in report), report


def test_the_banner_curl_charges_a_demo_card_once(demo_world, client):
    """The banner's curl, as the test client: 201, then 200 for the same key."""
    from integrations import mirror
    from integrations.models.charges import Charge

    demo.seed_vault_customers()
    mirror.sync(demo_world[1])
    example = demo.charge_example()
    assert example is not None
    customer_id, invno = example
    banner = "\n".join(demo.api_banner(8000))
    assert customer_id in banner and invno in banner and KEY in banner
    body = {"customer_id": customer_id, "invno": invno, "amount": "1.00"}

    answers = [
        client.post(
            "/api/payments/charge",
            data=body,
            content_type="application/json",
            headers=charge_headers(KEY, "demo-curl-1"),
        )
        for _ in range(2)
    ]

    assert [a.status_code for a in answers] == [201, 200], answers[0].content
    charge = Charge.objects.get()
    assert charge.requested_by.username == "admin"
    assert charge.invno == invno and charge.amount == Decimal("1.00")


def test_the_demo_token_is_stored_as_a_digest_only():
    with override_settings(DEMO_MODE=True, DEMO_API_TOKEN=KEY):
        seed_demo()
    with connection.cursor() as cursor:
        cursor.execute("SELECT prefix, digest, name FROM portal_apitoken")
        rows = cursor.fetchall()
    assert rows and all(KEY not in "".join(row) for row in rows)
