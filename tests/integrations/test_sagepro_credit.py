"""The Sage Pro client's credit calls (§4.7-4.9): credit memos, receipt reversal and
applications of unapplied cash. Wire behaviour with `responses`; then the same calls
against the sandbox through the bridge."""

import datetime
import json
from decimal import Decimal

import pytest
import requests
import responses
from django.conf import settings
from responses import matchers

from integrations.connectors.base import ConnectorError, NotFoundError
from integrations.connectors.sagepro import SageProConnector
from integrations.connectors.sagevalues import to_money
from integrations.sandbox.sagepro.seed import (
    period_date,
    seed,
    seed_customer,
    seed_invoice,
)

BASE = "https://agent.example/api/v1"
SANDBOX = "http://testserver/sandbox/sagepro/api/v1"

MEMO = {
    "memo_no": "000007",
    "custno": "ACME",
    "date": "2025-05-14",
    "amount": "40.00",
    "reference": "pt-refund-1",
    "receipt_no": "000012",
    "invno": "10001",
    "refund_account": "4900-00",
    "cash_account": "1100-00",
    "fee_amount": "0.00",
    "fee_account": "",
    "reason": "returned",
    "gl_batch_no": "000003",
    "idempotency_key": "k1",
    "created_at": "2025-05-14T17:03:11.120000+00:00",
    "receipt_refunded_total": "40.00",
    "receipt_refundable": "110.00",
}
RECEIPT = {
    "receipt_no": "000012",
    "custno": "ACME",
    "date": "2025-05-14",
    "amount": "150.00",
    "method": "VISA",
    "reference": "118822719",
    "idempotency_key": "sale",
    "applications": [
        {"invno": "10001", "amount": "100.00", "requested_amount": "150.00"}
    ],
    "applied_amount": "100.00",
    "unapplied_amount": "50.00",
    "gl_account": "1100-00",
    "created_at": "2025-05-14T17:03:11.120000+00:00",
    "deleted": False,
    "reversed": True,
    "reversal_date": "2025-05-20",
    "reversal_reason": "voided",
}


@pytest.fixture
def gateway():
    return SageProConnector(BASE, "secret-key")


def not_supported(what):
    return {
        "code": "NOT_SUPPORTED_AT_SITE",
        "detail": f"{what} are not supported at this site. Post it in Sage Pro by hand.",
    }


# --- on the wire ---------------------------------------------------------------------


@responses.activate
def test_a_credit_memo_is_posted_with_its_key_and_read_as_decimal(gateway):
    body = {"custno": "ACME", "amount": to_money(Decimal("40.00"))}
    responses.post(
        f"{BASE}/credit-memos",
        json=MEMO,
        status=201,
        match=[
            matchers.header_matcher({"Idempotency-Key": "k1", "Sage-Company": "01"}),
            matchers.json_params_matcher(body),
        ],
    )
    memo = gateway.post_credit_memo("k1", body)
    assert memo["amount"] == Decimal("40.00")
    assert memo["receipt_refundable"] == Decimal("110.00")
    assert memo["fee_amount"] == Decimal("0.00")
    assert memo["date"] == datetime.date(2025, 5, 14)
    assert memo["created_at"].tzinfo is not None
    assert memo["replayed"] is False


@responses.activate
def test_a_replayed_memo_says_so(gateway):
    responses.post(f"{BASE}/credit-memos", json=MEMO, status=200)
    assert gateway.post_credit_memo("k1", {})["replayed"] is True


@responses.activate
def test_memos_are_found_and_read_back(gateway):
    responses.get(
        f"{BASE}/credit-memos",
        json={"results": [MEMO]},
        match=[matchers.query_param_matcher({"reference": "pt-refund-1"})],
    )
    responses.get(f"{BASE}/credit-memos/000007", json=MEMO)
    responses.get(
        f"{BASE}/credit-memos/000099",
        json={"code": "CREDIT_MEMO_NOT_FOUND", "detail": "no credit memo"},
        status=404,
    )
    [found] = gateway.find_credit_memos(reference="pt-refund-1")
    assert found["amount"] == Decimal("40.00")
    assert gateway.get_credit_memo("000007")["memo_no"] == "000007"
    with pytest.raises(NotFoundError):
        gateway.get_credit_memo("000099")
    with pytest.raises(ValueError):
        gateway.find_credit_memos()
    with pytest.raises(ValueError):
        gateway.find_credit_memos(custno="ACME")


@responses.activate
def test_a_reversal_answers_the_receipt_with_its_reversal_date(gateway):
    responses.post(
        f"{BASE}/cash-receipts/000012/reversal",
        json=RECEIPT,
        status=201,
        match=[matchers.header_matcher({"Idempotency-Key": "void-1"})],
    )
    result = gateway.reverse_cash_receipt(
        "void-1", "000012", {"date": "2025-05-20", "reason": "voided"}
    )
    assert result["reversed"] is True
    assert result["reversal_date"] == datetime.date(2025, 5, 20)
    assert result["applications"][0]["requested_amount"] == Decimal("150.00")
    assert result["unapplied_amount"] == Decimal("50.00")
    assert result["replayed"] is False


@responses.activate
def test_an_application_answers_the_updated_receipt(gateway):
    answer = {
        "receipt": {**RECEIPT, "reversed": False, "reversal_date": None},
        "idempotency_key": "a1",
        "applications": [
            {"invno": "10002", "amount": "25.00", "requested_amount": "30.00"}
        ],
        "applied_amount": "25.00",
    }
    responses.post(f"{BASE}/cash-receipts/000012/applications", json=answer, status=201)
    result = gateway.apply_unapplied_cash(
        "a1",
        "000012",
        {"date": "2025-05-20", "applications": [{"invno": "10002", "amount": "30.00"}]},
    )
    assert result["applied_amount"] == Decimal("25.00")
    assert result["applications"][0]["amount"] == Decimal("25.00")
    assert result["receipt"]["reversal_date"] is None
    assert result["receipt"]["unapplied_amount"] == Decimal("50.00")


@pytest.mark.parametrize(
    ("method", "path", "call"),
    [
        ("POST", "/credit-memos", lambda g: g.post_credit_memo("k", {})),
        ("GET", "/credit-memos", lambda g: g.find_credit_memos(receipt_no="1")),
        ("GET", "/credit-memos/000001", lambda g: g.get_credit_memo("000001")),
        (
            "POST",
            "/cash-receipts/000012/reversal",
            lambda g: g.reverse_cash_receipt("k", "000012", {}),
        ),
        (
            "POST",
            "/cash-receipts/000012/applications",
            lambda g: g.apply_unapplied_cash("k", "000012", {}),
        ),
    ],
)
@responses.activate
def test_a_site_without_these_documents_is_a_permanent_refusal(
    gateway, method, path, call
):
    responses.add(
        method, f"{BASE}{path}", json=not_supported("Credit memos"), status=501
    )
    with pytest.raises(ConnectorError) as caught:
        call(gateway)
    assert caught.value.code == "NOT_SUPPORTED_AT_SITE"
    assert caught.value.status == 501
    assert caught.value.transient is False
    assert caught.value.outcome_unknown is False


@pytest.mark.parametrize(
    "call",
    [
        lambda g: g.post_credit_memo("k", {}),
        lambda g: g.reverse_cash_receipt("k", "000012", {}),
        lambda g: g.apply_unapplied_cash("k", "000012", {}),
    ],
)
@responses.activate
def test_a_timeout_on_a_write_leaves_the_outcome_unknown(gateway, call):
    for path in ("/credit-memos", "/cash-receipts/000012/reversal"):
        responses.post(f"{BASE}{path}", body=requests.Timeout("read timed out"))
    responses.post(
        f"{BASE}/cash-receipts/000012/applications",
        body=requests.Timeout("read timed out"),
    )
    with pytest.raises(ConnectorError) as caught:
        call(gateway)
    assert caught.value.code == "TIMEOUT"
    assert caught.value.transient is True
    assert caught.value.outcome_unknown is True


@responses.activate
def test_business_refusals_keep_their_code_and_detail(gateway):
    refusal = {"code": "OVER_REFUND", "detail": "refund 40.01 is more than 40.00"}
    responses.post(f"{BASE}/credit-memos", json=refusal, status=422)
    with pytest.raises(ConnectorError) as caught:
        gateway.post_credit_memo("k", {})
    assert (caught.value.code, caught.value.status) == ("OVER_REFUND", 422)
    assert caught.value.transient is False
    assert "40.01" in str(caught.value)


@responses.activate
def test_a_lock_is_transient(gateway):
    responses.post(
        f"{BASE}/cash-receipts/000012/reversal",
        json={"code": "RECORD_LOCKED", "detail": "locked"},
        status=423,
    )
    with pytest.raises(ConnectorError) as caught:
        gateway.reverse_cash_receipt("k", "000012", {})
    assert caught.value.transient is True


def test_receipt_numbers_are_quoted_into_the_path(gateway):
    with responses.RequestsMock() as mock:
        mock.post(
            f"{BASE}/cash-receipts/a%2Fb/reversal",
            json={"code": "RECEIPT_NOT_FOUND", "detail": "no"},
            status=404,
        )
        with pytest.raises(NotFoundError):
            gateway.reverse_cash_receipt("k", "a/b", {})
        assert json.loads(mock.calls[0].request.body) == {}


# --- against the sandbox ----------------------------------------------------------------


@pytest.fixture
def sandbox_gateway(http, db):
    seed()
    seed_customer("NEWCO", "New Company Inc")
    return SageProConnector(SANDBOX, settings.SANDBOX_SAGEPRO_API_KEY)


def test_a_sale_refunded_in_two_parts_then_over_refunded(sandbox_gateway):
    from integrations.connectors import sagepro

    gateway = sandbox_gateway
    invno = seed_invoice("NEWCO", Decimal("100.00"))
    sale = gateway.post_cash_receipt(
        "sale",
        sagepro.CashReceipt(
            custno="NEWCO",
            date=period_date(0),
            amount=Decimal("100.00"),
            method="VISA",
            reference="pt-sale",
            applications=(sagepro.Application(invno, Decimal("100.00")),),
        ),
    )

    def refund(key, amount):
        return gateway.post_credit_memo(
            key,
            {
                "custno": "NEWCO",
                "date": period_date(0).isoformat(),
                "amount": to_money(amount),
                "reference": f"pt-{key}",
                "receipt_no": sale["receipt_no"],
                "invno": invno,
                "refund_account": "4900-00",
                "reason": "partial refund",
            },
        )

    first = refund("r1", Decimal("30.00"))
    second = refund("r2", Decimal("45.50"))
    assert second["receipt_refunded_total"] == Decimal("75.50")
    assert second["receipt_refundable"] == Decimal("24.50")
    with pytest.raises(ConnectorError) as caught:
        refund("r3", Decimal("24.51"))
    assert caught.value.code == "OVER_REFUND" and caught.value.transient is False
    assert refund("r1", Decimal("30.00"))["replayed"] is True
    found = gateway.find_credit_memos(receipt_no=sale["receipt_no"])
    assert [m["memo_no"] for m in found] == [second["memo_no"], first["memo_no"]]
    assert gateway.get_invoice(invno)["balance"] == Decimal("0.00")


def test_overpaid_cash_is_applied_then_the_receipt_reversed(sandbox_gateway):
    from integrations.connectors import sagepro

    gateway = sandbox_gateway
    first = seed_invoice("NEWCO", Decimal("60.00"))
    later = seed_invoice("NEWCO", Decimal("25.00"))
    sale = gateway.post_cash_receipt(
        "sale",
        sagepro.CashReceipt(
            custno="NEWCO",
            date=period_date(0),
            amount=Decimal("100.00"),
            method="VISA",
            reference="pt-over",
            applications=(sagepro.Application(first, Decimal("60.00")),),
        ),
    )
    assert sale["unapplied_amount"] == Decimal("40.00")
    applied = gateway.apply_unapplied_cash(
        "apply-1",
        sale["receipt_no"],
        {
            "date": period_date(0).isoformat(),
            "applications": [{"invno": later, "amount": "40.00"}],
        },
    )
    assert applied["applied_amount"] == Decimal("25.00")
    assert applied["receipt"]["unapplied_amount"] == Decimal("15.00")
    assert gateway.get_invoice(later)["balance"] == Decimal("0.00")

    voided = gateway.reverse_cash_receipt(
        "void-1", sale["receipt_no"], {"date": period_date(0).isoformat()}
    )
    assert voided["reversed"] is True
    assert voided["reversal_date"] == period_date(0)
    assert gateway.get_invoice(first)["balance"] == Decimal("60.00")
    assert gateway.get_invoice(later)["balance"] == Decimal("25.00")
    with pytest.raises(ConnectorError) as caught:
        gateway.reverse_cash_receipt(
            "void-2", sale["receipt_no"], {"date": period_date(0).isoformat()}
        )
    assert caught.value.code == "RECEIPT_REVERSED"


# --- concurrency ---------------------------------------------------------------------


def run_together(*jobs):
    """Run the jobs in threads released at once; their outcomes (a code or "ok")."""
    import threading

    from django.db import connection

    from integrations.sandbox.sagepro import ledger

    barrier = threading.Barrier(len(jobs))
    outcomes = []

    def run(job):
        try:
            barrier.wait()
            job()
            outcomes.append("ok")
        except ledger.GatewayError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(job,)) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(outcomes)


def posted_sale(amount="100.00"):
    from integrations.sandbox.sagepro import ledger
    from integrations.sandbox.sagepro.models import SycComp

    seed()
    seed_customer("NEWCO", "New Company Inc")
    invno = seed_invoice("NEWCO", Decimal("100.00"))
    company = SycComp.objects.get(compid="01")
    body = {
        "custno": "NEWCO",
        "date": period_date(0).isoformat(),
        "amount": amount,
        "method": "VISA",
        "reference": "pt-sale",
        "applications": [{"invno": invno, "amount": "100.00"}],
    }
    receipt, _ = ledger.post_cash_receipt(company, "sale", body)
    return company, receipt.rcptno.strip(), invno


def memo_request(receipt_no, n, amount):
    return {
        "custno": "NEWCO",
        "date": period_date(0).isoformat(),
        "amount": amount,
        "reference": f"pt-refund-{n}",
        "receipt_no": receipt_no,
        "refund_account": "4900-00",
    }


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_refunds_cannot_refund_more_than_the_sale():
    from integrations.sandbox.sagepro import ledger
    from integrations.sandbox.sagepro.credit_models import CreditMemo

    company, receipt_no, _ = posted_sale()
    outcomes = run_together(
        *(
            lambda n=n: ledger.post_credit_memo(
                company, f"r{n}", memo_request(receipt_no, n, "60.00")
            )
            for n in range(2)
        )
    )
    assert outcomes == ["OVER_REFUND", "ok"]
    assert ledger.refunded_total("01", receipt_no.rjust(10)) == Decimal("60.00")
    assert CreditMemo.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_a_refund_and_a_void_of_one_receipt_do_not_both_happen():
    from integrations.sandbox.sagepro import ledger
    from integrations.sandbox.sagepro.models import ArMast, CashReceipt

    company, receipt_no, invno = posted_sale()
    outcomes = run_together(
        lambda: ledger.post_credit_memo(
            company, "r1", memo_request(receipt_no, 1, "10.00")
        ),
        lambda: ledger.post_receipt_reversal(
            company, receipt_no, "void", {"date": period_date(0).isoformat()}
        ),
    )
    receipt = CashReceipt.objects.get(rcptno=receipt_no.rjust(10))
    invoice = ArMast.objects.get(invno=invno.rjust(10))
    assert outcomes in (["RECEIPT_HAS_CREDIT_MEMOS", "ok"], ["RECEIPT_NOT_FOUND", "ok"])
    if receipt.reversed:
        assert invoice.balance == Decimal("100.00")
    else:
        assert invoice.balance == Decimal("0.00")
    assert invoice.invamt - invoice.paidamt == invoice.balance


def test_the_sandbox_admin_shows_memos_and_applications_read_only(
    sandbox_gateway, admin_client
):
    from integrations.sandbox.sagepro.credit_models import CreditMemo

    test_a_sale_refunded_in_two_parts_then_over_refunded(sandbox_gateway)
    memo = CreditMemo.objects.first()
    for url in (
        "/admin/sandbox_sagepro/creditmemo/",
        f"/admin/sandbox_sagepro/creditmemo/{memo.pk}/change/",
        "/admin/sandbox_sagepro/unappliedapplication/",
        "/admin/sandbox_sagepro/cashreceipt/?reversed__exact=0",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
    assert b"pt-r1" in admin_client.get("/admin/sandbox_sagepro/creditmemo/").content
    assert admin_client.get("/admin/sandbox_sagepro/creditmemo/add/").status_code == 403
