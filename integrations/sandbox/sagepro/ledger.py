"""What the emulated Sage Pro does with a document: validate it, then write it.

Each write runs in one database transaction with the rows it changes locked
(`select_for_update`), so two concurrent posts cannot apply the same invoice balance
twice. Refusals raise `GatewayError`, which the views turn into the contract's
`{"code", "detail"}` body.

Reading a request (money, dates, keys, text, the receipt body and its fingerprint) and
the refusals themselves are the contract's, shared with the on-site agent:
`sagepro_agent.core` (`errors`, `money`, `validation`), so both answer the same input
the same way.
"""

import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet

from sagepro_agent.core.errors import GatewayError, ValidationError, refuse
from sagepro_agent.core.money import parse_money as parse_money
from sagepro_agent.core.validation import ReceiptRequest
from sagepro_agent.core.validation import parse_date as parse_date
from sagepro_agent.core.validation import parse_key as parse_key

from . import keys
from .models import CENT as CENT
from .models import (
    ZERO,
    ArCust,
    ArMast,
    CashReceipt,
    CashReceiptLine,
    GlAcnt,
    GlStru,
    SycComp,
    SycDfis,
    SysData,
)

MAX_KEY_LENGTH = 100


# --- lookups -----------------------------------------------------------------------


def get_company(value: str | None) -> SycComp:
    try:
        compid = keys.normalize_company(value or "01")
    except keys.InvalidKeyError as exc:
        raise GatewayError(404, "COMPANY_NOT_FOUND", str(exc)) from exc
    company = SycComp.objects.filter(compid=compid, deleted=False).first()
    if company is None:
        raise GatewayError(404, "COMPANY_NOT_FOUND", f"no company {compid!r}")
    return company


def get_customer(company: str, custno: str) -> ArCust:
    """Read a live customer or raise 404 CUSTOMER_NOT_FOUND."""
    try:
        key = keys.pad_custno(custno)
    except keys.InvalidKeyError as exc:
        raise GatewayError(404, "CUSTOMER_NOT_FOUND", str(exc)) from exc
    customer = ArCust.objects.filter(company=company, custno=key, deleted=False).first()
    if customer is None:
        raise GatewayError(404, "CUSTOMER_NOT_FOUND", f"no customer {key.strip()!r}")
    return customer


def get_invoice(company: str, invno: str) -> ArMast:
    try:
        key = keys.pad_invno(invno)
    except keys.InvalidKeyError as exc:
        raise GatewayError(404, "INVOICE_NOT_FOUND", str(exc)) from exc
    invoice = ArMast.objects.live().filter(company=company, invno=key).first()
    if invoice is None:
        raise GatewayError(404, "INVOICE_NOT_FOUND", f"no invoice {key.strip()!r}")
    return invoice


def get_gl_account(company: str, glacnt: str) -> GlAcnt:
    code = keys.format_glacnt(glacnt, GlStru.mask_for(company))
    account = GlAcnt.objects.filter(company=company, glacnt=code, deleted=False).first()
    if account is None:
        raise GatewayError(404, "ACCOUNT_NOT_FOUND", f"no GL account {code!r}")
    return account


def _account_code(company: SycComp, glacnt: str) -> str:
    return keys.format_glacnt(glacnt, GlStru.mask_for(company.compid)) if glacnt else ""


def check_gl_account(company: SycComp, glacnt: str) -> str:
    """Refuse an unknown, deleted or inactive (`GLSTAT = 'I'`) account; return the
    account as `GLACNT` stores it ("" when the receipt names none)."""
    if not glacnt:
        return ""
    code = _account_code(company, glacnt)
    account = GlAcnt.objects.filter(
        company=company.compid, glacnt=code, deleted=False
    ).first()
    if account is None:
        raise refuse("ACCOUNT_NOT_FOUND", f"no GL account {code!r}")
    if not account.is_active():
        raise refuse("ACCOUNT_INACTIVE", f"GL account {code!r} is inactive")
    return account.glacnt.strip()


def check_period(company: SycComp, date: datetime.date) -> SycDfis:
    """Refuse a date outside a defined, open, non-future fiscal period
    (docs/sagepro-gateway.md §4.3)."""
    period = SycDfis.objects.filter(
        compid=company.compid, bdate__lte=date, edate__gte=date, deleted=False
    ).first()
    if period is None:
        raise refuse("PERIOD_NOT_DEFINED", f"no fiscal period contains {date}")
    refusal = period.refusal(company.current_yearprd())
    if refusal:
        raise refuse(*refusal)
    return period


# --- writes ------------------------------------------------------------------------


def take_number(company: str, module: str, counter: str, is_used: Any) -> int:
    """Allocate the next number from a SYSDATA counter; caller holds a transaction."""
    return lock_counter(company, module, counter).take_next(is_used)


def lock_counter(company: str, module: str, counter: str) -> SysData:
    """Return the counter row locked for the rest of the transaction."""
    SysData.objects.get_or_create(company=company, module=module, counter=counter)
    return SysData.objects.select_for_update().get(
        company=company, module=module, counter=counter
    )


def receipt_number(number: int) -> str:
    return keys.pad_receipt_no(f"{number:06d}")


Application = tuple[ArMast, Decimal, Decimal]  # invoice, requested, applied


def post_cash_receipt(
    company: SycComp, idempotency_key: str, body: Any
) -> tuple[CashReceipt, bool]:
    """Post a cash receipt; return it and whether it was created (False = replay).

    Steps, all in one transaction:
    1. Lock the company's receipt counter; this serialises receipt posts, so the
       idempotency and duplicate checks below cannot race.
    2. Same key: same request -> replay the stored receipt; different -> 409.
    3. Same reference (PayTrace transaction id) under another key -> 409.
    4. Customer exists, the date's period is open, applications <= amount.
    5. Lock the invoices; each must belong to the customer and be open. Apply at most
       each invoice's balance; the rest stays on the receipt as unapplied cash.
    6. Update ARMAST, ARCUST (BALANCE, LASTPAY, LPYMT), write receipt and lines.
    """
    key = _check_idempotency_key(idempotency_key)
    request = ReceiptRequest.parse(body)
    fingerprint = request.fingerprint()
    compid = company.compid

    with transaction.atomic():
        counter = lock_counter(compid, "AR", "RCPTNO")
        live = CashReceipt.objects.filter(company=compid, deleted=False)
        replay = _replay(company, live, key, fingerprint, request)
        if replay is not None:
            return replay, False
        _refuse_duplicate_reference(live, request)

        customer = _lock_customer(compid, request)
        check_period(company, request.date)
        account = check_gl_account(company, request.gl_account)
        _refuse_over_application(request)
        plan = _plan_applications(compid, request)

        receipt = _write_receipt(
            compid, counter, key, fingerprint, request, account, plan
        )
        _update_customer(customer, request)
    return receipt, True


def _check_idempotency_key(idempotency_key: str) -> str:
    """The key, stripped; refused when empty or too long."""
    key = idempotency_key.strip()
    if not key or len(key) > MAX_KEY_LENGTH:
        raise ValidationError(
            {"Idempotency-Key": [f"header is required, at most {MAX_KEY_LENGTH} chars"]}
        )
    return key


def _replay(
    company: SycComp,
    live: QuerySet[CashReceipt],
    key: str,
    fingerprint: str,
    request: ReceiptRequest,
) -> CashReceipt | None:
    """Step 2: the stored receipt for a repeated request; 409 for another request
    under the same key; None for a new key."""
    existing = live.filter(idemkey=key).first()
    if existing is None:
        return None
    if existing.reqhash == fingerprint:
        # Same hash, so the same account: echo it (see `receipt_gl_account`).
        existing.glacnt = _account_code(company, request.gl_account)
        return existing
    raise GatewayError(
        409,
        "IDEMPOTENCY_CONFLICT",
        f"Idempotency-Key {key!r} was used for a different request "
        f"(receipt {existing.rcptno.strip()})",
    )


def _refuse_duplicate_reference(
    live: QuerySet[CashReceipt], request: ReceiptRequest
) -> None:
    """Step 3: one live receipt per reference."""
    duplicate = live.filter(reference=request.reference).first()
    if duplicate is not None:
        raise GatewayError(
            409,
            "DUPLICATE_RECEIPT",
            f"reference {request.reference!r} is already on receipt "
            f"{duplicate.rcptno.strip()}",
        )


def _lock_customer(compid: str, request: ReceiptRequest) -> ArCust:
    customer = (
        ArCust.objects.select_for_update()
        .filter(company=compid, custno=request.custno, deleted=False)
        .first()
    )
    if customer is None:
        raise refuse("CUSTOMER_NOT_FOUND", f"no customer {request.custno.strip()!r}")
    return customer


def _refuse_over_application(request: ReceiptRequest) -> None:
    requested_total = sum((amount for _, amount in request.applications), ZERO)
    if requested_total > request.amount:
        raise refuse(
            "OVER_APPLICATION",
            f"applications total {requested_total} exceeds the receipt amount "
            f"{request.amount}",
        )


def _plan_applications(compid: str, request: ReceiptRequest) -> list[Application]:
    """Step 5: lock the invoices and apply at most each one's balance."""
    invnos = [invno for invno, _ in request.applications]
    invoices = {
        inv.invno: inv
        for inv in ArMast.objects.select_for_update()
        .live()
        .filter(company=compid, invno__in=invnos)
        .order_by("invno")
    }
    plan: list[Application] = []
    for invno, requested in request.applications:
        invoice = invoices.get(invno)
        if invoice is None or invoice.custno != request.custno:
            raise refuse(
                "INVOICE_NOT_FOUND",
                f"no invoice {invno.strip()!r} for customer {request.custno.strip()!r}",
            )
        if invoice.balance <= ZERO:
            raise refuse(
                "INVOICE_NOT_OPEN",
                f"invoice {invno.strip()!r} has no balance to pay "
                f"(balance {invoice.balance})",
            )
        plan.append((invoice, requested, min(requested, invoice.balance)))
    return plan


def _write_receipt(
    compid: str,
    counter: SysData,
    key: str,
    fingerprint: str,
    request: ReceiptRequest,
    account: str,
    plan: list[Application],
) -> CashReceipt:
    """Step 6: number the receipt, write it and its lines, pay the invoices."""
    applied_total = sum((applied for _, _, applied in plan), ZERO)
    number = counter.take_next(
        lambda n: CashReceipt.objects.filter(
            company=compid, rcptno=receipt_number(n)
        ).exists()
    )
    receipt = CashReceipt.objects.create(
        company=compid,
        rcptno=receipt_number(number),
        custno=request.custno,
        paydate=request.date,
        amount=request.amount,
        applied=applied_total,
        unapplied=request.amount - applied_total,
        paymeth=request.method,
        reference=request.reference,
        idemkey=key,
        reqhash=fingerprint,
        glacnt=account,
    )
    for invoice, requested, applied in plan:
        invoice.apply_payment(applied)
        CashReceiptLine.objects.create(
            company=compid,
            receipt=receipt,
            rcptno=receipt.rcptno,
            invno=invoice.invno,
            custno=invoice.custno,
            requested=requested,
            amount=applied,
        )
    return receipt


def _update_customer(customer: ArCust, request: ReceiptRequest) -> None:
    """Step 6, ARCUST: the last payment and the balance."""
    customer.lastpay = request.date
    customer.lpymt = request.amount
    customer.save(update_fields=["lastpay", "lpymt"])
    customer.recompute_balance()


def reverse_cash_receipt(company: SycComp, receipt_no: str) -> CashReceipt:
    """Soft-delete a receipt and give its applications back to the invoices."""
    try:
        key = keys.pad_receipt_no(receipt_no)
    except keys.InvalidKeyError as exc:
        raise GatewayError(404, "RECEIPT_NOT_FOUND", str(exc)) from exc
    with transaction.atomic():
        receipt = (
            CashReceipt.objects.select_for_update()
            .filter(company=company.compid, rcptno=key, deleted=False)
            .first()
        )
        if receipt is None:
            raise GatewayError(404, "RECEIPT_NOT_FOUND", f"no receipt {key.strip()!r}")
        # Customer before invoices, as a post locks them; every row lock before the
        # first write, which takes the change counter (models.next_change_number).
        customer = ArCust.objects.select_for_update().get(
            company=company.compid, custno=receipt.custno
        )
        lines = list(receipt.lines.filter(deleted=False).order_by("invno"))
        invoices = {
            inv.invno: inv
            for inv in ArMast.objects.select_for_update()
            .filter(company=company.compid, invno__in=[line.invno for line in lines])
            .order_by("invno")
        }
        for line in lines:
            invoices[line.invno].apply_payment(-line.amount)
            line.deleted = True
            line.save(update_fields=["deleted"])
        receipt.deleted = True
        receipt.save(update_fields=["deleted"])
        customer.recompute_balance()
    return receipt


def create_invoice(
    company: str,
    custno: str,
    invamt: Decimal,
    invdte: datetime.date,
    *,
    invno: str | None = None,
    paidamt: Decimal = ZERO,
    artype: str = "",
    ornum: str = "",
    ponum: str = "",
) -> ArMast:
    """Write an ARMAST row (sandbox seeding) and bring ARCUST.BALANCE up to date."""
    with transaction.atomic():
        customer = (
            ArCust.objects.select_for_update()
            .filter(company=company, custno=keys.pad_custno(custno), deleted=False)
            .first()
        )
        if customer is None:
            raise refuse("CUSTOMER_NOT_FOUND", f"no customer {custno.strip()!r}")
        if invno:
            key = keys.pad_invno(invno)
            if ArMast.objects.filter(company=company, invno=key).exists():
                raise GatewayError(
                    409, "DUPLICATE_INVOICE", f"invoice {key.strip()!r} exists"
                )
        else:
            number = take_number(
                company,
                "AR",
                "INVNO",
                lambda n: ArMast.objects.filter(
                    company=company, invno=keys.pad_invno(str(n))
                ).exists(),
            )
            key = keys.pad_invno(str(number))
        invoice = ArMast.objects.create(
            company=company,
            invno=key,
            custno=customer.custno,
            invdte=invdte,
            invamt=invamt,
            paidamt=paidamt,
            balance=invamt - paidamt,
            artype=artype,
            ornum=ornum,
            ponum=ponum,
        )
        customer.recompute_balance()
    return invoice
