"""A card number planted in any door into the portal never reaches a table, log or task.

Issue 15 item 7. `test_card_sweep.py` plants every disguise in signed webhooks and
silent posts; this module plants one fresh Luhn-valid number per path and field in
every other way data comes in: the PayTrace webhook's headers and query string, the
legacy silent post's form fields, storefront order webhooks, the dispute-report CSV
import, the admin's forms (a preview's confirmation followed, so the values are really
stored), the charge API's body, headers and query strings, the read and mappings APIs,
the enrolment pages (staff and customer link), and the PayTrace sandbox's hosted-fields
tokenize endpoint (a real enrolment: the sandbox keeps the last four only, the portal
only the vault id, brand, last four and expiry).

Everything is committed (`transaction=True`), the queue is drained like a worker, and
every table, the SQLite file and its WAL, every log record and every queued task is
searched. A failure lists each place and the plant (path and field) that put it there.
Every request must be answered below 500.
"""

import base64
import json
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from urllib.parse import quote, urlencode

import pytest
from django.test import Client
from django.urls import NoReverseMatch, Resolver404, resolve
from django.utils import timezone

from integrations.models import Connection
from integrations.models.storefront import StorefrontSettings
from tests.factories import make_review_item, make_transaction
from tests.integrations.test_storefront import order_body, signed
from tests.support.attack import Attack, disguise, render, sign_bytes
from tests.support.campaign import Campaign
from tests.support.inbound_paths import (
    MAIN_DISGUISES,
    InboundSweep,
    places,
    redirected,
)
from tests.webhooks import paytrace_record

pytestmark = [pytest.mark.fuzz]

SLUG = "paytrace-sandbox"
SHOP_SLUG = "storefront-sweep"
SHOP_SECRET = "shpss_sweep_storefront_secret"
# Kinds of failure this test answers for (the others are reported, not asserted:
# the webhook fuzzers own worker crashes and delivery bookkeeping).
ASSERTED = ("card_number", "server_error")


def exists(path: str) -> bool:
    try:
        resolve(path.split("?", 1)[0])
    except (Resolver404, NoReverseMatch):
        return False
    return True


# --- the PayTrace webhook and the silent post -----------------------------------------


def _event(record: dict, extra: dict | None = None) -> dict:
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    return {"type": "transaction.approved", "occurred_at": now, "data": record} | (
        extra or {}
    )


def _signed(
    sweep: InboundSweep,
    label: str,
    body: dict,
    secret: str,
    pans: list[str],
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
) -> Attack:
    data = render(body).encode()
    signed = sign_bytes(data, secret, f"msg_{uuid.uuid4().hex}", datetime.now(UTC))
    for pan in pans:  # the campaign registers them again with the real attack
        sweep.campaign.planted.pop(pan, None)
    return Attack(
        label,
        "POST",
        f"/webhooks/paytrace/{SLUG}/{query}",
        data,
        "application/json",
        {**signed, **(headers or {})},
        pans,
        [label],
    )


def plant_paytrace_webhooks(sweep: InboundSweep, secret: str) -> None:
    campaign = sweep.campaign
    fields = ("description", "customer_reference_id", "invoice_id", "billing.name")
    for n, form in enumerate(MAIN_DISGUISES):
        name = fields[n % len(fields)]
        label = f"webhook body {name} ({form})"
        pan, value = sweep.plant(label, form)
        record = paytrace_record()
        if name == "billing.name":
            record["billing_address"]["name"] = value
        else:
            record[name] = value
        campaign.send(_signed(sweep, label, _event(record), secret, [pan]))
    for label, extra in (
        ("webhook body unknown top-level field", "note"),
        ("webhook body unknown nested field", "nested"),
    ):
        pan, value = sweep.plant(label)
        body = (
            _event(paytrace_record(), {"note": value})
            if extra == "note"
            else _event(paytrace_record(payment_details={"credit_card_number": value}))
        )
        campaign.send(_signed(sweep, label, body, secret, [pan]))
    label = "webhook header value"
    pan, value = sweep.plant(label, "spaces")
    campaign.send(
        _signed(
            sweep,
            label,
            _event(paytrace_record()),
            secret,
            [pan],
            headers={"X-Card-Note": value},
        )
    )
    label = "webhook header name"
    pan, _ = sweep.plant(label)
    campaign.send(
        _signed(
            sweep,
            label,
            _event(paytrace_record()),
            secret,
            [pan],
            headers={f"X-Card-{pan}": "1"},
        )
    )
    label = "webhook query string"
    pan, _ = sweep.plant(label)
    other, spaced = sweep.plant("webhook query string (spaces)", "spaces")
    query = "?" + urlencode({"card": pan, "note": spaced})
    campaign.send(
        _signed(
            sweep, label, _event(paytrace_record()), secret, [pan, other], query=query
        )
    )
    # A wrongly signed delivery is stored as refused: its headers must be masked too.
    label = "webhook refused (bad signature) header and body"
    pan, _ = sweep.plant(label)
    attack = _signed(
        sweep,
        label,
        _event(paytrace_record(description=pan)),
        "whsec_" + base64.b64encode(b"not-the-secret-at-all-000000").decode(),
        [pan],
        headers={"X-Forwarded-For": pan},
    )
    campaign.send(attack)


def plant_silent_posts(sweep: InboundSweep) -> None:
    path = f"/webhooks/paytrace/{SLUG}/silent-post/"
    for label, build in (
        ("silent post parmList CARDNUMBER", lambda p: {"parmList": f"TRANSACTIONID~{new_tid()}|CARDNUMBER~{p}|APPMSG~ok|"}),
        ("silent post parmList TRANSACTIONID", lambda p: {"parmList": f"TRANSACTIONID~{p}|APPMSG~ok|"}),
        ("silent post extra form field", lambda p: {"parmList": f"TRANSACTIONID~{new_tid()}|", "CCNUMBER": p}),
    ):  # fmt: skip
        pan, _ = sweep.plant(label)
        sweep.campaign.planted.pop(pan)
        sweep.campaign.send(
            Attack(
                label,
                "POST",
                path,
                urlencode(build(pan)).encode(),
                "application/x-www-form-urlencoded",
                {},
                [pan],
                [label],
            )
        )
    label = "silent post query string"
    pan, _ = sweep.plant(label)
    sweep.campaign.planted.pop(pan)
    sweep.campaign.send(
        Attack(
            label,
            "POST",
            f"{path}?card={pan}",
            urlencode({"parmList": f"TRANSACTIONID~{new_tid()}|"}).encode(),
            "application/x-www-form-urlencoded",
            {},
            [pan],
            [label],
        )
    )


_tid = [880000000]


def new_tid() -> int:
    _tid[0] += 1
    return _tid[0]


# --- storefront orders ------------------------------------------------------------------


def make_shop(paytrace: Connection, sagepro: Connection) -> Connection:
    shop = Connection.objects.create(
        kind=Connection.Kind.STOREFRONT,
        name="Storefront (sweep)",
        slug=SHOP_SLUG,
        base_url="https://shop.example",
    )
    shop.webhook_secrets.create(label="current", secret=SHOP_SECRET)
    StorefrontSettings.objects.create(
        connection=shop,
        paytrace=paytrace,
        sagepro=sagepro,
        reference_prefix="SHOP",
        default_location="MAIN",
        wait_minutes=30,
    )
    return shop


def plant_storefront_orders(sweep: InboundSweep, client: Client) -> None:
    def in_title(body: dict, v: object) -> None:
        body["line_items"][0]["title"] = v

    def in_note(body: dict, v: object) -> None:
        body["note"] = v

    def in_customer_name(body: dict, v: object) -> None:
        body["customer"]["first_name"] = v

    def in_address(body: dict, v: object) -> None:
        body["billing_address"]["address1"] = v
        body["shipping_address"]["name"] = v

    def in_payment_details(body: dict, v: object) -> None:
        body["payment_details"] = {
            "credit_card_number": v,
            "credit_card_company": "Visa",
        }

    def in_note_attributes(body: dict, v: object) -> None:
        body["note_attributes"] = [{"name": "card", "value": v}]

    plants = (
        ("line item title", in_title, "plain"),
        ("order note", in_note, "in_sentence"),
        ("customer name", in_customer_name, "spaces"),
        ("addresses", in_address, "dashes"),
        ("payment_details.credit_card_number", in_payment_details, "plain"),
        ("note_attributes", in_note_attributes, "fullwidth"),
    )
    for number, (where, put, form) in enumerate(plants, start=5001):
        label = f"storefront order {where} ({form})"
        _, value = sweep.plant(label, form)
        body = order_body(number)
        put(body, value)
        raw = render(body).encode()
        sweep.send(
            label,
            client,
            "POST",
            f"/webhooks/storefront/{SHOP_SLUG}/",
            body=raw,
            headers={
                "X-Shopify-Topic": "orders/create",
                "X-Shopify-Webhook-Id": str(uuid.uuid4()),
                "X-Shopify-Hmac-Sha256": signed(raw, SHOP_SECRET),
            },
        )
    label = "storefront webhook id and topic headers"
    pan, _ = sweep.plant(label)
    raw = render(order_body(5100)).encode()
    sweep.send(
        label,
        client,
        "POST",
        f"/webhooks/storefront/{SHOP_SLUG}/?card={pan}",
        body=raw,
        headers={
            "X-Shopify-Topic": f"orders/{pan}",
            "X-Shopify-Webhook-Id": pan,
            "X-Shopify-Hmac-Sha256": signed(raw, SHOP_SECRET),
        },
    )


# --- the dispute report ------------------------------------------------------------------


def plant_dispute_csv(sweep: InboundSweep, admin: Client, paytrace: Connection) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    from integrations.models.chargebacks import DisputeImport

    make_transaction(paytrace, transaction_id="7700001", amount=Decimal("100.00"))
    header = (
        "Case ID,Transaction ID,Dispute Amount,Status,Received Date,Reply By,"
        "Resolved Date,Reason Code,Reason,Fee"
    )
    cell = {
        column: sweep.plant(f"dispute CSV cell {column}", "spaces")[1]
        for column in ("Case ID", "Transaction ID", "Dispute Amount", "Reason", "Fee")
    }
    rows = [
        f"{cell['Case ID']},7700001,40.00,Open,11/02/2026,11/20/2026,,10.4,Fraud,",
        f'CB-S2,"{cell["Transaction ID"]}",40.00,Open,11/02/2026,,,10.4,x,',
        f'CB-S3,7700001,"{cell["Dispute Amount"]}",Open,11/02/2026,,,10.4,x,',
        f'CB-S4,7700001,10.00,Open,11/02/2026,,,10.4,"{cell["Reason"]}",',
        f'CB-S5,7700001,10.00,Open,11/02/2026,,,10.4,x,"{cell["Fee"]}"',
    ]
    pan, value = sweep.plant("dispute CSV file name")
    content = "\n".join([header, *rows]).encode()
    upload = SimpleUploadedFile(f"disputes-{pan}.csv", content, "text/csv")
    label = "dispute CSV upload"
    response = sweep.note(
        label,
        admin.post(
            "/admin/integrations/disputeimport/upload/",
            {"connection": paytrace.pk, "report": upload, "save_mapping": "on"},
        ),
    )
    record = DisputeImport.objects.order_by("-pk").first()
    if response.status_code == 302 and record is not None:
        confirm = f"/admin/integrations/disputeimport/{record.pk}/confirm/"
        sweep.note(f"{label} (confirmed)", admin.post(confirm, {"skip_bad": "1"}))


# --- admin forms ---------------------------------------------------------------------------


def plant_review_decisions(
    sweep: InboundSweep, admin: Client, paytrace: Connection
) -> None:
    for decision, name in (
        ("dismiss", "reason"),
        ("duplicate", "note"),
        ("note", "note"),
    ):
        item = make_review_item(make_transaction(paytrace))
        label = f"review decision {decision}: {name}"
        _, value = sweep.plant(label, "in_sentence")
        sweep.post_form(
            label,
            admin,
            f"/admin/integrations/reviewitem/{item.pk}/decide/{decision}/",
            {name: value},
        )


def plant_config_forms(
    sweep: InboundSweep, admin: Client, paytrace: Connection, shop: Connection
) -> None:
    sweep.plant_form(
        "PayerLink add form",
        admin,
        "/admin/mappings/payerlink/add/",
        fields=["key", "custno", "evidence"],
        base=lambda n: {
            "connection": paytrace.pk,
            "kind": "customer_id",
            "key": f"SWEEP-PAYER-{n}",
            "custno": "ACME",
            "evidence": "Told by phone",
            "is_active": "on",
        },
    )
    # The storefront connection: its URL is one Django's URL field accepts (the test
    # sandboxes' `http://testserver` is not).
    sweep.plant_form(
        "connection change form",
        admin,
        f"/admin/integrations/connection/{shop.pk}/change/",
        fields=["name"],
    )
    new_chargeback = {
        "connection": paytrace.pk,
        "transaction_id": "7700001",
        "case_number": "SWEEP-1",
        "amount": "30.00",
        "fee": "",
        "reason_code": "10.4",
        "reason_text": "Fraud",
        "opened_on": "2026-11-20",
        "due_on": "2026-12-01",
    }
    chargeback = "/admin/integrations/chargeback/new/"
    label = "chargeback form: control (nothing planted)"
    answer = sweep.post_form(label, admin, chargeback, new_chargeback)
    sweep.expect(label, redirected(answer), answer)
    for n, name in enumerate(
        ("case_number", "reason_text", "reason_code", "transaction_id")
    ):
        label = f"chargeback form: {name}"
        _, value = sweep.plant(label, "plain" if n % 2 else "spaces")
        sweep.post_form(
            label,
            admin,
            chargeback,
            {**new_chargeback, "case_number": f"SWEEP-{n + 2}", name: value},
        )


def registered(model: str) -> bool:
    from django.apps import apps
    from django.contrib import admin

    try:
        return admin.site.is_registered(apps.get_model(model))
    except LookupError:
        return False


def plant_autopay_and_recurring_forms(
    sweep: InboundSweep, admin: Client, sagepro: Connection, card: object | None
) -> list[str]:
    missing = []
    if registered("integrations.AutopaySettings"):
        from integrations.models.autopay import AutopaySettings

        valid = {
            "sagepro": sagepro.pk,
            "enabled": "on",
            "days_from_due": "0",
            "catch_up_days": "7",
            "default_net_days": "30",
            "max_amount": "5000.00",
            "retry_days": "1, 3, 7",
            "finance_emails": "finance@example.com",
        }
        label = "autopay settings add form: finance_emails"
        pan, _ = sweep.plant(label)
        sweep.post_form(
            label,
            admin,
            "/admin/integrations/autopaysettings/add/",
            {**valid, "finance_emails": f"finance@example.com\n{pan}@example.com"},
        )
        config, _ = AutopaySettings.objects.get_or_create(sagepro=sagepro)
        sweep.plant_form(
            "autopay settings change form",
            admin,
            f"/admin/integrations/autopaysettings/{config.pk}/change/",
            fields=["finance_emails", "retry_days"],
            email_fields=["finance_emails"],
            base=valid,
            form="dashes",
        )
    else:
        missing.append("autopay settings admin")
    if registered("integrations.RecurringSchedule") and card is not None:
        start = (timezone.localdate() + timedelta(days=1)).isoformat()
        sweep.plant_form(
            "recurring schedule add form",
            admin,
            "/admin/integrations/recurringschedule/add/",
            fields=["description", "invoice_reference"],
            base=lambda n: {
                "card": card.pk,  # type: ignore[attr-defined]
                "amount": "25.00",
                "frequency": "monthly",
                "start_date": start,
                "total_count": "0",
                "description": "Support plan",
                "invoice_reference": "",
            },
            control=None,
        )
    else:
        missing.append("recurring schedule admin")
    return missing


# --- APIs ---------------------------------------------------------------------------------


def plant_read_and_mapping_apis(sweep: InboundSweep, admin: Client) -> None:
    for path, param in (
        ("/api/transactions/", "transaction_id"),
        ("/api/transactions/", "invoice"),
        ("/api/transactions/", "search"),
        ("/api/review-items/", "transaction_id"),
        ("/api/review-items/", "ordering"),
    ):
        label = f"read API query {path}?{param}="
        _, value = sweep.plant(label, "spaces" if param == "invoice" else "plain")
        sweep.get(label, admin, f"{path}?{urlencode({param: value})}")
    label = "read API path /api/transactions/<id>/"
    pan, _ = sweep.plant(label)
    sweep.get(label, admin, f"/api/transactions/{pan}/")
    label = "mappings API feedback source_path"
    _, value = sweep.plant(label)
    sweep.send_json(
        label,
        admin,
        "/api/mappings/feedback",
        {
            "target": "cash_receipt",
            "target_field": "invno",
            "source_path": f"data.{value}.invoice",
            "accepted": True,
        },
    )
    label = "mappings API suggest sample"
    _, value = sweep.plant(label, "dashes")
    sweep.send_json(
        label,
        admin,
        "/api/mappings/suggest",
        {"target": "cash_receipt", "sample": {"invoice_id": "1001", "note": value}},
    )
    label = "mappings API query string"
    pan, _ = sweep.plant(label)
    sweep.send_json(label, admin, f"/api/mappings/suggest?card={pan}", {"target": pan})


def plant_charge_api(
    sweep: InboundSweep, card: object | None, invno: str, api_key: str
) -> None:
    client = Client(raise_request_exception=False)
    vault_id = getattr(card, "vault_customer_id", "NO-CARD")
    good = {"customer_id": vault_id, "invno": invno, "amount": "1.00"}

    def post(
        label: str, body: dict, key: str, path: str = "/api/payments/charge"
    ) -> None:
        sweep.send_json(
            label,
            client,
            path,
            body,
            headers={"Authorization": f"Token {api_key}", "Idempotency-Key": key},
        )

    for name, form in (
        ("customer_id", "plain"),
        ("invno", "spaces"),
        ("amount", "plain"),
    ):
        label = f"charge API body {name} ({form})"
        _, value = sweep.plant(label, form)
        post(label, {**good, name: value}, f"sweep-{uuid.uuid4().hex}")
    label = "charge API body extra field"
    _, value = sweep.plant(label, "dashes")
    post(
        label,
        {**good, "card_number": value, "note": value},
        f"sweep-{uuid.uuid4().hex}",
    )
    label = "charge API body amount as a JSON number"
    pan, _ = sweep.plant(label)
    post(label, {**good, "amount": int(pan)}, f"sweep-{uuid.uuid4().hex}")
    for form in ("plain", "dashes"):
        label = f"charge API Idempotency-Key header ({form})"
        _, value = sweep.plant(label, form)
        post(label, good, value)
    label = "charge API query string"
    pan, _ = sweep.plant(label)
    post(label, good, f"sweep-{uuid.uuid4().hex}", f"/api/payments/charge?card={pan}")
    label = "charge API other header"
    pan, _ = sweep.plant(label)
    sweep.send_json(
        label,
        client,
        "/api/payments/charge",
        good,
        headers={
            "Authorization": f"Token {api_key}",
            "Idempotency-Key": f"sweep-{uuid.uuid4().hex}",
            "X-Request-Note": pan,
        },
    )
    label = "charge API Authorization header"
    pan, _ = sweep.plant(label)
    sweep.send_json(
        label,
        client,
        "/api/payments/charge",
        good,
        headers={"Authorization": f"Token {pan}", "Idempotency-Key": "sweep-auth"},
    )
    if exists("/api/payments/charges/x"):
        label = "charge API read path"
        pan, _ = sweep.plant(label)
        sweep.get(
            label, client, f"/api/payments/charges/{pan}",
            Authorization=f"Token {api_key}",
        )  # fmt: skip


# --- enrolment pages and the hosted fields ------------------------------------------------


def enrol_real_card(
    sweep: InboundSweep, client: Client, paytrace: Connection, sagepro: Connection
) -> object:
    """A real enrolment through the sandbox's hosted fields with a planted number: the
    sandbox keeps its last four; the portal keeps vault id, brand, last four, expiry."""
    from integrations import cards
    from tests.support.protect import hosted_fields_token

    pan, _ = sweep.plant("sandbox tokenize endpoint (real enrolment)")
    hpf_token, enc_key = hosted_fields_token(paytrace, client, number=pan)
    card = cards.enrol_card(
        paytrace=paytrace,
        sagepro=sagepro,
        custno="ACME",
        hpf_token=hpf_token,
        enc_key=enc_key,
        billing_name="Ada Buyer",
        email="ap@acme.example.com",
        billing_zip="99201",
    )
    assert card.last4 == pan[-4:]
    # The tokenize endpoint refusing a card must not keep it either.
    label = "sandbox tokenize endpoint (refused: bad key, past expiry)"
    pan, _ = sweep.plant(label)
    sweep.send_json(
        label,
        client,
        "/sandbox/paytrace/protect/tokenize",
        {"clientKey": "nope", "number": pan, "expiration_month": "1",
         "expiration_year": "2001", "csc": "123"},
    )  # fmt: skip
    return card


ENROL_PLANTS = {
    "billing_name": "in_sentence",
    "email": "plain",
    "billing_zip": "plain",
    "custno": "plain",
    "hpf_token": "plain",
    "enc_key": "spaces",
}


def plant_enrolment_pages(
    sweep: InboundSweep,
    admin: Client,
    public: Client,
    paytrace: Connection,
    sagepro: Connection,
) -> list[str]:
    """The finance user's page, the replace and send-link pages, and the customer's
    link: a card number typed into a portal input instead of the hosted fields (each
    post otherwise valid, with a fresh hosted-fields token), and in the link itself."""
    from integrations import cards
    from integrations.models.cards import CardOnFile
    from tests.support.protect import hosted_fields_token

    def valid() -> dict[str, object]:
        hpf_token, enc_key = hosted_fields_token(paytrace, public)
        return {
            "paytrace": paytrace.pk,
            "custno": "BLUEOX",
            "billing_name": "Ada Buyer",
            "email": "ap@blueox.example.com",
            "billing_zip": "99201",
            "hpf_token": hpf_token,
            "enc_key": enc_key,
        }

    def planted(label: str, name: str, form: str) -> dict[str, object]:
        pan, value = sweep.plant(label, form)
        if name == "email":
            value = f"{pan}@example.com"
        return {**valid(), name: value}

    missing = []
    url = "/admin/integrations/cardonfile/enrol/"
    if not exists(url):
        return ["staff enrolment page"]
    sweep.get("staff enrolment page (form page)", admin, url)
    before = CardOnFile.objects.count()
    label = "staff enrolment page: control (nothing planted)"
    answer = sweep.post_form(label, admin, url, valid(), confirm=False)
    sweep.expect(label, CardOnFile.objects.count() == before + 1, answer)
    for name, form in ENROL_PLANTS.items():
        label = f"staff enrolment page: {name} ({form})"
        sweep.post_form(label, admin, url, planted(label, name, form), confirm=False)
    card = CardOnFile.objects.filter(custno="BLUEOX").order_by("pk").first()
    if card is not None:
        replace = f"/admin/integrations/cardonfile/{card.pk}/replace/"
        for name in ("billing_name", "email"):
            label = f"replace card page: {name}"
            sweep.post_form(
                label, admin, replace, planted(label, name, "plain"), confirm=False
            )
        send_link = f"/admin/integrations/cardonfile/{card.pk}/send-link/"
    else:
        missing.append("replace card page (no card enrolled)")
        send_link = "/admin/integrations/cardonfile/send-link/"
    for name in ("email", "custno", "hours"):
        label = f"send enrolment link page: {name}"
        pan, value = sweep.plant(label)
        values = {
            "paytrace": paytrace.pk,
            "custno": "BLUEOX",
            "email": "ap@blueox.example.com",
            "hours": "72",
            name: f"{pan}@example.com" if name == "email" else value,
        }
        sweep.post_form(label, admin, send_link, values, confirm=False)

    # The customer's link: a control, then one plant per field (a link each).
    _, path = cards.create_enrolment_link(
        paytrace=paytrace, sagepro=sagepro, custno="CASCAD", user=None
    )
    before = CardOnFile.objects.count()
    label = "customer link page: control (nothing planted)"
    answer = sweep.post_form(label, public, path, valid(), confirm=False)
    sweep.expect(label, CardOnFile.objects.count() == before + 1, answer)
    for name, form in ENROL_PLANTS.items():
        if name == "custno":
            continue  # not a field of the customer's page
        _, path = cards.create_enrolment_link(
            paytrace=paytrace, sagepro=sagepro, custno="CASCAD", user=None
        )
        label = f"customer link page: {name} ({form})"
        sweep.get(f"{label} (form page)", public, path)
        sweep.post_form(label, public, path, planted(label, name, form), confirm=False)
    label = "customer link URL"
    pan, _ = sweep.plant(label)
    sweep.get(label, public, f"/pay/cards/{pan}/")
    sweep.post_form(label, public, f"/pay/cards/{quote(pan)}/", valid(), confirm=False)
    label = "customer link URL (query string)"
    pan, _ = sweep.plant(label)
    sweep.get(label, public, f"{path}?card={pan}")
    return missing


def plant_charge_confirmation(
    sweep: InboundSweep, admin: Client, invno: str
) -> list[str]:
    """The invoice's "charge card on file" confirmation page: its fields (the amount,
    the page's idempotency key and preview fingerprint, the card, an extra field)."""
    from integrations.models import MirroredInvoice
    from integrations.models.charges import Charge
    from tests.support.inbound_paths import main_form

    invoice = MirroredInvoice.objects.filter(invno=invno, deleted=False).first()
    if invoice is None:
        return ["charge confirmation page (the invoice is not mirrored)"]
    path = f"/admin/integrations/mirroredinvoice/{invoice.pk}/charge/"
    if not exists(path):
        return ["charge confirmation page"]

    def confirmed_values(label: str) -> dict[str, object]:
        """The page's values for $1.00, previewed: what "Confirm charge" posts."""
        page = sweep.get(f"{label} (form page)", admin, path)
        form = main_form(page.content.decode(errors="replace"))
        values = form.values() if form else {}
        values.pop("csrfmiddlewaretoken", None)
        preview = sweep.note(
            f"{label} (preview)", admin.post(path, {**values, "amount": "1.00"})
        )
        form = main_form(preview.content.decode(errors="replace"))
        values = form.values() if form else {}
        values.pop("csrfmiddlewaretoken", None)
        return {**values, "confirm": "1"}

    label = "charge confirmation page: control (nothing planted)"
    before = Charge.objects.count()
    answer = sweep.post_form(label, admin, path, confirmed_values(label), confirm=False)
    sweep.expect(label, Charge.objects.count() == before + 1, answer)
    for name, form in (
        ("amount", "spaces"),
        ("key", "plain"),
        ("key", "dashes"),
        ("previewed", "plain"),
        ("card", "plain"),
        ("note", "in_sentence"),
    ):
        label = f"charge confirmation page: {name} ({form})"
        values = confirmed_values(label)
        _, value = sweep.plant(label, form)
        sweep.post_form(label, admin, path, {**values, name: value}, confirm=False)
    return []


# --- the sweep -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_card_number_planted_in_any_inbound_path_is_never_stored_logged_or_queued(
    paytrace_conn, sagepro_conn, sage, http, superuser, superuser_client, secret
):
    from integrations import mirror
    from portal.models import ApiToken

    shop = make_shop(paytrace_conn, sagepro_conn)
    invno = sage.seed_invoice("ACME", "250.00")
    mirror.sync(sagepro_conn)  # the admin's invoice pages read the mirror
    _, api_key = ApiToken.objects.create_token(superuser, name="sweep")
    public = Client(raise_request_exception=False, REMOTE_ADDR="198.51.100.7")
    missing: list[str] = []

    with Campaign(admin=superuser_client, max_failures_per_kind=500) as campaign:
        sweep = InboundSweep(campaign)
        card = None
        if exists("/sandbox/paytrace/protect/tokenize"):
            card = enrol_real_card(sweep, superuser_client, paytrace_conn, sagepro_conn)
        else:
            missing.append("sandbox tokenize endpoint")
        plant_paytrace_webhooks(sweep, secret)
        plant_silent_posts(sweep)
        plant_storefront_orders(sweep, public)
        plant_dispute_csv(sweep, superuser_client, paytrace_conn)
        plant_review_decisions(sweep, superuser_client, paytrace_conn)
        plant_config_forms(sweep, superuser_client, paytrace_conn, shop)
        missing += plant_autopay_and_recurring_forms(
            sweep, superuser_client, sagepro_conn, card
        )
        plant_read_and_mapping_apis(sweep, superuser_client)
        plant_charge_api(sweep, card, invno, api_key)
        missing += plant_enrolment_pages(
            sweep, superuser_client, public, paytrace_conn, sagepro_conn
        )
        missing += plant_charge_confirmation(sweep, superuser_client, invno)
        campaign.drain()
        campaign.check_pages()
        campaign.sweep(files=True)

    report = _report(campaign, sweep, missing)
    server_errors = [f.detail for f in campaign.failures if f.kind == "server_error"]
    assert not server_errors, "answered 5xx:\n" + "\n".join(server_errors) + report
    found = places(campaign)
    assert not found, f"card numbers found (place: plants):\n{found}{report}"
    controls = [f.detail for f in campaign.failures if f.kind == "control"]
    assert not controls, "paths that did not work:\n" + "\n".join(controls) + report
    assert not missing, f"inbound paths not there: {missing}{report}"
    assert len(campaign.planted) >= 80, f"{len(campaign.planted)} plants{report}"


def _report(campaign: Campaign, sweep: InboundSweep, missing: list[str]) -> str:
    """What a failure message adds: the answers, what else was seen, what was absent."""
    lines = ["", "", "answers:"]
    lines += [f"  {status} {label}  {gist}" for label, status, gist in sweep.answers]
    others = [f for f in campaign.failures if f.kind not in (*ASSERTED, "control")]
    if others:
        lines.append("reported, not asserted here:")
        lines += [f"  {f.kind}: {f.detail[:300]}" for f in others]
    if missing:
        lines.append(f"paths not there: {missing}")
    return "\n".join(lines)


def test_the_form_reader_reads_what_a_browser_would_submit():
    from tests.support.inbound_paths import confirm_value, main_form

    html = """
    <form method="get"><input name="q"></form>
    <form method="post" action="">
      <input type="hidden" name="csrfmiddlewaretoken" value="x">
      <input name="name" value="Ada">
      <input type="email" name="email">
      <input type="checkbox" name="on" checked><input type="checkbox" name="off">
      <textarea name="notes">
hello</textarea>
      <select name="kind"><option value="">--</option><option value="a">A</option>
        <option value="b" selected>B</option></select>
      <select name="first"><option value="">--</option><option value="z">Z</option></select>
      <input type="submit" name="go" value="Go">
    </form>
    <form method="post"><input type="hidden" name="confirm" value="abc123"></form>
    """
    form = main_form(html)

    assert form is not None
    assert form.values() == {
        "csrfmiddlewaretoken": "x",
        "name": "Ada",
        "email": "",
        "on": "on",
        "notes": "hello",
        "kind": "b",
        "first": "z",
    }
    assert form.typed == ["name", "email", "notes"]
    assert confirm_value(html) == "abc123"
    assert disguise("4111111111111111", "spaces") == "4111 1111 1111 1111"
    assert json.loads(json.dumps({"ok": True}))


@pytest.mark.parametrize(
    ("text", "holds"),
    [
        ("4111111111111111", True),
        ("card 4111 1111 1111 1111 exp 09/28", True),
        ("４１１１１１１１１１１１１１１１", True),
        ("4111111111111111@example.com", True),
        ("ap@acme.example.com", False),  # long, but no number in it
        ("Accounts payable, Acme Corporation", False),
        ("tok_0f3c9a7e5b1d4c2a8e6f0b9d7c5a3e1f", False),  # a hosted-fields token
        ("4111111111111112", False),  # not Luhn-valid
        ("Invoice 10060, PO 778812", False),
    ],
)
def test_the_edges_question_flags_card_numbers_not_any_long_text(text, holds):
    """`might_hold_card_number` is what forms ask before refusing input: it must not
    refuse every value of 13 characters or more (it once did)."""
    from integrations.cardnumbers import might_hold_card_number

    assert might_hold_card_number(text) is holds
