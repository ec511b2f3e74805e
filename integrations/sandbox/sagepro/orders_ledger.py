"""What the emulated Sage Pro does with GL batches, customers and sales orders
(docs/sagepro-gateway.md §4.10): validate the request, then write it.

As in `ledger.py`, each write runs in one transaction with the rows it changes locked,
numbers come from `SYSDATA` counters (locked, skipping used numbers, wrapping at
999999) and refusals raise `GatewayError`. A request is validated whole before
anything is read (400 `VALIDATION_ERROR` naming every bad field).

`post_gl_batch` is also the building block of other documents: a credit memo writes
its batch by calling it inside its own transaction, with no idempotency key.
"""

import datetime
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from sagepro_agent.core import validation

from . import keys, ledger
from .ledger import GatewayError, ValidationError, refuse
from .models import CENT, ZERO, ArCust, ArMast, SycComp, SysData
from .orders_models import (
    BATCHNO_WIDTH,
    ITEM_WIDTH,
    LOCTID_WIDTH,
    SO_REFERENCE_WIDTH,
    SONO_WIDTH,
    GlBatch,
    GlBatchLine,
    IcIloc,
    IcItem,
    IcLoct,
    SoAddr,
    SoMast,
    SoTran,
)

Errors = dict[str, list[str]]

SAGE_CODE_PAGE = "cp1252"
CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_BATCH_LINES = 999
MAX_ORDER_LINES = 500
FIRST_SONO = 500001  # past the seeded invoices' order numbers (4053001…)
EMAIL_WIDTH = 100
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")
CUSTNO_RE = re.compile(r"^[A-Z0-9][A-Z0-9._&-]*$")
USER = "API"
# The largest amount a DecimalField(14, 2) column holds.
MAX_AMOUNT = Decimal("999999999999.99")


# --- reading a request ------------------------------------------------------------------


def check_text(text: str, name: str, width: int, errors: Errors) -> str:
    """Refuse text too long for its column, with control characters, or outside
    Sage Pro's code page (Windows-1252)."""
    if len(text) > width:
        errors.setdefault(name, []).append(f"must be at most {width} characters")
    elif CONTROL.search(text):
        errors.setdefault(name, []).append("must not contain control characters")
    elif not text.isascii():
        try:
            text.encode(SAGE_CODE_PAGE)
        except UnicodeEncodeError:
            errors.setdefault(name, []).append(
                "has characters Sage Pro cannot store (its tables hold Windows-1252 "
                "text only)"
            )
    return text


def optional_text(value: Any, name: str, width: int, errors: Errors) -> str:
    """Optional stored text: absent or null is "", anything but a string is refused."""
    if value is None:
        return ""
    if not isinstance(value, str):
        errors.setdefault(name, []).append("must be a string")
        return ""
    return check_text(value.strip(), name, width, errors)


def required_text(value: Any, name: str, width: int, errors: Errors) -> str:
    text = optional_text(value, name, width, errors)
    if value is not None and not isinstance(value, str):
        return ""
    if not text:
        errors.setdefault(name, []).append("is required")
    return text


def optional_money(value: Any, name: str, errors: Errors) -> Decimal:
    """Optional money (absent = 0.00), never negative."""
    if value is None:
        return ZERO
    amount = ledger.parse_money(value, name, errors)
    if name not in errors and amount < ZERO:
        errors[name] = ["must be 0.00 or more"]
    return amount


def optional_bool(value: Any, name: str, default: bool, errors: Errors) -> bool:
    if value is None:
        return default
    if not isinstance(value, bool):
        errors.setdefault(name, []).append("must be true or false")
        return default
    return value


def parse_code(value: Any, name: str, width: int, errors: Errors) -> str:
    """An item or location code in a body: upper case, left-justified, padded to
    `width`. Too long is a 400; a code no row can carry simply finds nothing."""
    if not isinstance(value, str) or not value.strip():
        errors.setdefault(name, []).append("is required")
        return ""
    code = value.strip().upper()
    if len(code) > width:
        errors.setdefault(name, []).append(f"must be at most {width} characters")
        return ""
    return code.ljust(width)


def is_storable_key(key: str) -> bool:
    """False for a key no Sage Pro row can carry (control characters, text outside
    Windows-1252; the database refuses some of them in a query, so such keys are
    never looked up)."""
    if CONTROL.search(key):
        return False
    try:
        key.encode(SAGE_CODE_PAGE)
    except UnicodeEncodeError:
        return False
    return True


def pad_code(value: str, width: int) -> str | None:
    """A code from a path or a query, padded; None when it cannot exist."""
    code = value.strip().upper()
    if not code or len(code) > width or not is_storable_key(code):
        return None
    return code.ljust(width)


def fingerprint(canonical: Any) -> str:
    text = json.dumps(canonical, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def check_idempotency_key(value: str | None) -> str:
    """The key, stripped; refused when empty, too long or not storable text."""
    key = validation.check_idempotency_key(value)
    errors: Errors = {}
    check_text(key, validation.KEY_HEADER, validation.MAX_KEY_LENGTH, errors)
    if errors:
        raise ValidationError(errors)
    return key


def body_object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ValidationError({"body": ["must be a JSON object"]})
    return body


def refuse_conflict(key: str, what: str, number: str) -> GatewayError:
    return GatewayError(
        409,
        "IDEMPOTENCY_CONFLICT",
        f"Idempotency-Key {key!r} was used for a different request ({what} {number})",
    )


def take_number(
    company: str, module: str, counter: str, is_used: Callable[[int], bool], first: int
) -> int:
    """The counter's next free number (locked until the transaction ends)."""
    SysData.objects.get_or_create(
        company=company, module=module, counter=counter, defaults={"nextno": first}
    )
    return ledger.take_number(company, module, counter, is_used)


def lock_counter(company: str, module: str, counter: str, first: int) -> SysData:
    SysData.objects.get_or_create(
        company=company, module=module, counter=counter, defaults={"nextno": first}
    )
    return ledger.lock_counter(company, module, counter)


# --- GL batches ---------------------------------------------------------------------------


@dataclass(frozen=True)
class JournalLine:
    """One line of a GL batch: a debit or a credit (the other side 0.00)."""

    account: str
    debit: Decimal = ZERO
    credit: Decimal = ZERO
    memo: str = ""


@dataclass(frozen=True)
class BatchRequest:
    """A validated `POST /gl-batches` body."""

    date: datetime.date
    description: str
    reference: str
    source: str
    lines: tuple[JournalLine, ...]

    @classmethod
    def parse(cls, body: Any) -> "BatchRequest":
        body = body_object(body)
        errors: Errors = {}
        date = ledger.parse_date(body.get("date"), "date", errors)
        description = optional_text(body.get("description"), "description", 30, errors)
        reference = optional_text(body.get("reference"), "reference", 40, errors)
        source = optional_text(body.get("source"), "source", 2, errors).upper() or "GL"
        raw_lines = body.get("lines")
        lines: list[JournalLine] = []
        if not isinstance(raw_lines, list):
            errors["lines"] = ["must be a list of {account, debit, credit, memo}"]
            raw_lines = []
        elif len(raw_lines) > MAX_BATCH_LINES:
            errors["lines"] = [f"must have at most {MAX_BATCH_LINES} lines"]
            raw_lines = []
        for i, raw in enumerate(raw_lines):
            prefix = f"lines.{i}"
            if not isinstance(raw, dict):
                errors[prefix] = ["must be an object {account, debit, credit, memo}"]
                continue
            account = validation.parse_text(
                raw.get("account"), f"{prefix}.account", keys.GLACNT_WIDTH, errors
            ).upper()
            debit = optional_money(raw.get("debit"), f"{prefix}.debit", errors)
            credit = optional_money(raw.get("credit"), f"{prefix}.credit", errors)
            memo = optional_text(raw.get("memo"), f"{prefix}.memo", 30, errors)
            lines.append(JournalLine(account, debit, credit, memo))
        if errors:
            raise ValidationError(errors)
        return cls(date, description, reference, source, tuple(lines))

    def fingerprint(self) -> str:
        return fingerprint(
            [
                self.date.isoformat(),
                self.description,
                self.reference,
                self.source,
                [
                    [line.account.replace("-", ""), str(line.debit), str(line.credit)]
                    + [line.memo]
                    for line in self.lines
                ],
            ]
        )


def batch_number(number: int) -> str:
    return f"{number:0{BATCHNO_WIDTH}d}"


def post_gl_batch(
    company: SycComp,
    date: datetime.date,
    description: str,
    reference: str,
    source: str,
    lines: list[JournalLine] | tuple[JournalLine, ...],
    *,
    idempotency_key: str = "",
    request_hash: str = "",
) -> GlBatch:
    """Write an unposted GL batch (`BSTAT 'U'`); a Sage Pro user posts it.

    Usable inside a caller's transaction (a credit memo's batch): it runs in a
    savepoint and raises `GatewayError` before writing anything when
    - the batch is unbalanced, has no lines, or a line has both or neither side > 0
      (422 `BATCH_UNBALANCED`);
    - the date is outside an open, non-future period (422 `PERIOD_*`, `FUTURE_PERIOD`);
    - an account is unknown or deleted (422 `ACCOUNT_NOT_FOUND`) or inactive
      (422 `ACCOUNT_INACTIVE`); the detail names the line.
    Amounts are quantised to cents; text is cut to its column.
    """
    lines = tuple(lines)
    check_balance(lines)
    with transaction.atomic():
        period = ledger.check_period(company, date)
        accounts = [
            _line_account(company, i, line.account) for i, line in enumerate(lines)
        ]
        compid = company.compid
        number = take_number(
            compid,
            "GL",
            "BATCHNO",
            lambda n: GlBatch.objects.filter(
                company=compid, batchno=batch_number(n)
            ).exists(),
            first=1,
        )
        batch = GlBatch.objects.create(
            company=compid,
            batchno=batch_number(number),
            bdesc=description[:30],
            yearprd=period.yearprd,
            btype=(source or "GL")[:2].upper(),
            gldate=date,
            glrefr=reference[:40],
            drtotal=sum((cents(line.debit) for line in lines), ZERO),
            crtotal=sum((cents(line.credit) for line in lines), ZERO),
            idemkey=idempotency_key,
            reqhash=request_hash,
        )
        GlBatchLine.objects.bulk_create(
            GlBatchLine(
                company=compid,
                batch=batch,
                batchno=batch.batchno,
                glseqno=i + 1,
                glacnt=account,
                gldamnt=cents(line.debit),
                glcamnt=cents(line.credit),
                credit=line.credit > ZERO,
                gltdes=line.memo[:30],
                adddate=batch.adddate,
                addtime=batch.addtime,
            )
            for i, (line, account) in enumerate(zip(lines, accounts, strict=True))
        )
    return batch


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def check_balance(lines: tuple[JournalLine, ...]) -> None:
    if not lines:
        raise refuse("BATCH_UNBALANCED", "a GL batch needs at least two lines")
    for i, line in enumerate(lines):
        if line.debit < ZERO or line.credit < ZERO:
            raise refuse("BATCH_UNBALANCED", f"lines.{i} has a negative amount")
        if (line.debit > ZERO) == (line.credit > ZERO):
            raise refuse(
                "BATCH_UNBALANCED",
                f"lines.{i} must have either a debit or a credit greater than 0.00 "
                f"(debit {line.debit}, credit {line.credit})",
            )
    debits = sum((cents(line.debit) for line in lines), ZERO)
    credits = sum((cents(line.credit) for line in lines), ZERO)
    if max(debits, credits) > MAX_AMOUNT:
        raise ValidationError({"lines": [f"the batch total exceeds {MAX_AMOUNT}"]})
    if debits != credits:
        raise refuse(
            "BATCH_UNBALANCED",
            f"debits {debits} do not equal credits {credits} "
            f"(difference {debits - credits})",
        )


def _line_account(company: SycComp, index: int, account: str) -> str:
    if not account.strip() or not is_storable_key(account):
        raise refuse("ACCOUNT_NOT_FOUND", f"lines.{index}.account: no GL account ''")
    try:
        return ledger.check_gl_account(company, account)
    except GatewayError as exc:
        raise GatewayError(
            exc.status, exc.code, f"lines.{index}.account: {exc.detail}"
        ) from exc


def create_gl_batch(
    company: SycComp, idempotency_key: str | None, body: Any
) -> tuple[GlBatch, bool]:
    """`POST /gl-batches`: the batch and whether it was created (False = replay)."""
    key = check_idempotency_key(idempotency_key)
    request = BatchRequest.parse(body)
    digest = request.fingerprint()
    compid = company.compid
    with transaction.atomic():
        # The batch counter serialises batch posts, so the key check cannot race.
        lock_counter(compid, "GL", "BATCHNO", first=1)
        existing = GlBatch.objects.filter(
            company=compid, idemkey=key, deleted=False
        ).first()
        if existing is not None:
            if existing.reqhash == digest:
                return existing, False
            raise refuse_conflict(key, "GL batch", existing.batchno)
        batch = post_gl_batch(
            company,
            request.date,
            request.description,
            request.reference,
            request.source,
            request.lines,
            idempotency_key=key,
            request_hash=digest,
        )
    return batch, True


def get_gl_batch(company: SycComp, batch_no: str) -> GlBatch:
    number = batch_no.strip()
    batch = None
    if number.isascii() and number.isdigit() and len(number) <= BATCHNO_WIDTH:
        batch = GlBatch.objects.filter(
            company=company.compid, batchno=number.zfill(BATCHNO_WIDTH), deleted=False
        ).first()
    if batch is None:
        raise GatewayError(
            404, "BATCH_NOT_FOUND", f"no GL batch {number[: BATCHNO_WIDTH + 10]!r}"
        )
    return batch


def post_batch_to_ledger(company: SycComp, batch_no: str) -> GlBatch:
    """Sandbox only: a Sage Pro user posts the batch (`BSTAT 'P'`). Posting a posted
    batch again changes nothing."""
    with transaction.atomic():
        batch = get_gl_batch(company, batch_no)
        batch = GlBatch.objects.select_for_update().get(pk=batch.pk)
        if batch.bstat != GlBatch.Status.POSTED:
            batch.bstat = GlBatch.Status.POSTED
            batch.postuser = "SAGE"
            batch.postdate = timezone.localdate()
            batch.save(update_fields=["bstat", "postuser", "postdate"])
    return batch


# --- customers ------------------------------------------------------------------------------

# contract field -> (ARCUST column, width)
CUSTOMER_TEXT = {
    "company": ("name", 35),
    "contact": ("contact", 30),
    "address1": ("address1", 35),
    "address2": ("address2", 35),
    "city": ("city", 20),
    "state": ("state", 10),
    "zip": ("zip", 10),
    "country": ("country", 15),
    "phone": ("phone", 20),
    "email": ("email", EMAIL_WIDTH),
    "terms": ("pterms", 20),
    "credit_status": ("credstat", 1),
}


def parse_custno_for_write(custno: str) -> str:
    key = custno.strip().upper()
    if not key or len(key) > keys.CUSTNO_WIDTH or not CUSTNO_RE.match(key):
        raise ValidationError(
            {
                "custno": [
                    f"customer number must be 1 to {keys.CUSTNO_WIDTH} letters, digits "
                    "or . _ & -"
                ]
            }
        )
    return key.ljust(keys.CUSTNO_WIDTH)


def parse_customer(body: Any) -> dict[str, str]:
    """The ARCUST columns a `PUT /customers/{custno}` body sets (fields absent from
    the body are left out, so an update keeps them)."""
    body = body_object(body)
    errors: Errors = {}
    unknown = sorted(set(body) - set(CUSTOMER_TEXT) - {"custno"})
    if unknown:
        errors["body"] = [f"unknown fields: {', '.join(unknown)[:200]}"]
    values: dict[str, str] = {}
    for name, (column, width) in CUSTOMER_TEXT.items():
        if name not in body:
            continue
        text = optional_text(body[name], name, width, errors)
        if name == "email" and text and not EMAIL_RE.match(text):
            errors.setdefault(name, []).append("must be an e-mail address")
        if name == "credit_status":
            text = text.upper()
            if text not in ("", "H"):
                errors.setdefault(name, []).append('must be "" or "H" (on hold)')
        values[column] = text
    if errors:
        raise ValidationError(errors)
    return values


def put_customer(company: SycComp, custno: str, body: Any) -> tuple[ArCust, bool]:
    """Create or update an ARCUST row; return it and whether it was created.

    A new customer needs a name (`company`); a deleted one is brought back as new.
    Each write stamps the customer's change number (the feed sees it)."""
    key = parse_custno_for_write(custno)
    values = parse_customer(body)
    compid = company.compid
    for _ in range(2):  # a concurrent create of the same key: the second one updates
        try:
            with transaction.atomic():
                return _write_customer(compid, key, values)
        except IntegrityError:
            continue
    raise GatewayError(409, "RECORD_CONFLICT", f"customer {key.strip()!r} is busy")


def _write_customer(
    compid: str, key: str, values: dict[str, str]
) -> tuple[ArCust, bool]:
    customer = (
        ArCust.objects.select_for_update().filter(company=compid, custno=key).first()
    )
    created = customer is None or customer.deleted
    if created and not values.get("name"):
        raise ValidationError({"company": ["is required for a new customer"]})
    if customer is None:
        customer = ArCust(company=compid, custno=key, adduser=USER)
    elif customer.deleted:
        # Brought back: the old row's text is not this customer's.
        for column, _ in CUSTOMER_TEXT.values():
            setattr(customer, column, "")
        customer.deleted = False
    for column, text in values.items():
        setattr(customer, column, text)
    customer.save()
    if created:
        customer.recompute_balance()
    return customer, created


def find_customers_by_email(company: SycComp, email: str) -> list[ArCust]:
    errors: Errors = {}
    text = check_text(email.strip(), "email", EMAIL_WIDTH, errors)
    if not text:
        errors.setdefault("email", []).append("must not be empty")
    if errors:
        raise ValidationError(errors)
    return list(
        ArCust.objects.filter(
            company=company.compid, deleted=False, email__iexact=text
        ).order_by("custno")
    )


# --- items and locations ------------------------------------------------------------------


def on_hand(company: str, item: str) -> Decimal:
    total = IcIloc.objects.filter(company=company, item=item, deleted=False).aggregate(
        total=Sum("lonhand")
    )["total"]
    return total or ZERO


def get_item(company: SycComp, item: str) -> IcItem:
    code = pad_code(item, ITEM_WIDTH)
    row = None
    if code is not None:
        row = IcItem.objects.filter(
            company=company.compid, item=code, deleted=False
        ).first()
    if row is None:
        raise GatewayError(404, "ITEM_NOT_FOUND", f"no item {item.strip()[:40]!r}")
    return row


# --- sales orders --------------------------------------------------------------------------


@dataclass(frozen=True)
class OrderLine:
    item: str  # padded
    description: str
    quantity: Decimal
    price: Decimal | None  # None: the item's price
    location: str  # padded, "" = none
    taxable: bool


@dataclass(frozen=True)
class OrderRequest:
    """A validated `POST /sales-orders` body, keys padded the Sage way."""

    custno: str
    date: datetime.date
    reference: str
    ponum: str
    ship_to: dict[str, str]
    lines: tuple[OrderLine, ...]
    tax: Decimal
    freight: Decimal
    invoice: bool

    @classmethod
    def parse(cls, body: Any) -> "OrderRequest":
        body = body_object(body)
        errors: Errors = {}
        custno = ledger.parse_key(body.get("custno"), "custno", keys.pad_custno, errors)
        date = ledger.parse_date(body.get("date"), "date", errors)
        reference = required_text(
            body.get("reference"), "reference", SO_REFERENCE_WIDTH, errors
        )
        ponum = optional_text(body.get("ponum"), "ponum", keys.PONUM_WIDTH, errors)
        ship_to = parse_ship_to(body.get("ship_to"), errors)
        lines = parse_order_lines(body.get("lines"), errors)
        tax = optional_money(body.get("tax"), "tax", errors)
        freight = optional_money(body.get("freight"), "freight", errors)
        invoice = optional_bool(body.get("invoice"), "invoice", False, errors)
        if errors:
            raise ValidationError(errors)
        return cls(
            custno, date, reference, ponum, ship_to, lines, tax, freight, invoice
        )

    def fingerprint(self) -> str:
        return fingerprint(
            [
                self.custno.strip(),
                self.date.isoformat(),
                self.reference,
                self.ponum,
                sorted(self.ship_to.items()),
                [
                    [
                        line.item.strip(),
                        line.description,
                        str(line.quantity),
                        "" if line.price is None else str(line.price),
                        line.location.strip(),
                        line.taxable,
                    ]
                    for line in self.lines
                ],
                str(self.tax),
                str(self.freight),
                self.invoice,
            ]
        )


SHIP_TO = {
    "name": 35,
    "address1": 35,
    "address2": 35,
    "city": 20,
    "state": 10,
    "zip": 10,
    "country": 15,
}


def parse_ship_to(value: Any, errors: Errors) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        errors["ship_to"] = ["must be an object {name, address1, …}"]
        return {}
    unknown = sorted(set(value) - set(SHIP_TO))
    if unknown:
        errors["ship_to"] = [f"unknown fields: {', '.join(unknown)[:200]}"]
    return {
        name: optional_text(value.get(name), f"ship_to.{name}", width, errors)
        for name, width in SHIP_TO.items()
    }


def parse_order_lines(value: Any, errors: Errors) -> tuple[OrderLine, ...]:
    if not isinstance(value, list) or not value:
        errors["lines"] = ["must be a non-empty list of {item, quantity, price, …}"]
        return ()
    if len(value) > MAX_ORDER_LINES:
        errors["lines"] = [f"must have at most {MAX_ORDER_LINES} lines"]
        return ()
    lines = []
    for i, raw in enumerate(value):
        prefix = f"lines.{i}"
        if not isinstance(raw, dict):
            errors[prefix] = ["must be an object {item, quantity, price, …}"]
            continue
        item = parse_code(raw.get("item"), f"{prefix}.item", ITEM_WIDTH, errors)
        description = optional_text(
            raw.get("description"), f"{prefix}.description", 50, errors
        )
        quantity = ledger.parse_money(raw.get("quantity"), f"{prefix}.quantity", errors)
        if f"{prefix}.quantity" not in errors and quantity <= ZERO:
            errors[f"{prefix}.quantity"] = ["must be greater than 0.00"]
        price = None
        if raw.get("price") is not None:
            price = optional_money(raw.get("price"), f"{prefix}.price", errors)
        location = ""
        if raw.get("location") not in (None, ""):
            location = parse_code(
                raw.get("location"), f"{prefix}.location", LOCTID_WIDTH, errors
            )
        taxable = optional_bool(raw.get("taxable"), f"{prefix}.taxable", True, errors)
        lines.append(OrderLine(item, description, quantity, price, location, taxable))
    return tuple(lines)


def sono_key(number: int) -> str:
    return str(number).rjust(SONO_WIDTH)


def post_sales_order(
    company: SycComp, idempotency_key: str | None, body: Any
) -> tuple[SoMast, bool]:
    """Write a sales order (and, with `invoice: true`, its ARMAST invoice).

    In one transaction: lock the order counter (serialises order posts); same key and
    request → replay, another request → 409; reference on another live order → 409
    `DUPLICATE_SALES_ORDER`; customer exists and is not on hold; the date's period is
    open; every item exists and is active, every location exists (the detail names
    the line); then number and write the order, its lines and ship-to, and the
    invoice (`ORNUM` = SONO, `INVAMT` = total, ARCUST.BALANCE recomputed).
    """
    key = check_idempotency_key(idempotency_key)
    request = OrderRequest.parse(body)
    digest = request.fingerprint()
    compid = company.compid
    with transaction.atomic():
        counter = lock_counter(compid, "SO", "SONO", first=FIRST_SONO)
        live = SoMast.objects.filter(company=compid, deleted=False)
        existing = live.filter(idemkey=key).first()
        if existing is not None:
            if existing.reqhash == digest:
                return existing, False
            raise refuse_conflict(key, "sales order", existing.sono.strip())
        duplicate = live.filter(ref=request.reference).first()
        if duplicate is not None:
            raise GatewayError(
                409,
                "DUPLICATE_SALES_ORDER",
                f"reference {request.reference!r} is already on sales order "
                f"{duplicate.sono.strip()}",
            )
        customer = None
        if is_storable_key(request.custno):
            customer = (
                ArCust.objects.select_for_update()
                .filter(company=compid, custno=request.custno, deleted=False)
                .first()
            )
        if customer is None:
            raise refuse(
                "CUSTOMER_NOT_FOUND", f"no customer {request.custno.strip()!r}"
            )
        if customer.credstat.strip().upper() == "H":
            raise refuse(
                "CUSTOMER_ON_HOLD",
                f"customer {request.custno.strip()!r} is on credit hold",
            )
        ledger.check_period(company, request.date)
        items = _check_items(compid, request.lines)
        price_lines(request, items)  # refuse amounts too large before numbering
        number = counter.take_next(
            lambda n: (
                SoMast.objects.filter(company=compid, sono=sono_key(n)).exists()
                or ArMast.objects.filter(company=compid, ornum=sono_key(n)).exists()
            )
        )
        order = _write_order(compid, sono_key(number), key, digest, request, items)
        if request.invoice:
            invoice = ledger.create_invoice(
                compid,
                request.custno,
                order.total,
                request.date,
                ornum=order.sono,
                ponum=request.ponum,
            )
            order.invno = invoice.invno
            order.sostat = "I"
            order.save(update_fields=["invno", "sostat"])
    return order, True


def _check_items(compid: str, lines: tuple[OrderLine, ...]) -> dict[str, IcItem]:
    items = {
        row.item: row
        for row in IcItem.objects.filter(
            company=compid,
            deleted=False,
            item__in=[line.item for line in lines if is_storable_key(line.item)],
        )
    }
    locations = set(
        IcLoct.objects.filter(
            company=compid,
            deleted=False,
            loctid__in=[
                line.location
                for line in lines
                if line.location and is_storable_key(line.location)
            ],
        ).values_list("loctid", flat=True)
    )
    for i, line in enumerate(lines):
        item = items.get(line.item)
        if item is None:
            raise refuse(
                "ITEM_NOT_FOUND", f"lines.{i}.item: no item {line.item.strip()!r}"
            )
        if not item.is_active():
            raise refuse(
                "ITEM_NOT_FOUND",
                f"lines.{i}.item: item {line.item.strip()!r} is inactive",
            )
        if line.location and line.location not in locations:
            raise refuse(
                "LOCATION_NOT_FOUND",
                f"lines.{i}.location: no location {line.location.strip()!r}",
            )
    return items


def price_lines(
    request: OrderRequest, items: dict[str, IcItem]
) -> tuple[list[tuple[OrderLine, Decimal]], list[Decimal]]:
    """Each line with its price, and its extended amount (half-up to cents); an
    amount too large for Sage Pro's columns is refused naming the line."""
    priced = [
        (line, line.price if line.price is not None else items[line.item].price)
        for line in request.lines
    ]
    extended = [cents(line.quantity * price) for line, price in priced]
    errors: Errors = {}
    for i, amount in enumerate(extended):
        if amount > MAX_AMOUNT:
            errors[f"lines.{i}.quantity"] = [f"quantity × price exceeds {MAX_AMOUNT}"]
    if not errors and sum(extended, ZERO) + request.tax + request.freight > MAX_AMOUNT:
        errors["total"] = [f"the order total exceeds {MAX_AMOUNT}"]
    if errors:
        raise ValidationError(errors)
    return priced, extended


def _write_order(
    compid: str,
    sono: str,
    key: str,
    digest: str,
    request: OrderRequest,
    items: dict[str, IcItem],
) -> SoMast:
    priced, extended = price_lines(request, items)
    order = SoMast.objects.create(
        company=compid,
        sono=sono,
        custno=request.custno,
        sodate=request.date,
        ref=request.reference,
        ponum=request.ponum,
        ordamt=sum(extended, ZERO),
        tax=request.tax,
        shpamt=request.freight,
        idemkey=key,
        reqhash=digest,
        adduser=USER,
    )
    SoTran.objects.bulk_create(
        SoTran(
            company=compid,
            order=order,
            sono=sono,
            lineno=i + 1,
            custno=request.custno,
            item=line.item,
            descrip=(line.description or items[line.item].itmdesc)[:50],
            qtyord=line.quantity,
            price=price,
            extprice=ext,
            loctid=line.location,
            taxable="Y" if line.taxable else "N",
            adduser=USER,
            adddate=order.adddate,
            addtime=order.addtime,
        )
        for i, ((line, price), ext) in enumerate(zip(priced, extended, strict=True))
    )
    SoAddr.objects.create(
        company=compid, order=order, sono=sono, custno=request.custno, **request.ship_to
    )
    return order


def get_sales_order(company: SycComp, sono: str) -> SoMast:
    number = sono.strip().upper()
    order = None
    if number and len(number) <= SONO_WIDTH and not CONTROL.search(number):
        order = SoMast.objects.filter(
            company=company.compid, sono=number.rjust(SONO_WIDTH), deleted=False
        ).first()
    if order is None:
        raise GatewayError(
            404, "SALES_ORDER_NOT_FOUND", f"no sales order {number[:20]!r}"
        )
    return order
