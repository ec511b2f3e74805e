"""The Sage Pro gateway contract (docs/sagepro-gateway.md), served by the sandbox.

Every view goes through `gateway_view`, which applies the injected fault, checks the
bearer key and resolves the `Sage-Company` header before the view runs, and turns a
`GatewayError` into the contract's `{"code", "detail"}` body.
"""

import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from functools import wraps
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from . import keys, ledger
from .ledger import GatewayError, ValidationError
from .models import (
    EMPTY_DATE,
    ArCust,
    ArMast,
    CashReceipt,
    Fault,
    GlAcnt,
    SycComp,
    SycDfis,
)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DEFAULT_SLOW_DELAY = 15.0  # longer than the portal's default 10 s client timeout
MAX_LATENCY_MS = 10_000
MAX_RECEIPT_RESULTS = 500

View = Callable[..., HttpResponse]


def pause(seconds: float) -> None:
    """Sleep for the `slow` and `latency` faults; tests replace this to simulate a
    client timeout or to see the delay without waiting for it."""
    time.sleep(seconds)


def error_response(
    exc: GatewayError, headers: dict[str, str] | None = None
) -> JsonResponse:
    return JsonResponse(exc.as_body(), status=exc.status, headers=headers)


def is_authorized(request: HttpRequest) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    expected = settings.SANDBOX_SAGEPRO_API_KEY
    return (
        scheme.lower() == "bearer"
        and bool(expected)
        and hmac.compare_digest(token.strip().encode(), expected.encode())
    )


def read_json(request: HttpRequest) -> Any:
    try:
        return json.loads(request.body or b"null", parse_float=Decimal)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValidationError({"body": ["is not valid JSON"]}) from exc
    except RecursionError as exc:  # thousands of nested brackets: still the caller's
        raise ValidationError({"body": ["is nested too deeply"]}) from exc


def gateway_view(*methods: str, faultable: bool = True) -> Callable[[View], View]:
    """Wrap a contract view: fault, auth, company, method, errors (in that order).

    The wrapped view is called as `view(request, company, *args)`. It must not run
    inside an outer transaction: its writes commit before a `slow` fault sleeps, which
    is the point of that fault.
    """

    def decorate(func: View) -> View:
        @csrf_exempt
        @wraps(func)
        def view(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            fault = Fault.load() if faultable else Fault()
            mode = fault.active_mode()
            if mode == Fault.Mode.LATENCY:
                # The WAN between the portal and an on-site agent: every call waits
                # before it starts.
                pause(fault.latency_ms / 1000)
            retry = {"Retry-After": str(int(fault.seconds_left()) + 1)}
            if mode == Fault.Mode.UNAVAILABLE:
                return error_response(
                    GatewayError(503, "UNAVAILABLE", "Sage Pro is not available"),
                    retry,
                )
            if not is_authorized(request):
                return error_response(
                    GatewayError(401, "UNAUTHORIZED", "missing or wrong API key"),
                    {"WWW-Authenticate": 'Bearer realm="sagepro"'},
                )
            if request.method not in methods:
                return error_response(
                    GatewayError(
                        405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed"
                    ),
                    {"Allow": ", ".join(methods)},
                )
            try:
                company = ledger.get_company(request.headers.get("Sage-Company"))
                if mode == Fault.Mode.LOCKED and request.method in WRITE_METHODS:
                    return error_response(
                        GatewayError(
                            423, "RECORD_LOCKED", "a record is locked by another user"
                        ),
                        retry,
                    )
                response = func(request, company, *args, **kwargs)
            except GatewayError as exc:
                response = error_response(exc)
            if mode == Fault.Mode.SLOW:
                pause(fault.delay)
            return response

        return view

    return decorate


# --- renderers -----------------------------------------------------------------------


def money(value: Decimal) -> str:
    return f"{value.quantize(ledger.CENT):f}"


def date_or_none(value: Any) -> str | None:
    return None if value == EMPTY_DATE else value.isoformat()


def customer_json(customer: ArCust) -> dict[str, Any]:
    return {
        "custno": customer.custno.strip(),
        "company": customer.name,
        "company_id": customer.company,
        "contact": customer.contact,
        "address1": customer.address1,
        "address2": customer.address2,
        "city": customer.city,
        "state": customer.state,
        "zip": customer.zip,
        "country": customer.country,
        "phone": customer.phone,
        "email": customer.email,
        "terms": customer.pterms,
        "balance": money(customer.balance),
        "credit_limit": money(customer.credlimit),
        "currency": customer.currency,
        "credit_status": customer.credstat.strip(),
        "status": customer.custstat.strip(),
        "ar_account": customer.aracct.strip(),
        "last_payment_date": date_or_none(customer.lastpay),
        "last_payment_amount": money(customer.lpymt),
    }


def invoice_json(invoice: ArMast) -> dict[str, Any]:
    return {
        "invno": invoice.invno.strip(),
        "custno": invoice.custno.strip(),
        "invamt": money(invoice.invamt),
        "paidamt": money(invoice.paidamt),
        "balance": money(invoice.balance),
        "invdte": date_or_none(invoice.invdte),
        "artype": invoice.artype.strip(),
        "status": "open" if invoice.is_open() else "closed",
        "ornum": invoice.ornum.strip(),
        "ponum": invoice.ponum.strip(),
    }


def receipt_json(receipt: CashReceipt) -> dict[str, Any]:
    lines = sorted(receipt.lines.all(), key=lambda line: line.pk)  # uses a prefetch
    return {
        "receipt_no": receipt.rcptno.strip(),
        "custno": receipt.custno.strip(),
        "date": receipt.paydate.isoformat(),
        "amount": money(receipt.amount),
        "method": receipt.paymeth,
        "reference": receipt.reference,
        "idempotency_key": receipt.idemkey,
        "applications": [
            {
                "invno": line.invno.strip(),
                "amount": money(line.amount),
                "requested_amount": money(line.requested),
            }
            for line in lines
        ],
        "applied_amount": money(receipt.applied),
        "unapplied_amount": money(receipt.unapplied),
        "gl_account": receipt_gl_account(receipt),
        "created_at": receipt.created_at.isoformat(),
        "deleted": receipt.deleted,
        # §4.8: a reversed receipt stays readable; its applications were given back.
        "reversed": receipt.reversed,
        "reversal_date": date_or_none(receipt.revdate),
        "reversal_reason": receipt.revreason,
    }


def receipt_gl_account(receipt: CashReceipt) -> str:
    """The GL account the receipt was posted to ("" when none was given)."""
    return receipt.glacnt.strip()


def gl_account_json(account: GlAcnt) -> dict[str, Any]:
    return {
        "glacnt": account.glacnt.strip(),
        "gldesc": account.gldesc,
        "glstat": account.glstat,
        "active": account.is_active(),
    }


def period_json(period: SycDfis, current: str) -> dict[str, Any]:
    return {
        "yearprd": period.yearprd,
        "bdate": period.bdate.isoformat(),
        "edate": period.edate.isoformat(),
        "pclosed": period.pclosed,
        "plocked": period.plocked,
        "permlck": period.permlck,
        "current": period.yearprd == current,
    }


def results(items: list[dict[str, Any]]) -> JsonResponse:
    return JsonResponse({"results": items})


# --- views -----------------------------------------------------------------------


@gateway_view("GET")
def customer_detail(
    request: HttpRequest, company: SycComp, custno: str
) -> HttpResponse:
    return JsonResponse(customer_json(ledger.get_customer(company.compid, custno)))


@gateway_view("GET")
def customer_open_items(
    request: HttpRequest, company: SycComp, custno: str
) -> HttpResponse:
    customer = ledger.get_customer(company.compid, custno)
    invoices = ArMast.objects.open().filter(
        company=company.compid, custno=customer.custno
    )
    return results([invoice_json(inv) for inv in invoices])


@gateway_view("GET", "POST")
def invoice_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    if request.method == "POST":
        return create_invoice(request, company)
    status = request.GET.get("status", "all").lower()
    invoices = ArMast.objects.live().filter(company=company.compid)
    if status == "open":
        invoices = invoices.open()
    elif status == "closed":
        invoices = invoices.filter(balance=ledger.ZERO)
    elif status != "all":
        raise ValidationError({"status": ["must be open, closed or all"]})
    if request.GET.get("custno"):
        customer = ledger.get_customer(company.compid, request.GET["custno"])
        invoices = invoices.filter(custno=customer.custno)
    return results([invoice_json(inv) for inv in invoices.order_by("invno")])


def create_invoice(request: HttpRequest, company: SycComp) -> HttpResponse:
    """Sandbox only: seed an invoice (`{invno?, custno, invamt, invdte?, paidamt?,
    artype?, ornum?, ponum?}`).

    `ornum` (the sales order, C10) is stored right-justified as Sage Pro keeps it,
    `ponum` (the customer's PO, C20) as written; both trimmed, both optional."""
    body = read_json(request)
    if not isinstance(body, dict):
        raise ValidationError({"body": ["must be a JSON object"]})
    errors: dict[str, list[str]] = {}
    custno = ledger.parse_key(body.get("custno"), "custno", keys.pad_custno, errors)
    numbers: dict[str, str] = {}
    for name in ("ornum", "ponum"):
        value = body.get(name)
        width = keys.ORNUM_WIDTH if name == "ornum" else keys.PONUM_WIDTH
        if value is not None and not isinstance(value, str):
            errors[name] = ["must be a string"]
            continue
        text = (value or "").strip()
        if len(text) > width:
            errors[name] = [f"must be at most {width} characters"]
        # ORNUM is a key, right-justified in its column like INVNO; PONUM is text.
        numbers[name] = text.rjust(width) if name == "ornum" and text else text
    invamt = ledger.parse_money(body.get("invamt"), "invamt", errors)
    paidamt = ledger.parse_money(body.get("paidamt", "0.00"), "paidamt", errors)
    raw_date = body.get("invdte") or timezone.localdate().isoformat()
    invdte = ledger.parse_date(raw_date, "invdte", errors)
    invno = body.get("invno") or None
    if invno is not None:
        ledger.parse_key(invno, "invno", keys.pad_invno, errors)
    artype = str(body.get("artype", "")).strip().upper()
    if "invamt" not in errors and invamt == ledger.ZERO:
        errors["invamt"] = ["must not be 0.00"]
    if artype == "C" and invamt > ledger.ZERO:
        errors.setdefault("invamt", []).append("a credit memo must be negative")
    if errors:
        raise ValidationError(errors)
    invoice = ledger.create_invoice(
        company.compid,
        custno,
        invamt,
        invdte,
        invno=invno,
        paidamt=paidamt,
        artype=artype,
        ornum=numbers["ornum"],
        ponum=numbers["ponum"],
    )
    return JsonResponse(invoice_json(invoice), status=201)


@gateway_view("GET")
def invoice_detail(request: HttpRequest, company: SycComp, invno: str) -> HttpResponse:
    return JsonResponse(invoice_json(ledger.get_invoice(company.compid, invno)))


@gateway_view("GET", "POST")
def receipt_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    if request.method == "POST":
        receipt, created = ledger.post_cash_receipt(
            company, request.headers.get("Idempotency-Key", ""), read_json(request)
        )
        return JsonResponse(receipt_json(receipt), status=201 if created else 200)
    receipts = CashReceipt.objects.filter(company=company.compid, deleted=False)
    if "reference" in request.GET:
        receipts = receipts.filter(reference=request.GET["reference"].strip())
    if "idempotency_key" in request.GET:
        receipts = receipts.filter(idemkey=request.GET["idempotency_key"].strip())
    if request.GET.get("custno"):
        try:
            receipts = receipts.filter(custno=keys.pad_custno(request.GET["custno"]))
        except keys.InvalidKeyError:
            receipts = receipts.none()
    receipts = receipts.prefetch_related("lines").order_by("-rcptno")
    return results([receipt_json(r) for r in receipts[:MAX_RECEIPT_RESULTS]])


@gateway_view("GET", "DELETE")
def receipt_detail(
    request: HttpRequest, company: SycComp, receipt_no: str
) -> HttpResponse:
    if request.method == "DELETE":
        # Sandbox only: soft-delete and give the applied amounts back.
        return JsonResponse(
            receipt_json(ledger.reverse_cash_receipt(company, receipt_no))
        )
    try:
        key = keys.pad_receipt_no(receipt_no)
    except keys.InvalidKeyError:
        key = ""
    receipt = CashReceipt.objects.filter(
        company=company.compid, rcptno=key, deleted=False
    ).first()
    if receipt is None:
        raise GatewayError(
            404, "RECEIPT_NOT_FOUND", f"no receipt {receipt_no.strip()!r}"
        )
    return JsonResponse(receipt_json(receipt))


@gateway_view("GET")
def gl_account_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    accounts = GlAcnt.objects.filter(company=company.compid, deleted=False)
    return results([gl_account_json(a) for a in accounts.order_by("glacnt")])


@gateway_view("GET")
def gl_account_detail(
    request: HttpRequest, company: SycComp, glacnt: str
) -> HttpResponse:
    return JsonResponse(gl_account_json(ledger.get_gl_account(company.compid, glacnt)))


@gateway_view("GET")
def period_collection(request: HttpRequest, company: SycComp) -> HttpResponse:
    current = company.current_yearprd()
    periods = SycDfis.objects.filter(compid=company.compid, deleted=False)
    return results([period_json(p, current) for p in periods.order_by("yearprd")])


@csrf_exempt
def faults(request: HttpRequest) -> HttpResponse:
    """Sandbox only: read or set the injected fault. Never faulted itself.

    It needs the sandbox's API key like every other call (anyone who could reach it
    could otherwise take the gateway down) and exists only where the sandbox is
    mounted (SANDBOX_ENABLED).
    """
    if not is_authorized(request):
        return error_response(
            GatewayError(401, "UNAUTHORIZED", "missing or wrong API key"),
            {"WWW-Authenticate": 'Bearer realm="sagepro"'},
        )
    if request.method == "POST":
        try:
            fault = set_fault(read_json(request))
        except GatewayError as exc:
            return error_response(exc)
    elif request.method == "GET":
        fault = Fault.load()
    else:
        return error_response(
            GatewayError(405, "METHOD_NOT_ALLOWED", f"{request.method} is not allowed")
        )
    mode = fault.active_mode()
    return JsonResponse(
        {
            "mode": mode,
            "until": fault.until.isoformat() if mode != Fault.Mode.NONE else None,
            "seconds_left": round(fault.seconds_left(), 3),
            "delay": fault.delay if mode == Fault.Mode.SLOW else 0,
            "latency_ms": fault.latency_ms if mode == Fault.Mode.LATENCY else 0,
        }
    )


def set_fault(body: Any) -> Fault:
    if not isinstance(body, dict):
        raise ValidationError({"body": ["must be a JSON object"]})
    mode = str(body.get("mode", ""))
    if mode not in Fault.Mode.values:
        raise ValidationError(
            {"mode": [f"must be one of {', '.join(Fault.Mode.values)}"]}
        )
    errors: dict[str, list[str]] = {}
    seconds = as_seconds(
        body.get("seconds", 0 if mode == "none" else 60), "seconds", errors
    )
    delay = as_seconds(body.get("delay", DEFAULT_SLOW_DELAY), "delay", errors)
    latency_ms = 0
    if mode == Fault.Mode.LATENCY:
        latency_ms = as_milliseconds(body.get("ms"), "ms", errors)
    if errors:
        raise ValidationError(errors)
    fault = Fault.load()
    fault.mode = mode
    fault.until = timezone.now() + timedelta(seconds=seconds)
    fault.delay = delay
    fault.latency_ms = latency_ms
    fault.save()
    return fault


def as_milliseconds(value: Any, name: str, errors: dict[str, list[str]]) -> int:
    """A whole number of milliseconds, 0 to MAX_LATENCY_MS (the `latency` fault)."""
    if isinstance(value, bool) or not isinstance(value, int):
        errors[name] = [
            f"is required: a whole number of milliseconds from 0 to {MAX_LATENCY_MS}"
        ]
        return 0
    if not 0 <= value <= MAX_LATENCY_MS:
        errors[name] = [f"must be between 0 and {MAX_LATENCY_MS}"]
    return value


def as_seconds(value: Any, name: str, errors: dict[str, list[str]]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, Decimal, str)):
        errors[name] = ["must be a number of seconds"]
        return 0.0
    try:
        seconds = float(value)
    except ValueError:
        errors[name] = ["must be a number of seconds"]
        return 0.0
    if not 0 <= seconds <= 86_400:
        errors[name] = ["must be between 0 and 86400"]
    return seconds
