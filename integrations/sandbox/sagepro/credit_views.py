"""Sandbox: credit memos, receipt reversal and applications of unapplied cash
(docs/sagepro-gateway.md §4.7-4.9).

The views only read the request and render the answer; `ledger` validates, applies
Sage Pro's rules and writes, each document in one transaction.
"""

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import URLPattern, path

from . import keys, ledger, views
from .credit_models import CreditMemo, UnappliedApplication
from .ledger import GatewayError
from .models import CashReceipt, SycComp

MAX_MEMO_RESULTS = 500
KEY_HEADER = "Idempotency-Key"


def memo_json(memo: CreditMemo) -> dict[str, Any]:
    refunded = ledger.refunded_total(memo.company, memo.rcptno)
    receipt = CashReceipt.objects.filter(
        company=memo.company, rcptno=memo.rcptno
    ).first()
    refundable = (receipt.amount if receipt else ledger.ZERO) - refunded
    return {
        "memo_no": memo.memono.strip(),
        "custno": memo.custno.strip(),
        "date": memo.memodate.isoformat(),
        "amount": views.money(memo.amount),
        "reference": memo.reference,
        "receipt_no": memo.rcptno.strip(),
        "invno": memo.invno.strip(),
        "refund_account": memo.refacnt.strip(),
        "cash_account": memo.cashacnt.strip(),
        "fee_amount": views.money(memo.feeamt),
        "fee_account": memo.feeacnt.strip(),
        "reason": memo.reason,
        "gl_batch_no": memo.glbatch.strip(),
        "idempotency_key": memo.idemkey,
        "created_at": memo.created_at.isoformat(),
        "receipt_refunded_total": views.money(refunded),
        "receipt_refundable": views.money(max(refundable, ledger.ZERO)),
    }


def application_json(group: UnappliedApplication) -> dict[str, Any]:
    receipt = CashReceipt.objects.get(company=group.company, rcptno=group.rcptno)
    lines = receipt.lines.filter(applyno=group.applyno).order_by("pk")
    return {
        "receipt": views.receipt_json(receipt),
        "idempotency_key": group.idemkey,
        "applications": [
            {
                "invno": line.invno.strip(),
                "amount": views.money(line.amount),
                "requested_amount": views.money(line.requested),
            }
            for line in lines
        ],
        "applied_amount": views.money(group.applied),
    }


@views.gateway_view("GET", "POST")
def memo_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    if request.method == "POST":
        memo, created = ledger.post_credit_memo(
            company, request.headers.get(KEY_HEADER, ""), views.read_json(request)
        )
        return JsonResponse(memo_json(memo), status=201 if created else 200)
    memos = CreditMemo.objects.filter(company=company.compid, deleted=False)
    if "idempotency_key" in request.GET:
        memos = memos.filter(idemkey=request.GET["idempotency_key"].strip())
    if "reference" in request.GET:
        memos = memos.filter(reference=request.GET["reference"].strip())
    if "receipt_no" in request.GET:
        try:
            memos = memos.filter(rcptno=keys.pad_receipt_no(request.GET["receipt_no"]))
        except keys.InvalidKeyError:
            memos = memos.none()
    memos = memos.order_by("-memono")[:MAX_MEMO_RESULTS]
    return views.results([memo_json(memo) for memo in memos])


@views.gateway_view("GET")
def memo_detail(request: HttpRequest, company: SycComp, memo_no: str) -> HttpResponse:
    try:
        key = keys.pad_receipt_no(memo_no)
    except keys.InvalidKeyError:
        key = ""
    memo = CreditMemo.objects.filter(
        company=company.compid, memono=key, deleted=False
    ).first()
    if memo is None:
        raise GatewayError(
            404, "CREDIT_MEMO_NOT_FOUND", f"no credit memo {memo_no.strip()!r}"
        )
    return JsonResponse(memo_json(memo))


@views.gateway_view("POST")
def receipt_reversal(
    request: HttpRequest, company: SycComp, receipt_no: str
) -> HttpResponse:
    receipt, created = ledger.post_receipt_reversal(
        company,
        receipt_no,
        request.headers.get(KEY_HEADER, ""),
        views.read_json(request),
    )
    receipt = CashReceipt.objects.prefetch_related("lines").get(pk=receipt.pk)
    return JsonResponse(views.receipt_json(receipt), status=201 if created else 200)


@views.gateway_view("POST")
def receipt_applications(
    request: HttpRequest, company: SycComp, receipt_no: str
) -> HttpResponse:
    group, created = ledger.apply_unapplied_cash(
        company,
        receipt_no,
        request.headers.get(KEY_HEADER, ""),
        views.read_json(request),
    )
    return JsonResponse(application_json(group), status=201 if created else 200)


urlpatterns: list[URLPattern] = [
    path("credit-memos", memo_collection),
    path("credit-memos/<str:memo_no>", memo_detail),
    path("cash-receipts/<str:receipt_no>/reversal", receipt_reversal),
    path("cash-receipts/<str:receipt_no>/applications", receipt_applications),
]
