"""Deterministic demo data for the Sage Pro sandbox.

`seed()` is idempotent: rows are created when missing and never overwritten (so
payments posted during a demo survive a re-seed), except the fiscal calendar and the
company's current period, which are recomputed relative to today on every run.
Fiscal periods are calendar months, dated in `settings.BUSINESS_TIME_ZONE`:

    offset  -12..-4   PERMLCK (and closed)        -> PERIOD_LOCKED
    offset  -3        PCLOSED                     -> PERIOD_CLOSED
    offset  -2        PLOCKED                     -> PERIOD_LOCKED
    offset  -1, 0     open; 0 is SYCCOMP's current period
    offset  +1..+3    open but after the current  -> FUTURE_PERIOD
    anything else     no SYCDFIS row              -> PERIOD_NOT_DEFINED
"""

import datetime
import random
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import transaction
from django.utils import timezone

# The baseline company's data is shared with the on-site agent's fixture FoxPro files
# (`sagepro_agent.store.fixture.seed`); a test compares the two seeds row for row.
from sagepro_agent.store.fixture.seed import (
    CUSTOMERS,
    FIRST_INVNO,
    GL_ACCOUNTS,
    INVOICED,
    OPEN_INVOICE_COUNT,
    PERIOD_OFFSETS,
    RANDOM_SEED,
)

from . import keys, ledger
from .models import (
    CENT,
    ZERO,
    ArCust,
    ArMast,
    GlAcnt,
    GlStru,
    SycComp,
    SycDfis,
    SysData,
)
from .orders_models import ITEM_WIDTH, LOCTID_WIDTH, IcIloc, IcItem, IcLoct


def today() -> datetime.date:
    """Today's date where the business is (the date Sage Pro users see)."""
    return timezone.localdate(timezone=ZoneInfo(settings.BUSINESS_TIME_ZONE))


def month_start(offset: int, base: datetime.date | None = None) -> datetime.date:
    base = base or today()
    index = base.year * 12 + base.month - 1 + offset
    return datetime.date(index // 12, index % 12 + 1, 1)


def period_date(offset: int, day: int = 15) -> datetime.date:
    """A date `offset` months from the current period (0 = this month)."""
    return month_start(offset).replace(day=day)


def period_flags(offset: int) -> dict[str, bool]:
    return {
        "pclosed": offset <= -3,
        "plocked": offset == -2,
        "permlck": offset <= -4,
    }


# invno, custno, invamt, paidamt, artype, invdte, deleted
InvoiceRow = tuple[str, str, Decimal, Decimal, str, datetime.date, bool]


def seed(company: str = "01") -> dict[str, int]:
    """Create the demo company; return how many rows of each kind were created."""
    rng = random.Random(RANDOM_SEED)
    now = today()
    with transaction.atomic():
        created = {
            "company": _seed_company(company, now),
            "periods": _seed_periods(company, now),
            "gl_accounts": _seed_gl_accounts(company),
            "customers": _seed_customers(company, rng),
        }
        rows = _invoice_rows(rng, now)
        created["invoices"] = _seed_invoices(company, rows)
        created["items"] = _seed_items(company)
        created["locations"] = _seed_locations(company)
        _seed_counters(company, next_invno=FIRST_INVNO + len(rows))
        # Locked before any write, the order every write path keeps (the change
        # counter is always the last lock taken).
        for customer in ArCust.objects.select_for_update().filter(company=company):
            customer.recompute_balance()
    return created


def _seed_company(company: str, now: datetime.date) -> int:
    """SYCCOMP, its current period always today's month."""
    _, made = SycComp.objects.update_or_create(
        compid=company,
        defaults={
            "compname": "Sandbox Trading Co",
            "curyr": f"{now.year:04d}",
            "curprd": f"{now.month:02d}",
            "deleted": False,
        },
    )
    return int(made)


def _seed_periods(company: str, now: datetime.date) -> int:
    """The fiscal calendar around today (see the module docstring)."""
    created = 0
    for offset in PERIOD_OFFSETS:
        start = month_start(offset, now)
        end = month_start(offset + 1, now) - datetime.timedelta(days=1)
        _, made = SycDfis.objects.update_or_create(
            compid=company,
            yearprd=f"{start.year:04d}{start.month:02d}",
            defaults={"bdate": start, "edate": end, **period_flags(offset)},
        )
        created += made
    return created


def reset_periods(company: str = "01") -> None:
    """Set the fiscal calendar back to what `seed()` makes it (the demo opens the
    periods of its seeded past while it posts into them)."""
    with transaction.atomic():
        _seed_periods(company, today())


def _seed_gl_accounts(company: str) -> int:
    """The account structure (XXXX-XX) and the chart of accounts."""
    for segid, mask in (("1", "XXXX"), ("2", "XX")):
        GlStru.objects.get_or_create(
            compid=company,
            segid=segid,
            defaults={"seglen": len(mask), "segmask": mask},
        )
    created = 0
    for glacnt, gldesc, glstat, deleted in GL_ACCOUNTS:
        _, made = GlAcnt.objects.get_or_create(
            company=company,
            glacnt=glacnt,
            defaults={"gldesc": gldesc, "glstat": glstat, "deleted": deleted},
        )
        created += made
    return created


def _seed_customers(company: str, rng: random.Random) -> int:
    created = 0
    for custno, name, city, state, credstat in CUSTOMERS:
        _, made = ArCust.objects.get_or_create(
            company=company,
            custno=keys.pad_custno(custno),
            defaults={
                "name": name,
                "contact": "Accounts Payable",
                "address1": f"{rng.randint(100, 9999)} Main St",
                "city": city,
                "state": state,
                "country": "USA",
                "phone": f"555-01{rng.randint(10, 99)}",
                "email": f"ap@{custno.lower()}.example",
                "pterms": "Net 30",
                "credlimit": Decimal(rng.choice([5000, 10000, 25000])),
                "aracct": "1200-00",
                "credstat": credstat,
            },
        )
        created += made
    return created


def _invoice_rows(rng: random.Random, now: datetime.date) -> list[InvoiceRow]:
    """The open invoices (round robin over INVOICED), then three special rows."""
    rows: list[InvoiceRow] = []
    for i in range(OPEN_INVOICE_COUNT):
        invamt = (Decimal(rng.randint(2_500, 250_000)) / 100).quantize(CENT)
        # Every fifth invoice is partially paid.
        paidamt = (invamt * Decimal("0.30")).quantize(CENT) if i % 5 == 2 else ZERO
        rows.append(
            (
                str(FIRST_INVNO + i),
                INVOICED[i % len(INVOICED)],
                invamt,
                paidamt,
                "",
                now - datetime.timedelta(days=rng.randint(1, 75)),
                False,
            )
        )
    n = FIRST_INVNO + OPEN_INVOICE_COUNT
    rows += [
        # Fully paid: the zero-balance customer has history but owes nothing.
        (str(n), "ZEROBL", Decimal("120.00"), Decimal("120.00"), "", now, False),
        # A credit memo: ARTYPE 'C', negative amounts.
        (str(n + 1), "IRONWD", Decimal("-75.00"), ZERO, "C", now, False),
        # A deleted row still in the file (FoxPro keeps it until PACK).
        (str(n + 2), "ACME", Decimal("300.00"), ZERO, "", now, True),
    ]
    return rows


def _seed_invoices(company: str, rows: list[InvoiceRow]) -> int:
    created = 0
    for invno, custno, invamt, paidamt, artype, invdte, deleted in rows:
        _, made = ArMast.objects.get_or_create(
            company=company,
            invno=keys.pad_invno(invno),
            defaults={
                "custno": keys.pad_custno(custno),
                "invamt": invamt,
                "paidamt": paidamt,
                "balance": invamt - paidamt,
                "artype": artype,
                "invdte": invdte,
                "ornum": f"{int(invno) + 4_043_000:>10}",
                "deleted": deleted,
            },
        )
        created += made
    return created


# item, description, price, stocked, active, on hand at MAIN, on hand at WEST
ITEMS = [
    ("WIDGET", "Widget, standard", "19.99", True, True, "120.00", "35.00"),
    ("GADGET", "Gadget, deluxe", "49.50", True, True, "40.00", "8.00"),
    ("CABLE-6FT", "Cable, 6 ft", "7.25", True, True, "500.00", "150.00"),
    ("SVC-INSTALL", "Installation service", "120.00", False, True, "", ""),
    ("OLDPART", "Discontinued part", "3.00", True, False, "2.00", ""),
]
LOCATIONS = [("MAIN", "Main warehouse"), ("WEST", "West coast warehouse")]


def _seed_items(company: str) -> int:
    """ICITEM and each stocked item's ICILOC quantities."""
    created = 0
    for item, description, price, stocked, active, main, west in ITEMS:
        created += seed_item(
            item,
            description,
            Decimal(price),
            company=company,
            service=not stocked,
            active=active,
            on_hand={"MAIN": main, "WEST": west},
        )[1]
    return created


def _seed_locations(company: str) -> int:
    return sum(
        seed_location(loctid, description, company=company)[1]
        for loctid, description in LOCATIONS
    )


def seed_item(
    item: str,
    description: str = "",
    price: Decimal | str = ZERO,
    *,
    company: str = "01",
    service: bool = False,
    active: bool = True,
    on_hand: dict[str, str] | None = None,
) -> tuple[str, bool]:
    """Create (or fetch) an item and its quantities on hand (location -> quantity,
    "" for none); return its trimmed code and whether it was created."""
    code = item.strip().upper()
    if not code or len(code) > ITEM_WIDTH:
        raise keys.InvalidKeyError(f"item must be 1 to {ITEM_WIDTH} characters")
    row, made = IcItem.objects.get_or_create(
        company=company,
        item=code.ljust(ITEM_WIDTH),
        defaults={
            "itmdesc": description or code.title(),
            "price": Decimal(price),
            "stkcode": "N" if service else "Y",
            "itmstat": "" if active else "I",
        },
    )
    for loctid, quantity in (on_hand or {}).items():
        if quantity:
            IcIloc.objects.get_or_create(
                company=company,
                item=row.item,
                loctid=loctid.strip().upper().ljust(LOCTID_WIDTH),
                defaults={"lonhand": Decimal(quantity)},
            )
    return code, made


def seed_location(
    loctid: str, description: str = "", *, company: str = "01"
) -> tuple[str, bool]:
    """Create (or fetch) a location; return its trimmed code and whether it was
    created."""
    code = loctid.strip().upper()
    if not code or len(code) > LOCTID_WIDTH:
        raise keys.InvalidKeyError(f"location must be 1 to {LOCTID_WIDTH} characters")
    _, made = IcLoct.objects.get_or_create(
        company=company,
        loctid=code.ljust(LOCTID_WIDTH),
        defaults={"locdesc": description or code.title()},
    )
    return code, made


def _seed_counters(company: str, next_invno: int) -> None:
    """SYSDATA: the receipt counter, and the invoice counter past the seeded ones."""
    SysData.objects.get_or_create(company=company, module="AR", counter="RCPTNO")
    SysData.objects.get_or_create(
        company=company, module="AR", counter="INVNO", defaults={"nextno": next_invno}
    )


def seed_customer(
    custno: str, name: str = "", *, company: str = "01", **fields: object
) -> str:
    """Create (or fetch) a customer; return its trimmed custno."""
    customer, _ = ArCust.objects.get_or_create(
        company=company,
        custno=keys.pad_custno(custno),
        defaults={"name": name or custno.title(), **fields},
    )
    return customer.custno.strip()


def seed_invoice(
    custno: str,
    invamt: Decimal | str,
    invno: str | None = None,
    *,
    company: str = "01",
    invdte: datetime.date | None = None,
    paidamt: Decimal | str = ZERO,
    artype: str = "",
    ornum: str = "",
    ponum: str = "",
) -> str:
    """Add an invoice for an existing customer; return its trimmed invno.

    `ornum` (sales order, C10) is stored right-justified as Sage Pro keeps it, `ponum`
    (the customer's PO, C20) as written; a longer one raises `keys.InvalidKeyError`.
    """
    ornum, ponum = ornum.strip(), ponum.strip()
    for name, value, width in (
        ("ornum", ornum, keys.ORNUM_WIDTH),
        ("ponum", ponum, keys.PONUM_WIDTH),
    ):
        if len(value) > width:
            raise keys.InvalidKeyError(f"{name} must be at most {width} characters")
    invoice = ledger.create_invoice(
        company,
        custno,
        Decimal(invamt),
        invdte or today(),
        invno=invno,
        paidamt=Decimal(paidamt),
        artype=artype,
        ornum=ornum.rjust(keys.ORNUM_WIDTH) if ornum else "",
        ponum=ponum,
    )
    return invoice.invno.strip()
