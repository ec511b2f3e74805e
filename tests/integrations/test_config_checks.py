"""Configuration is checked when it is saved, and shows its effect before it takes it.

Through the admin's own form posts: a field mapping, GL rule, status-map row or
connection with a mistake is refused with the field named; a valid change that would
affect recent payments shows the preview first and saves only when confirmed.
"""

from datetime import timedelta
from decimal import Decimal

import pytest
import responses
from django.conf import settings
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from integrations import config_impact
from integrations.models import Connection
from integrations.roles import INTEGRATION_ADMIN
from mappings.models import FieldMapping, GlRule, StatusMap
from tests.factories import make_connection, make_transaction, make_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin(client):
    client.force_login(make_user(group=INTEGRATION_ADMIN))
    return client


@pytest.fixture
def paytrace():
    connection = make_connection()
    for n, amount in enumerate(["12.30", "250.00", "999.99", "1500.00", "2405.51"]):
        make_transaction(
            connection,
            amount=Decimal(amount),
            customer_reference="ACME",
            invoice_reference=f"INV-{n}",
            source_record={
                "transaction_id": 500000 + n,
                "amount": amount,
                "invoice_id": f"INV-{n}",
                "billing_address": {"name": "Inland Supply Co", "zip": "99201"},
            },
        )
    return connection


def errors_of(response):
    assert response.status_code == 200, "expected the form again, with errors"
    return response.context["adminform"].form.errors


def mapping_form(connection, **fields):
    return {
        "connection": connection.pk,
        "document": "cash_receipt",
        "target_field": "method",
        "source_path": "",
        "transforms": "[]",
        "position": "0",
        "is_active": "on",
        **fields,
    }


FIELD_MAPPING_ADD = "/admin/mappings/fieldmapping/add/"
GL_RULE_ADD = "/admin/mappings/glrule/add/"
STATUS_MAP_ADD = "/admin/mappings/statusmap/add/"


# --- field mappings ---------------------------------------------------------------------


def test_a_target_field_the_document_does_not_know_is_refused(admin, paytrace):
    response = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(paytrace, target_field="nosuchfield", source_path="invoice_id"),
    )

    message = errors_of(response)["target_field"][0]
    assert "nosuchfield is not a field of the Sage Pro cash receipt" in message
    assert "custno" in message and "gl_account" in message
    assert not FieldMapping.objects.exists()


def test_a_source_path_no_recent_record_has_is_refused_with_paths_that_exist(
    admin, paytrace
):
    response = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(paytrace, target_field="invno", source_path="no.such.path"),
    )

    message = errors_of(response)["source_path"][0]
    assert "no.such.path is in none of the last 5 stored records" in message
    assert "invoice_id" in message
    assert "billing_address.name" in message
    assert not FieldMapping.objects.exists()


def test_a_constant_wider_than_the_target_field_is_refused(admin, paytrace):
    method = "CREDIT CARD PAYMENTS 01"  # the reported 22-character method, limit 10
    response = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(
            paytrace, transforms=f'[{{"op": "constant", "value": "{method[:22]}"}}]'
        ),
    )

    message = errors_of(response)["transforms"][0]
    assert "is 22 characters, Sage Pro takes at most 10" in message
    assert not FieldMapping.objects.exists()


def test_a_constant_that_is_not_an_allowed_value_is_refused(admin, paytrace):
    response = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(paytrace, transforms='[{"op": "constant", "value": "BITCOIN"}]'),
    )

    assert "must be one of CARD" in errors_of(response)["transforms"][0]


def test_a_lookup_default_is_checked_too(admin, paytrace):
    response = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(
            paytrace,
            source_path="transaction.card_brand",
            transforms='[{"op": "lookup", "table": {"VISA": "VISA"}, '
            '"default": "PAYPAL"}]',
        ),
    )

    assert "'PAYPAL', which must be one of" in errors_of(response)["transforms"][0]


def test_a_mapping_that_breaks_recent_payments_is_previewed_before_it_is_saved(
    admin, paytrace
):
    form = mapping_form(
        paytrace,
        target_field="custno",
        source_path="billing_address.name",
        transforms='[{"op": "upper"}]',
    )

    preview = admin.post(FIELD_MAPPING_ADD, form)

    assert preview.status_code == 200
    page = preview.content.decode()
    assert (
        "5</span> payments would now fail validation: custno is 16 characters, Sage Pro takes at most 6"
        in page
    )
    assert not FieldMapping.objects.exists()

    saved = admin.post(FIELD_MAPPING_ADD, {**form, "_impact_confirmed": "1"})

    assert saved.status_code == 302
    assert FieldMapping.objects.get().source_path == "billing_address.name"


def test_a_valid_mapping_with_no_effect_saves_at_once_and_says_it_was_checked(
    admin, paytrace
):
    form = mapping_form(paytrace, target_field="invno", source_path="invoice_id")

    response = admin.post(FIELD_MAPPING_ADD, form, follow=True)

    assert FieldMapping.objects.get().target_field == "invno"
    assert "Checked against the last 5 payments" in response.content.decode()


# --- GL rules ---------------------------------------------------------------------------


@responses.activate
def test_a_gl_account_in_no_sage_pro_format_is_refused_before_sage_pro_is_asked(
    admin, paytrace
):
    response = admin.post(
        GL_RULE_ADD,
        {
            "connection": paytrace.pk,
            "name": "Bad",
            "priority": "10",
            "account": "1100 00/X",
        },
    )

    assert "letters, digits and dashes" in errors_of(response)["account"][0]
    assert not GlRule.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("card_brands", "VISA,DINERS", "DINERS: not a card brand"),
        ("transaction_types", "SALE,PURCHASE", "PURCHASE: not a PayTrace transaction"),
        ("currency", "US", "not a currency code"),
        ("amount_max", "5.00", "below the smallest"),
    ],
)
def test_gl_rule_conditions_that_cannot_match_are_refused(
    admin, paytrace, field, value, message
):
    form = {
        "connection": paytrace.pk,
        "name": "Rule",
        "priority": "10",
        "account": "",
        "amount_min": "10.00",
        field: value,
    }

    response = admin.post(GL_RULE_ADD, form)

    assert message in errors_of(response)[field][0]


def test_a_gl_rule_that_leaves_payments_without_an_account_is_previewed(
    admin, paytrace
):
    """The reported case: one rule (≥ 1000) and no suspense account."""
    form = {
        "connection": paytrace.pk,
        "name": "Large payments",
        "priority": "10",
        "is_active": "on",
        "account": "",
        "amount_min": "1000.00",
    }
    form["account"] = "2100-00"  # no Sage Pro connection: the chart is not asked

    preview = admin.post(GL_RULE_ADD, form)

    page = preview.content.decode()
    assert preview.status_code == 200
    assert "3</span> payments would now fail validation" in page
    assert "no suspense account" in page
    assert (
        f"/admin/integrations/connection/{paytrace.pk}/change/#id_suspense_account"
        in page
    )
    assert (
        "2</span> payments would change GL account from Sage Pro&#x27;s default" in page
    )
    assert "Save anyway" in page
    assert not GlRule.objects.exists()

    admin.post(GL_RULE_ADD, {**form, "_impact_confirmed": "1"})

    assert GlRule.objects.get().amount_min == Decimal("1000.00")


def test_with_a_suspense_account_the_preview_says_where_the_rest_would_go(paytrace):
    paytrace.suspense_account = "9999-00"
    paytrace.save()
    samples = config_impact.recent_samples(paytrace)
    rule = GlRule(
        connection=paytrace, name="Large", amount_min=Decimal("1000"), account="2100"
    ).as_rule()

    impact = config_impact.gl_impact(samples, [], [rule], "9999-00")

    headlines = {g.headline: g.count for g in impact.groups}
    assert headlines == {
        "would change GL account from 9999-00 to 2100": 2,
    }
    assert impact.fails == 0


# --- status maps ------------------------------------------------------------------------


def test_a_status_map_row_with_an_unknown_event_is_refused(admin, paytrace):
    response = admin.post(
        STATUS_MAP_ADD,
        {
            "connection": paytrace.pk,
            "priority": "1",
            "event_type": "transaction.paid",
            "transaction_type": "SALES",
            "gateway_status": "settled",
            "payment_status": "Paid",
            "action": "post_receipt",
            "is_active": "on",
        },
    )

    errors = errors_of(response)
    assert "transaction.paid is not an event PayTrace sends" in errors["event_type"][0]
    assert "SALES is not a PayTrace transaction type" in errors["transaction_type"][0]


def test_a_status_map_row_that_sends_payments_to_review_is_previewed(admin, paytrace):
    for txn in paytrace.transactions.all():
        txn.status_code = "GB812"
        txn.save()
    form = {
        "connection": paytrace.pk,
        "priority": "1",
        "status_code_pattern": "GB*",
        "gateway_status": "settled",
        "payment_status": "Paid",
        "action": "review",
        "is_active": "on",
    }

    preview = admin.post(STATUS_MAP_ADD, form)

    page = preview.content.decode()
    assert (
        "5</span> payments would change from Paid, post a cash receipt to Paid, send to review"
        in page
    )
    assert not StatusMap.objects.filter(priority=1).exists()


# --- the connection ---------------------------------------------------------------------


def connection_form(connection, **fields):
    data = {
        "name": connection.name,
        "slug": connection.slug,
        "kind": connection.kind,
        "environment": connection.environment,
        "is_active": "on",
        "base_url": connection.base_url,
        "username": connection.username,
        "password": "",
        "integrator_id": connection.integrator_id,
        "company_id": connection.company_id,
        "transport": connection.transport,
        "agent": "",
        "sagepro": connection.sagepro_id or "",
        "payment_method": connection.payment_method,
        "suspense_account": connection.suspense_account,
        "time_zone": connection.time_zone,
        "webhook_secrets-TOTAL_FORMS": "0",
        "webhook_secrets-INITIAL_FORMS": "0",
        "webhook_secrets-MIN_NUM_FORMS": "0",
        "webhook_secrets-MAX_NUM_FORMS": "1000",
    }
    return data | fields


def change_url(connection):
    return reverse("admin:integrations_connection_change", args=[connection.pk])


def check_url(connection):
    return reverse("admin:integrations_connection_test", args=[connection.pk])


def test_a_suspense_account_is_checked_like_a_gl_account(admin):
    connection = make_connection()

    bad = admin.post(
        change_url(connection), connection_form(connection, suspense_account="9999 00!")
    )
    assert "letters, digits and dashes" in errors_of(bad)["suspense_account"][0]

    good = admin.post(
        change_url(connection), connection_form(connection, suspense_account="9999-00")
    )
    assert good.status_code == 302
    connection.refresh_from_db()
    assert connection.suspense_account == "9999-00"


def test_a_suspense_account_missing_from_the_sage_pro_chart_is_refused(
    admin, paytrace_conn, sage, http
):
    response = admin.post(
        change_url(paytrace_conn),
        connection_form(paytrace_conn, suspense_account="1050-00"),
    )

    assert "not in Sage Pro's chart" in errors_of(response)["suspense_account"][0]


def test_a_payment_method_sage_pro_would_refuse_is_refused(admin):
    connection = make_connection()

    response = admin.post(
        change_url(connection),
        connection_form(connection, payment_method="CREDITCARDS"),
    )

    assert "at most 10" in errors_of(response)["payment_method"][0]


def test_each_kind_shows_and_accepts_only_its_own_fields(admin):
    sage = make_connection(kind=Connection.Kind.SAGEPRO)
    paytrace = make_connection(sagepro=sage)

    sage_form = admin.get(change_url(sage)).context["adminform"].form
    paytrace_form = admin.get(change_url(paytrace)).context["adminform"].form

    assert "company_id" in sage_form.fields and "transport" in sage_form.fields
    for field in ("username", "integrator_id", "payment_method", "time_zone"):
        assert field not in sage_form.fields
    for field in ("company_id", "transport", "agent"):
        assert field not in paytrace_form.fields
    assert "suspense_account" in sage_form.fields
    assert "suspense_account" in paytrace_form.fields

    # A PayTrace field posted to a Sage Pro connection is ignored, not stored.
    admin.post(change_url(sage), connection_form(sage, username="someone"))
    sage.refresh_from_db()
    assert sage.username == ""


def test_a_paytrace_connection_cannot_be_given_the_agent_transport(admin):
    connection = make_connection()

    admin.post(change_url(connection), connection_form(connection, transport="agent"))

    connection.refresh_from_db()
    assert connection.transport == Connection.Transport.DIRECT
    connection.transport = Connection.Transport.AGENT
    with pytest.raises(ValidationError, match="Only a Sage Pro connection"):
        connection.full_clean()


def test_the_add_page_shows_the_fields_of_the_kind_chosen(admin):
    page = admin.get("/admin/integrations/connection/add/?kind=sagepro")

    form = page.context["adminform"].form
    assert "company_id" in form.fields
    assert "username" not in form.fields


def test_the_paytrace_page_shows_its_webhook_urls_as_absolute_urls(admin):
    connection = make_connection(slug="paytrace-prod")

    page = admin.get(change_url(connection)).content.decode()

    assert "http://testserver/webhooks/paytrace/paytrace-prod/" in page
    assert "http://testserver/webhooks/paytrace/paytrace-prod/silent-post/" in page
    assert "Test connection" in page


def test_the_storefront_page_shows_the_url_its_shop_sends_orders_to(admin):
    connection = make_connection(Connection.Kind.STOREFRONT, slug="web-shop")

    page = admin.get(change_url(connection)).content.decode()

    assert "http://testserver/webhooks/storefront/web-shop/" in page
    assert "X-Shopify-Hmac-Sha256" in page
    assert "/webhooks/paytrace/" not in page


def test_test_connection_reports_success_and_saves_nothing(
    admin, paytrace_conn, sagepro_conn, sage, http
):
    before = Connection.objects.get(pk=sagepro_conn.pk).updated_at

    response = admin.post(check_url(sagepro_conn), follow=True)

    page = response.content.decode()
    assert "Connection works." in page
    assert "Sage Pro company 01 answered" in page
    assert Connection.objects.get(pk=sagepro_conn.pk).updated_at == before

    response = admin.post(check_url(paytrace_conn), follow=True)
    assert "PayTrace signed in" in response.content.decode()


def test_test_connection_explains_a_refused_key_and_the_fix(
    admin, sagepro_conn, sage, http
):
    sagepro_conn.password = "wrong-key"
    sagepro_conn.save()

    response = admin.post(check_url(sagepro_conn), follow=True)

    page = response.content.decode()
    assert "Connection test failed." in page
    assert "refused the API key" in page
    assert "Fix: Enter the right API key" in page


def test_test_connection_explains_an_unreachable_host(admin):
    connection = make_connection(
        kind=Connection.Kind.SAGEPRO, base_url="http://unreachable.invalid/api/v1"
    )
    with responses.RequestsMock():  # any request fails to connect
        response = admin.post(check_url(connection), follow=True)

    assert "could not be reached at http://unreachable.invalid/api/v1" in (
        response.content.decode()
    )


def test_reviewers_cannot_test_a_connection(client):
    from integrations.roles import FINANCE_REVIEWER

    client.force_login(make_user(group=FINANCE_REVIEWER))
    connection = make_connection()

    response = client.post(check_url(connection))

    assert response.status_code in (302, 403)
    assert "connection_check" not in str(client.session.items())


# --- empty lists ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("/admin/mappings/glrule/", "Sage Pro books it to its default cash account"),
        ("/admin/mappings/fieldmapping/", "filled by the defaults"),
        ("/admin/mappings/statusmap/", "starts with the default map"),
    ],
)
def test_empty_lists_explain_the_defaults(admin, url, words):
    page = " ".join(admin.get(url).content.decode().split())
    assert words in page


def test_samples_are_the_newest_payments(paytrace):
    old = make_transaction(paytrace, amount=Decimal("1.00"))
    old.first_seen_at = timezone.now() - timedelta(days=400)
    old.save()

    samples = config_impact.recent_samples(paytrace, limit=5)

    assert old.transaction_id not in {s.transaction_id for s in samples}
    assert settings.BUSINESS_TIME_ZONE  # the date default is a business date
    assert all(s.defaults["date"] for s in samples)


def test_a_status_map_edited_in_the_list_is_previewed_too(admin, paytrace):
    for txn in paytrace.transactions.all():
        txn.status_code = "GB812"
        txn.save()
    rows = list(paytrace.status_maps.order_by("priority", "id"))
    data = {
        "form-TOTAL_FORMS": str(len(rows)),
        "form-INITIAL_FORMS": str(len(rows)),
        "form-MIN_NUM_FORMS": "0",
        "form-MAX_NUM_FORMS": "1000",
        "_save": "Save",
    }
    for n, row in enumerate(rows):
        data |= {
            f"form-{n}-id": str(row.pk),
            f"form-{n}-priority": str(row.priority),
            f"form-{n}-action": row.action,
        }
        if row.is_active:
            data[f"form-{n}-is_active"] = "on"
    settled = next(n for n, r in enumerate(rows) if r.status_code_pattern == "GB*")
    data[f"form-{settled}-action"] = "review"
    url = reverse("admin:mappings_statusmap_changelist")

    preview = admin.post(url, data)

    page = preview.content.decode()
    assert (
        "5</span> payments would change from Paid, post a cash receipt to Paid" in page
    )
    assert rows[settled].action == StatusMap.objects.get(pk=rows[settled].pk).action

    saved = admin.post(url, {**data, "_impact_confirmed": "1"})

    assert saved.status_code == 302
    assert StatusMap.objects.get(pk=rows[settled].pk).action == "review"


def test_the_gl_rule_list_shows_amount_conditions_as_money(admin, paytrace):
    GlRule.objects.create(
        connection=paytrace, name="Large", amount_min=Decimal("1000"), account="2100"
    )

    page = admin.get("/admin/mappings/glrule/").content.decode()

    assert "≥ $1,000.00" in page


def test_invoice_paths_are_checked_against_the_sage_pro_invoice(admin, paytrace):
    refused = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(paytrace, target_field="custno", source_path="invoice.customer"),
    )
    assert "not a field of the Sage Pro invoice" in errors_of(refused)["source_path"][0]

    # The invoice is read from Sage Pro when a receipt is built: no false preview.
    saved = admin.post(
        FIELD_MAPPING_ADD,
        mapping_form(paytrace, target_field="custno", source_path="invoice.custno"),
    )
    assert saved.status_code == 302
    assert FieldMapping.objects.get().source_path == "invoice.custno"
