"""Sage Pro's tables, as the sandbox stores them.

One Django model per Sage Pro table (see docs/sagepro-gateway.md §6),
with a 2-character `company` column instead of one table per company (`ARCUST01`).
Columns follow Sage's habits: fixed-width character keys stored padded, no NULLs
(blank strings, zeros and `EMPTY_DATE` instead), money in Currency-like decimals, and a
`deleted` flag that every read must exclude (FoxPro keeps deleted rows until a pack).
"""

import datetime
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from . import keys

# FoxPro's empty date `{}`; the columns never hold NULL.
EMPTY_DATE = datetime.date(1, 1, 1)
ZERO = Decimal("0.00")
CENT = Decimal("0.01")
COUNTER_WRAP = 999_999
# The SYSDATA counter that numbers every change to ARMAST and ARCUST (change feeds).
CHANGE_COUNTER = ("AR", "CHANGESEQ")


def money_field(**kwargs: Any) -> models.DecimalField:
    return models.DecimalField(max_digits=14, decimal_places=2, default=ZERO, **kwargs)


class SageRow(models.Model):
    """Columns every Sage Pro table carries: company, audit stamp, soft delete."""

    company = models.CharField(max_length=2, default="01", db_index=True)
    adduser = models.CharField(max_length=4, default="API", blank=True)
    adddate = models.DateField(default=EMPTY_DATE)
    addtime = models.CharField(max_length=8, default="", blank=True)
    deleted = models.BooleanField(default=False)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.adddate == EMPTY_DATE:
            stamp = timezone.localtime()
            self.adddate = stamp.date()
            self.addtime = stamp.strftime("%H:%M:%S")
        super().save(*args, **kwargs)


def next_change_number(company: str) -> int:
    """Take the company's next change number and keep its counter locked.

    The counter row stays locked until the caller's transaction ends, so numbers are
    handed out in commit order: a feed reader never meets a number committed after a
    higher one it has already passed. Callers lock the rows they change *before*
    taking a number (every write path does), so the counter is always the last lock.
    """
    module, name = CHANGE_COUNTER
    rows = SysData.objects.select_for_update().filter(
        company=company, module=module, counter=name
    )
    counter = rows.first()
    if counter is None:
        SysData.objects.get_or_create(company=company, module=module, counter=name)
        counter = rows.get()
    number = counter.nextno
    rows.update(nextno=number + 1)
    return number


class ChangeStampedQuerySet(models.QuerySet):
    """`.update()` stamps a new change number on the rows it changes."""

    def update(self, **kwargs: Any) -> int:
        if "changeseq" in kwargs:
            return super().update(**kwargs)
        with transaction.atomic(using=self.db, savepoint=False):
            # Lock the rows first, then the counter: the order every write path uses.
            companies = sorted(
                set(self.select_for_update().values_list("company", flat=True))
            )
            return sum(
                self.filter(company=company).update(
                    changeseq=next_change_number(company), **kwargs
                )
                for company in companies
            )


class ChangeStamped(SageRow):
    """A row the change feeds serve (`GET /invoices?changed_since=…`).

    Every save takes a new `changeseq` from the company's counter, and so does every
    `.update()` of a subclass whose manager is a `ChangeStampedQuerySet` (keep it so);
    rows written another way (`bulk_create`) keep 0 and are still part of a full
    listing.
    """

    changeseq = models.BigIntegerField(default=0, editable=False)

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        with transaction.atomic(using=kwargs.get("using"), savepoint=False):
            self.changeseq = next_change_number(self.company)
            if kwargs.get("update_fields") is not None:
                kwargs["update_fields"] = {*kwargs["update_fields"], "changeseq"}
            super().save(*args, **kwargs)


class SycComp(models.Model):
    """`SYCCOMP`: the company list and each company's current fiscal period."""

    compid = models.CharField(max_length=2, unique=True)
    compname = models.CharField(max_length=35, default="", blank=True)
    curyr = models.CharField(max_length=4, default="", blank=True)
    curprd = models.CharField(max_length=2, default="", blank=True)
    deleted = models.BooleanField(default=False)

    class Meta:
        db_table = "sandbox_sagepro_syccomp"
        verbose_name = "SYCCOMP company"

    def __str__(self) -> str:
        return f"{self.compid} {self.compname}".strip()

    def current_yearprd(self) -> str:
        return f"{self.curyr}{self.curprd}"


class SycDfis(models.Model):
    """`SYCDFIS`: fiscal period detail, one row per company and `YEARPRD` (YYYYPP)."""

    compid = models.CharField(max_length=2)
    yearprd = models.CharField(max_length=6)
    bdate = models.DateField()
    edate = models.DateField()
    pclosed = models.BooleanField(default=False)
    plocked = models.BooleanField(default=False)
    permlck = models.BooleanField(default=False)
    deleted = models.BooleanField(default=False)

    class Meta:
        db_table = "sandbox_sagepro_sycdfis"
        verbose_name = "SYCDFIS fiscal period"
        ordering = ["compid", "yearprd"]
        constraints = [
            models.UniqueConstraint(
                fields=["compid", "yearprd"], name="sagepro_sycdfis_unique_period"
            )
        ]

    def __str__(self) -> str:
        return f"{self.compid} {self.yearprd} ({self.bdate}..{self.edate})"

    def refusal(self, current_yearprd: str) -> tuple[str, str] | None:
        """Say why a document dated in this period may not be posted, or None.

        Order matters: a permanently locked period is usually closed as well, and the
        lock is the stronger reason.
        """
        if self.permlck or self.plocked:
            kind = "permanently locked" if self.permlck else "locked"
            return "PERIOD_LOCKED", f"period {self.yearprd} is {kind}"
        if self.pclosed:
            return "PERIOD_CLOSED", f"period {self.yearprd} is closed"
        if current_yearprd and self.yearprd > current_yearprd:
            return (
                "FUTURE_PERIOD",
                f"period {self.yearprd} is after the current period {current_yearprd}",
            )
        return None


class GlStru(models.Model):
    """`GLSTRU`: account segments; the display mask is the segment masks joined by `-`."""

    compid = models.CharField(max_length=2)
    segid = models.CharField(max_length=1)
    seglen = models.PositiveSmallIntegerField(default=0)
    segmask = models.CharField(max_length=24, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_glstru"
        verbose_name = "GLSTRU account segment"
        ordering = ["compid", "segid"]
        constraints = [
            models.UniqueConstraint(
                fields=["compid", "segid"], name="sagepro_glstru_unique_segment"
            )
        ]

    def __str__(self) -> str:
        return f"{self.compid} segment {self.segid}: {self.segmask}"

    @classmethod
    def mask_for(cls, company: str) -> str:
        masks = cls.objects.filter(compid=company).values_list("segmask", flat=True)
        return "-".join(masks) or "XXXX-XX"


class GlAcnt(SageRow):
    """`GLACNT`: chart of accounts. `GLSTAT = 'I'` marks an inactive account."""

    glacnt = models.CharField(max_length=keys.GLACNT_WIDTH)
    gldesc = models.CharField(max_length=30, default="", blank=True)
    glstat = models.CharField(max_length=1, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_glacnt"
        verbose_name = "GLACNT account"
        ordering = ["company", "glacnt"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "glacnt"], name="sagepro_glacnt_unique_account"
            )
        ]

    def __str__(self) -> str:
        return f"{self.glacnt} {self.gldesc}"

    def is_active(self) -> bool:
        return self.glstat != "I" and not self.deleted


class ArCust(ChangeStamped):
    """`ARCUST`: customers. Sage's `COMPANY` column (the name) is `name` here."""

    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    name = models.CharField("COMPANY (name)", max_length=35, default="", blank=True)
    contact = models.CharField(max_length=30, default="", blank=True)
    address1 = models.CharField(max_length=35, default="", blank=True)
    address2 = models.CharField(max_length=35, default="", blank=True)
    city = models.CharField(max_length=20, default="", blank=True)
    state = models.CharField(max_length=10, default="", blank=True)
    zip = models.CharField(max_length=10, default="", blank=True)
    country = models.CharField(max_length=15, default="", blank=True)
    phone = models.CharField(max_length=20, default="", blank=True)
    email = models.TextField(default="", blank=True)
    pterms = models.CharField(max_length=20, default="", blank=True)
    balance = money_field()
    credlimit = money_field()
    lastpay = models.DateField(default=EMPTY_DATE)
    lpymt = money_field()
    aracct = models.CharField(max_length=keys.GLACNT_WIDTH, default="", blank=True)
    currency = models.CharField(max_length=3, default="USD")
    credstat = models.CharField(max_length=1, default="", blank=True)
    custstat = models.CharField(max_length=1, default="A", blank=True)

    objects = ChangeStampedQuerySet.as_manager()

    class Meta:
        db_table = "sandbox_sagepro_arcust"
        verbose_name = "ARCUST customer"
        ordering = ["company", "custno"]
        indexes = [models.Index(fields=["company", "changeseq", "id"])]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "custno"], name="sagepro_arcust_unique_custno"
            )
        ]

    def __str__(self) -> str:
        return f"{self.custno.strip()} {self.name}"

    def recompute_balance(self) -> None:
        """Set `BALANCE` to the sum of the customer's open (live) invoice balances."""
        total = ArMast.objects.filter(
            company=self.company, custno=self.custno, deleted=False
        ).aggregate(total=Sum("balance"))["total"]
        self.balance = total or ZERO
        self.save(update_fields=["balance"])


class ArMastQuerySet(ChangeStampedQuerySet):
    def live(self) -> "ArMastQuerySet":
        return self.filter(deleted=False)

    def open(self) -> "ArMastQuerySet":
        return self.live().exclude(balance=ZERO)


class ArMast(ChangeStamped):
    """`ARMAST`: invoice and credit-memo headers. `BALANCE = INVAMT - PAIDAMT`."""

    invno = models.CharField(max_length=keys.INVNO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    invdte = models.DateField(default=EMPTY_DATE)
    invamt = money_field()
    paidamt = money_field()
    balance = money_field()
    artype = models.CharField(max_length=1, default="", blank=True)
    arstat = models.CharField(max_length=1, default="", blank=True)
    ornum = models.CharField(max_length=keys.ORNUM_WIDTH, default="", blank=True)
    ponum = models.CharField(max_length=keys.PONUM_WIDTH, default="", blank=True)

    objects = ArMastQuerySet.as_manager()

    class Meta:
        db_table = "sandbox_sagepro_armast"
        verbose_name = "ARMAST invoice"
        ordering = ["company", "invno"]
        indexes = [
            models.Index(fields=["company", "custno"]),
            models.Index(fields=["company", "changeseq", "id"]),
        ]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "invno"], name="sagepro_armast_unique_invno"
            )
        ]

    def __str__(self) -> str:
        return f"{self.invno.strip()} {self.custno.strip()} {self.balance}"

    def is_open(self) -> bool:
        return not self.deleted and self.balance != ZERO

    def apply_payment(self, amount: Decimal) -> None:
        """Add `amount` to `PAIDAMT` and keep `BALANCE = INVAMT - PAIDAMT`."""
        self.paidamt += amount
        self.balance = self.invamt - self.paidamt
        self.save(update_fields=["paidamt", "balance"])


class CashReceipt(SageRow):
    """A cash receipt header. Sage Pro's real receipt table name is unverified.

    `reference` holds the PayTrace transaction id and `idemkey` the caller's
    Idempotency-Key; while a receipt is live both are unique per company. `reqhash` is
    the hash of the normalised request that created it, to tell a replay from a
    conflicting reuse of the key.
    """

    rcptno = models.CharField(max_length=keys.RECEIPT_NO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    paydate = models.DateField()
    amount = money_field()
    applied = money_field()
    unapplied = money_field()
    paymeth = models.CharField(max_length=10, default="", blank=True)
    reference = models.CharField(max_length=40, default="", blank=True)
    glacnt = models.CharField(max_length=keys.GLACNT_WIDTH, default="", blank=True)
    idemkey = models.CharField(max_length=100, default="", blank=True)
    reqhash = models.CharField(max_length=64, default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    # A reversal (void) gives every application back but keeps the receipt readable,
    # with its key and reference (docs/sagepro-gateway.md §4.8). `revkey`/`revhash`
    # tell a replayed reversal from another one.
    reversed = models.BooleanField(default=False)
    revdate = models.DateField(default=EMPTY_DATE)
    revreason = models.CharField(max_length=60, default="", blank=True)
    revkey = models.CharField(max_length=100, default="", blank=True)
    revhash = models.CharField(max_length=64, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_arcash"
        verbose_name = "cash receipt"
        ordering = ["company", "rcptno"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "rcptno"], name="sagepro_arcash_unique_rcptno"
            ),
            models.UniqueConstraint(
                fields=["company", "idemkey"],
                condition=Q(deleted=False),
                name="sagepro_arcash_unique_live_key",
            ),
            models.UniqueConstraint(
                fields=["company", "reference"],
                condition=Q(deleted=False),
                name="sagepro_arcash_unique_live_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"receipt {self.rcptno.strip()} {self.custno.strip()} {self.amount}"


class CashReceiptLine(SageRow):
    """One application of a receipt to an invoice (`requested` is what was asked)."""

    receipt = models.ForeignKey(
        CashReceipt, on_delete=models.PROTECT, related_name="lines"
    )
    rcptno = models.CharField(max_length=keys.RECEIPT_NO_WIDTH)
    invno = models.CharField(max_length=keys.INVNO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    requested = money_field()
    amount = money_field()
    # 0: written with the receipt; else the `UnappliedApplication` (a later
    # application of the receipt's unapplied cash, §4.9) that wrote it.
    applyno = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "sandbox_sagepro_arcapp"
        verbose_name = "cash receipt application"
        ordering = ["company", "rcptno", "invno"]

    def __str__(self) -> str:
        return f"{self.rcptno.strip()} -> {self.invno.strip()} {self.amount}"


class SysData(models.Model):
    """`SYSDATA`-style number counters, one row per company, module and counter.

    Callers lock the row (`select_for_update`) inside their transaction, take a number,
    and commit with the document that uses it.
    """

    company = models.CharField(max_length=2)
    module = models.CharField(max_length=2)
    counter = models.CharField(max_length=10)
    nextno = models.PositiveIntegerField(default=1)

    class Meta:
        db_table = "sandbox_sagepro_sysdata"
        verbose_name = "SYSDATA counter"
        constraints = [
            models.UniqueConstraint(
                fields=["company", "module", "counter"],
                name="sagepro_sysdata_unique_counter",
            )
        ]

    def __str__(self) -> str:
        return f"{self.module}{self.company} {self.counter} = {self.nextno}"

    def take_next(self, is_used: Callable[[int], bool]) -> int:
        """Return the next free number and advance; skip used values, wrap at 999999."""
        for _ in range(COUNTER_WRAP):
            number = self.nextno
            self.nextno = 1 if number >= COUNTER_WRAP else number + 1
            if not is_used(number):
                self.save(update_fields=["nextno"])
                return number
        raise RuntimeError(f"counter {self} has no free numbers")


class Fault(models.Model):
    """The sandbox's injected fault; one row, shared by every process using the DB."""

    class Mode(models.TextChoices):
        NONE = "none"
        UNAVAILABLE = "unavailable"
        SLOW = "slow"
        LOCKED = "locked"
        LATENCY = "latency"

    mode = models.CharField(max_length=12, choices=Mode.choices, default=Mode.NONE)
    until = models.DateTimeField(default=timezone.now)
    delay = models.FloatField(default=0.0)
    latency_ms = models.PositiveIntegerField(default=0)

    class Meta:
        db_table = "sandbox_sagepro_fault"
        verbose_name = "injected fault"

    def __str__(self) -> str:
        return f"{self.mode} until {self.until:%Y-%m-%d %H:%M:%S}"

    @classmethod
    def load(cls) -> "Fault":
        return cls.objects.filter(pk=1).first() or cls(pk=1)

    def active_mode(self) -> str:
        if self.mode != self.Mode.NONE and timezone.now() < self.until:
            return self.mode
        return self.Mode.NONE

    def seconds_left(self) -> float:
        if self.active_mode() == self.Mode.NONE:
            return 0.0
        return max(0.0, (self.until - timezone.now()).total_seconds())


# Issue 14's documents, each in its own module (imported here so Django finds them).
from integrations.sandbox.sagepro import credit_models, orders_models  # noqa: E402, F401
