"""Fixtures shared by the review tests (the item page and the safe money actions)."""

from decimal import Decimal

import pytest
from django.test import Client

from integrations.roles import FINANCE_REVIEWER
from tests.factories import make_user
from tests.webhooks import event_body, paytrace_record, post_event, sign


@pytest.fixture
def pay(client, paytrace_conn, secret, http, run_tasks):
    """Deliver an approved payment through the webhook; return its transaction id."""

    def _pay(invoice_id, amount, **fields):
        record = paytrace_record(
            invoice_id=invoice_id, amount=Decimal(amount), **fields
        )
        body = event_body("transaction.approved", record)
        response = post_event(client, "paytrace-sandbox", body, sign(body, secret))
        assert response.status_code == 202
        run_tasks()
        return str(record["transaction_id"])

    return _pay


@pytest.fixture
def reviewer():
    return make_user(group=FINANCE_REVIEWER)


@pytest.fixture
def reviewer_client(reviewer):
    browser = Client()
    browser.force_login(reviewer)
    return browser
