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
import hashlib
import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction
from django.db.models import QuerySet, Sum

from sagepro_agent.core.errors import GatewayError, ValidationError, refuse
from sagepro_agent.core.money import parse_money as parse_money
from sagepro_agent.core.validation import (
    REFERENCE_WIDTH,
    ReceiptRequest,
    parse_stored_text,
    parse_text,
)
from sagepro_agent.core.validation import parse_date as parse_date
from sagepro_agent.core.validation import parse_key as parse_key

from . import keys
from .credit_models import CreditMemo, UnappliedApplication
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
    _apply_lines(compid, receipt, plan)
    return receipt


def _apply_lines(
    compid: str,
    receipt: CashReceipt,
    plan: list[Application],
    *,
    applyno: int = 0,
) -> None:
    """Apply each planned (invoice, requested, applied) and write its receipt line
    (`applyno` 0: the receipt's own lines; else the application call's number)."""
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
            applyno=applyno,
        )


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
            if not receipt.reversed:  # a reversal already gave them back
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


# --- credit memos, receipt reversal, applications of unapplied cash (§4.7-4.9) ---------
#
# Every write below takes its locks in one global order, the same as a receipt post:
# the document's SYSDATA counter (serialises its idempotency checks), the receipt row,
# the customer, the invoices by invno, a credit memo's GL batch counter, and the change
# counter last (taken by the first ARMAST/ARCUST save, `models.next_change_number`).

REASON_WIDTH = 60
# Sage Pro's default cash account when neither the request nor the receipt names one.
DEFAULT_CASH_ACCOUNT = "1000-00"
CREDIT_MEMO_PREFIX = "CM"  # a memo's own ARMAST row is numbered CM<memo_no>


def _optional_text(
    value: Any, name: str, width: int, errors: dict[str, list[str]]
) -> str:
    """Optional free text Sage Pro stores: absent or "" is "", else as a stored text."""
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        errors.setdefault(name, []).append("must be a string")
        return ""
    return parse_stored_text(value, name, width, errors)


def _optional_account(value: Any, name: str, errors: dict[str, list[str]]) -> str:
    if value is None or value == "":
        return ""
    if not isinstance(value, str):
        errors.setdefault(name, []).append("must be a string")
        return ""
    return parse_text(value, name, keys.GLACNT_WIDTH, errors).upper()


def _fingerprint(*parts: Any) -> str:
    canonical = json.dumps(parts, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _require_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError({"body": ["must be a JSON object"]})
    return body


def _receipt_key(receipt_no: str) -> str:
    """A receipt number from a path; one that cannot be a key is simply not found."""
    try:
        return keys.pad_receipt_no(receipt_no)
    except keys.InvalidKeyError as exc:
        raise GatewayError(404, "RECEIPT_NOT_FOUND", str(exc)) from exc


def _lock_receipt(compid: str, rcptno: str) -> CashReceipt | None:
    return (
        CashReceipt.objects.select_for_update()
        .filter(company=compid, rcptno=rcptno, deleted=False)
        .first()
    )


@dataclass(frozen=True)
class CreditMemoRequest:
    """A validated `POST /credit-memos` body (§4.7), keys padded the Sage way."""

    custno: str
    date: datetime.date
    amount: Decimal
    reference: str
    receipt_no: str
    invno: str
    refund_account: str
    cash_account: str
    fee_amount: Decimal
    fee_account: str
    reason: str

    @classmethod
    def parse(cls, body: Any) -> "CreditMemoRequest":
        body = _require_object(body)
        errors: dict[str, list[str]] = {}
        custno = parse_key(body.get("custno"), "custno", keys.pad_custno, errors)
        date = parse_date(body.get("date"), "date", errors)
        amount = parse_money(body.get("amount"), "amount", errors)
        if "amount" not in errors and amount <= ZERO:
            errors["amount"] = ["must be greater than 0.00"]
        reference = parse_stored_text(
            body.get("reference"), "reference", REFERENCE_WIDTH, errors
        )
        receipt_no = parse_key(
            body.get("receipt_no"), "receipt_no", keys.pad_receipt_no, errors
        )
        invno = ""
        if body.get("invno") not in (None, ""):
            invno = parse_key(body.get("invno"), "invno", keys.pad_invno, errors)
        refund_account = parse_text(
            body.get("refund_account"), "refund_account", keys.GLACNT_WIDTH, errors
        ).upper()
        cash_account = _optional_account(
            body.get("cash_account"), "cash_account", errors
        )
        fee_amount = ZERO
        if body.get("fee_amount") is not None:
            fee_amount = parse_money(body.get("fee_amount"), "fee_amount", errors)
            if "fee_amount" not in errors and fee_amount < ZERO:
                errors["fee_amount"] = ["must not be negative"]
        fee_account = _optional_account(body.get("fee_account"), "fee_account", errors)
        if fee_amount > ZERO and not fee_account and "fee_account" not in errors:
            errors["fee_account"] = ["is required when fee_amount is more than 0.00"]
        reason = _optional_text(body.get("reason"), "reason", REASON_WIDTH, errors)
        if errors:
            raise ValidationError(errors)
        return cls(
            custno,
            date,
            amount,
            reference,
            receipt_no,
            invno,
            refund_account,
            cash_account,
            fee_amount,
            fee_account,
            reason,
        )

    def fingerprint(self) -> str:
        return _fingerprint(
            "credit-memo",
            self.custno.strip(),
            self.date.isoformat(),
            str(self.amount),
            self.reference,
            self.receipt_no.strip(),
            self.invno.strip(),
            self.refund_account.replace("-", ""),
            self.cash_account.replace("-", ""),
            str(self.fee_amount),
            self.fee_account.replace("-", ""),
            self.reason,
        )


def post_credit_memo(
    company: SycComp, idempotency_key: str, body: Any
) -> tuple[CreditMemo, bool]:
    """Write a refund's credit memo; return it and whether it was created.

    Steps, all in one transaction:
    1. Lock the company's memo counter (serialises memo posts: the checks below
       cannot race). Same key: same request -> replay; another request -> 409.
    2. The reference on another live memo -> 409 DUPLICATE_CREDIT_MEMO.
    3. Lock the receipt (live, not reversed, the customer's), then the customer; the
       period, the accounts, the invoice link; the amount at most what is left.
    4. Write the memo and its ARMAST row (`artype "C"`, `invamt = paidamt = -amount`,
       balance 0: the refund paid it out, the sale's invoice is not reopened).
    """
    key = _check_idempotency_key(idempotency_key)
    request = CreditMemoRequest.parse(body)
    fingerprint = request.fingerprint()
    compid = company.compid

    with transaction.atomic():
        counter = lock_counter(compid, "AR", "CRMEMO")
        live = CreditMemo.objects.filter(company=compid, deleted=False)
        existing = live.filter(idemkey=key).first()
        if existing is not None:
            if existing.reqhash == fingerprint:
                return existing, False
            raise _key_conflict(key, f"credit memo {existing.memono.strip()}")
        duplicate = live.filter(reference=request.reference).first()
        if duplicate is not None:
            raise GatewayError(
                409,
                "DUPLICATE_CREDIT_MEMO",
                f"reference {request.reference!r} is already on credit memo "
                f"{duplicate.memono.strip()}",
            )
        if not ArCust.objects.filter(
            company=compid, custno=request.custno, deleted=False
        ).exists():  # said first: "no receipt for customer X" would hide the cause
            raise refuse(
                "CUSTOMER_NOT_FOUND", f"no customer {request.custno.strip()!r}"
            )
        receipt = _lock_receipt(compid, request.receipt_no)
        if receipt is None or receipt.reversed or receipt.custno != request.custno:
            raise refuse(
                "RECEIPT_NOT_FOUND",
                f"no receipt {request.receipt_no.strip()!r} to refund for customer "
                f"{request.custno.strip()!r}"
                + (" (it was reversed)" if receipt and receipt.reversed else ""),
            )
        customer = _lock_customer_key(compid, request.custno)
        check_period(company, request.date)
        accounts = _memo_accounts(company, request, receipt)
        if request.invno:
            _check_linked_invoice(compid, request)
        refunded = refunded_total(compid, receipt.rcptno)
        refundable = receipt.amount - refunded
        if request.amount > refundable:
            raise refuse(
                "OVER_REFUND",
                f"refund {request.amount} is more than what remains refundable on "
                f"receipt {receipt.rcptno.strip()}: {refundable} "
                f"(receipt {receipt.amount}, already refunded {refunded})",
            )
        memo = _write_credit_memo(company, counter, key, fingerprint, request, accounts)
        customer.recompute_balance()
    return memo, True


def _key_conflict(key: str, what: str) -> GatewayError:
    return GatewayError(
        409,
        "IDEMPOTENCY_CONFLICT",
        f"Idempotency-Key {key!r} was used for a different request ({what})",
    )


def _lock_customer_key(compid: str, custno: str) -> ArCust:
    customer = (
        ArCust.objects.select_for_update()
        .filter(company=compid, custno=custno, deleted=False)
        .first()
    )
    if customer is None:
        raise refuse("CUSTOMER_NOT_FOUND", f"no customer {custno.strip()!r}")
    return customer


def _memo_accounts(
    company: SycComp, request: CreditMemoRequest, receipt: CashReceipt
) -> tuple[str, str, str]:
    """The refund, cash and fee accounts as GLACNT stores them, each checked."""
    refund = check_gl_account(company, request.refund_account)
    cash = check_gl_account(
        company,
        request.cash_account or receipt.glacnt.strip() or DEFAULT_CASH_ACCOUNT,
    )
    fee = check_gl_account(company, request.fee_account)
    return refund, cash, fee


def _check_linked_invoice(compid: str, request: CreditMemoRequest) -> None:
    invoice = ArMast.objects.live().filter(company=compid, invno=request.invno).first()
    if invoice is None or invoice.custno != request.custno:
        raise refuse(
            "INVOICE_NOT_FOUND",
            f"no invoice {request.invno.strip()!r} for customer "
            f"{request.custno.strip()!r} to link the credit memo to",
        )


def refunded_total(compid: str, rcptno: str) -> Decimal:
    """What the receipt's live credit memos have refunded (fees not included)."""
    total = CreditMemo.objects.filter(
        company=compid, rcptno=rcptno, deleted=False
    ).aggregate(total=Sum("amount"))["total"]
    return total or ZERO


def _write_credit_memo(
    company: SycComp,
    counter: SysData,
    key: str,
    fingerprint: str,
    request: CreditMemoRequest,
    accounts: tuple[str, str, str],
) -> CreditMemo:
    """Number the memo, write its GL batch, the memo and its ARMAST row.

    The batch comes first: its BATCHNO counter is a SYSDATA row like the change
    counter, which must stay the last lock (the ARMAST row's save takes it).
    """
    compid = company.compid

    def is_used(number: int) -> bool:
        return (
            CreditMemo.objects.filter(
                company=compid, memono=receipt_number(number)
            ).exists()
            or ArMast.objects.filter(
                company=compid, invno=_memo_invno(receipt_number(number))
            ).exists()
        )

    memono = receipt_number(counter.take_next(is_used))
    refund, cash, fee = accounts
    memo = CreditMemo(
        company=compid,
        memono=memono,
        custno=request.custno,
        memodate=request.date,
        amount=request.amount,
        reference=request.reference,
        rcptno=request.receipt_no,
        invno=request.invno,
        crinvno=_memo_invno(memono),
        refacnt=refund,
        cashacnt=cash,
        feeamt=request.fee_amount,
        feeacnt=fee if request.fee_amount > ZERO else "",
        reason=request.reason,
        idemkey=key,
        reqhash=fingerprint,
    )
    memo.glbatch = _write_memo_batch(company, memo)
    memo.save()
    ArMast.objects.create(
        company=compid,
        invno=memo.crinvno,
        custno=request.custno,
        invdte=request.date,
        invamt=-request.amount,
        paidamt=-request.amount,
        balance=ZERO,
        artype="C",
    )
    return memo


def _write_memo_batch(company: SycComp, memo: CreditMemo) -> str:
    """The memo's unposted GL batch (source AR, reference = the memo's reference),
    written by the GL batch document's own code (`orders_ledger.post_gl_batch`)."""
    # Imported here: orders_ledger builds on this module.
    from .orders_ledger import JournalLine, post_gl_batch

    batch = post_gl_batch(
        company,
        memo.memodate,
        f"Credit memo {memo.memono.strip()}",
        memo.reference,
        "AR",
        [
            JournalLine(account, debit, credit, text)
            for account, debit, credit, text in memo_distribution(memo)
        ],
    )
    return str(batch.batchno)


def _memo_invno(memono: str) -> str:
    return keys.pad_invno(f"{CREDIT_MEMO_PREFIX}{memono.strip()}")


def memo_distribution(memo: CreditMemo) -> list[tuple[str, Decimal, Decimal, str]]:
    """The memo's GL lines `(account, debit, credit, memo)`; balanced by construction."""
    text = f"refund {memo.reference}"[:30]
    lines = [
        (memo.refacnt, memo.amount, ZERO, text),
        (memo.cashacnt, ZERO, memo.amount, text),
    ]
    if memo.feeamt > ZERO:
        lines += [
            (memo.feeacnt, memo.feeamt, ZERO, f"refund fee {memo.reference}"[:30]),
            (memo.cashacnt, ZERO, memo.feeamt, f"refund fee {memo.reference}"[:30]),
        ]
    return lines


# --- receipt reversal (§4.8) ---------------------------------------------------------


@dataclass(frozen=True)
class ReversalRequest:
    date: datetime.date
    reason: str

    @classmethod
    def parse(cls, body: Any) -> "ReversalRequest":
        body = _require_object(body)
        errors: dict[str, list[str]] = {}
        date = parse_date(body.get("date"), "date", errors)
        reason = _optional_text(body.get("reason"), "reason", REASON_WIDTH, errors)
        if errors:
            raise ValidationError(errors)
        return cls(date, reason)

    def fingerprint(self, rcptno: str) -> str:
        return _fingerprint(
            "reversal", rcptno.strip(), self.date.isoformat(), self.reason
        )


def post_receipt_reversal(
    company: SycComp, receipt_no: str, idempotency_key: str, body: Any
) -> tuple[CashReceipt, bool]:
    """Reverse (void) a receipt: every application back to its invoice, the receipt
    kept (flagged `reversed`, key and reference still taken). Return it and whether
    it was reversed now (False = a replay).

    Locks: the receipt counter (one receipt write at a time, so a key cannot be used
    for two reversals), the receipt, the customer, the invoices by invno, then the
    change counter.
    """
    key = _check_idempotency_key(idempotency_key)
    request = ReversalRequest.parse(body)
    rcptno = _receipt_key(receipt_no)
    fingerprint = request.fingerprint(rcptno)
    compid = company.compid

    with transaction.atomic():
        lock_counter(compid, "AR", "RCPTNO")
        other = (
            CashReceipt.objects.filter(company=compid, deleted=False, revkey=key)
            .exclude(rcptno=rcptno)
            .first()
        )
        if other is not None:
            raise _key_conflict(key, f"reversal of receipt {other.rcptno.strip()}")
        receipt = _lock_receipt(compid, rcptno)
        if receipt is None:
            raise GatewayError(
                404, "RECEIPT_NOT_FOUND", f"no receipt {rcptno.strip()!r}"
            )
        if receipt.reversed:
            if receipt.revkey == key:
                if receipt.revhash == fingerprint:
                    return receipt, False
                raise _key_conflict(key, f"reversal of receipt {rcptno.strip()}")
            raise refuse(
                "RECEIPT_REVERSED",
                f"receipt {rcptno.strip()} was already reversed on "
                f"{receipt.revdate.isoformat()} (under another Idempotency-Key)",
            )
        memos = CreditMemo.objects.filter(
            company=compid, rcptno=rcptno, deleted=False
        ).order_by("memono")
        if memos.exists():
            numbers = ", ".join(m.memono.strip() for m in memos)
            raise refuse(
                "RECEIPT_HAS_CREDIT_MEMOS",
                f"receipt {rcptno.strip()} has credit memos ({numbers}): refund "
                "what remains instead of reversing it",
            )
        check_period(company, request.date)
        customer = _lock_customer_key(compid, receipt.custno)
        lines = list(receipt.lines.filter(deleted=False).order_by("invno"))
        invoices = _lock_invoices(compid, [line.invno for line in lines])
        for line in lines:
            invoices[line.invno].apply_payment(-line.amount)
        receipt.reversed = True
        receipt.revdate = request.date
        receipt.revreason = request.reason
        receipt.revkey = key
        receipt.revhash = fingerprint
        receipt.save(
            update_fields=["reversed", "revdate", "revreason", "revkey", "revhash"]
        )
        customer.recompute_balance()
    return receipt, True


def _lock_invoices(compid: str, invnos: list[str]) -> dict[str, ArMast]:
    return {
        inv.invno: inv
        for inv in ArMast.objects.select_for_update()
        .filter(company=compid, invno__in=invnos)
        .order_by("invno")
    }


# --- applications of unapplied cash (§4.9) ------------------------------------------


@dataclass(frozen=True)
class ApplicationRequest:
    date: datetime.date
    applications: list[tuple[str, Decimal]] = field(default_factory=list)

    @classmethod
    def parse(cls, body: Any) -> "ApplicationRequest":
        body = _require_object(body)
        errors: dict[str, list[str]] = {}
        date = parse_date(body.get("date"), "date", errors)
        raw = body.get("applications")
        applications: list[tuple[str, Decimal]] = []
        if not isinstance(raw, list) or not raw:
            errors["applications"] = ["must be a list of 1 or more {invno, amount}"]
            raw = []
        seen: set[str] = set()
        for i, app in enumerate(raw):
            prefix = f"applications.{i}"
            if not isinstance(app, dict):
                errors[prefix] = ["must be an object {invno, amount}"]
                continue
            invno = parse_key(
                app.get("invno"), f"{prefix}.invno", keys.pad_invno, errors
            )
            amount = parse_money(app.get("amount"), f"{prefix}.amount", errors)
            if f"{prefix}.amount" not in errors and amount <= ZERO:
                errors[f"{prefix}.amount"] = ["must be greater than 0.00"]
            if invno and invno in seen:
                errors[f"{prefix}.invno"] = ["invoice is listed more than once"]
            seen.add(invno)
            applications.append((invno, amount))
        if errors:
            raise ValidationError(errors)
        return cls(date, applications)

    def fingerprint(self, rcptno: str) -> str:
        return _fingerprint(
            "applications",
            rcptno.strip(),
            self.date.isoformat(),
            [[invno.strip(), str(amount)] for invno, amount in self.applications],
        )

    def total(self) -> Decimal:
        return sum((amount for _, amount in self.applications), ZERO)


def apply_unapplied_cash(
    company: SycComp, receipt_no: str, idempotency_key: str, body: Any
) -> tuple[UnappliedApplication, bool]:
    """Apply some of a receipt's unapplied cash to open invoices of its customer.

    The rules of a receipt's own applications (§4.3 steps 7-9) against the receipt's
    unapplied amount: Σ requested > unapplied -> OVER_APPLICATION; each invoice live,
    the customer's and open; at most its balance applied, the rest stays unapplied.
    """
    key = _check_idempotency_key(idempotency_key)
    request = ApplicationRequest.parse(body)
    rcptno = _receipt_key(receipt_no)
    fingerprint = request.fingerprint(rcptno)
    compid = company.compid

    with transaction.atomic():
        counter = lock_counter(compid, "AR", "APPLYNO")
        existing = UnappliedApplication.objects.filter(
            company=compid, idemkey=key, deleted=False
        ).first()
        if existing is not None:
            if existing.reqhash == fingerprint:
                return existing, False
            raise _key_conflict(
                key,
                f"application {existing.applyno} of receipt {existing.rcptno.strip()}",
            )
        receipt = _lock_receipt(compid, rcptno)
        if receipt is None:
            raise GatewayError(
                404, "RECEIPT_NOT_FOUND", f"no receipt {rcptno.strip()!r}"
            )
        if receipt.reversed:
            raise refuse(
                "RECEIPT_REVERSED",
                f"receipt {rcptno.strip()} was reversed on "
                f"{receipt.revdate.isoformat()}: it has no cash to apply",
            )
        check_period(company, request.date)
        if request.total() > receipt.unapplied:
            raise refuse(
                "OVER_APPLICATION",
                f"applications total {request.total()} exceeds the unapplied amount "
                f"{receipt.unapplied} of receipt {rcptno.strip()}",
            )
        customer = _lock_customer_key(compid, receipt.custno)
        plan = _plan_applications(
            compid,
            ReceiptRequest(
                receipt.custno,
                request.date,
                receipt.unapplied,
                receipt.paymeth,
                receipt.reference,
                request.applications,
            ),
        )
        group = _write_application(
            compid, counter, key, fingerprint, request, receipt, plan
        )
        customer.recompute_balance()
    return group, True


def _write_application(
    compid: str,
    counter: SysData,
    key: str,
    fingerprint: str,
    request: ApplicationRequest,
    receipt: CashReceipt,
    plan: list[Application],
) -> UnappliedApplication:
    applied_total = sum((applied for _, _, applied in plan), ZERO)
    number = counter.take_next(
        lambda n: UnappliedApplication.objects.filter(
            company=compid, applyno=n
        ).exists()
    )
    group = UnappliedApplication.objects.create(
        company=compid,
        applyno=number,
        rcptno=receipt.rcptno,
        custno=receipt.custno,
        appdate=request.date,
        applied=applied_total,
        idemkey=key,
        reqhash=fingerprint,
    )
    _apply_lines(compid, receipt, plan, applyno=number)
    receipt.applied += applied_total
    receipt.unapplied -= applied_total
    receipt.save(update_fields=["applied", "unapplied"])
    return group
