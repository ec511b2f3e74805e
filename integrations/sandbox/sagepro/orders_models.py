"""Sage Pro's GL batch, sales order and inventory tables, as the sandbox stores them.

Same habits as `models.py`: a `company` column instead of one table per company,
fixed-width keys stored padded, no NULLs, money in `DecimalField(14, 2)`, and a
`deleted` flag every read excludes. Quantities are 2-place decimals too (the contract
sends them as 2-place strings).

- `GlBatch` is `GLBTCH` with its `GLHUNP` journal header folded in (the sandbox writes
  one journal entry per batch); `GlBatchLine` is `GLDUNP`. A batch lands unposted
  (`BSTAT = 'U'`) and a Sage Pro user posts it (`'P'`).
- `SoMast`/`SoTran`/`SoAddr` are the sales order header, lines and ship-to address.
- `IcItem` is the item master, `IcLoct` the locations, `IcIloc` the per-location
  quantities (on hand).
"""

from decimal import Decimal

from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import keys
from .models import EMPTY_DATE, SageRow, money_field

BATCHNO_WIDTH = 6  # GLBTCH.BATCHNO: 6 digits, zero padded
SONO_WIDTH = 10  # SOMAST.SONO: C(10), right-justified
ITEM_WIDTH = 20  # ICITEM.ITEM
# SOTRAN.LOCTID is C(3) in the layouts seen; the sandbox keeps 6 so the contract's
# location codes (`MAIN`, `WEST`) fit.
LOCTID_WIDTH = 6
SO_REFERENCE_WIDTH = 20  # SOMAST.REF


def quantity_field() -> models.DecimalField:
    return money_field()


class GlBatch(SageRow):
    """`GLBTCH` + `GLHUNP`: an unposted GL batch of one journal entry."""

    class Status(models.TextChoices):
        UNPOSTED = "U", "unposted"
        POSTED = "P", "posted"

    batchno = models.CharField(max_length=BATCHNO_WIDTH)
    bdesc = models.CharField(max_length=30, default="", blank=True)
    yearprd = models.CharField(max_length=6)
    bstat = models.CharField(max_length=1, choices=Status.choices, default="U")
    btype = models.CharField("BTYPE (source)", max_length=2, default="GL")
    gldate = models.DateField()
    glrefr = models.CharField(
        "GLREFR (reference)", max_length=40, default="", blank=True
    )
    drtotal = money_field()
    crtotal = money_field()
    postuser = models.CharField(max_length=4, default="", blank=True)
    postdate = models.DateField(default=EMPTY_DATE)
    idemkey = models.CharField(max_length=100, default="", blank=True)
    reqhash = models.CharField(max_length=64, default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sandbox_sagepro_glbtch"
        verbose_name = "GLBTCH GL batch"
        verbose_name_plural = "GLBTCH GL batches"
        ordering = ["company", "batchno"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "batchno"], name="sagepro_glbtch_unique_batchno"
            ),
            # Batches written inside another document (a credit memo's) carry no key.
            models.UniqueConstraint(
                fields=["company", "idemkey"],
                condition=Q(deleted=False) & ~Q(idemkey=""),
                name="sagepro_glbtch_unique_live_key",
            ),
        ]

    def __str__(self) -> str:
        return f"batch {self.batchno} {self.bdesc}".strip()


class GlBatchLine(SageRow):
    """`GLDUNP`: one unposted journal line (a debit or a credit, never both)."""

    batch = models.ForeignKey(GlBatch, on_delete=models.PROTECT, related_name="lines")
    batchno = models.CharField(max_length=BATCHNO_WIDTH)
    glseqno = models.PositiveIntegerField()
    glacnt = models.CharField(max_length=keys.GLACNT_WIDTH)
    gldamnt = money_field()
    glcamnt = money_field()
    credit = models.BooleanField(default=False)
    gltdes = models.CharField("GLTDES (memo)", max_length=30, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_gldunp"
        verbose_name = "GLDUNP journal line"
        ordering = ["company", "batchno", "glseqno"]

    def __str__(self) -> str:
        side = f"Cr {self.glcamnt}" if self.credit else f"Dr {self.gldamnt}"
        return f"{self.batchno}/{self.glseqno} {self.glacnt} {side}"


class IcItem(SageRow):
    """`ICITEM`: the item master. `ITMSTAT = 'I'` marks an inactive item;
    `STKCODE = 'N'` a service (no stock)."""

    item = models.CharField(max_length=ITEM_WIDTH)
    itmdesc = models.CharField(max_length=50, default="", blank=True)
    price = money_field()
    stkcode = models.CharField(max_length=1, default="Y")
    itmstat = models.CharField(max_length=1, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_icitem"
        verbose_name = "ICITEM item"
        ordering = ["company", "item"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "item"], name="sagepro_icitem_unique_item"
            )
        ]

    def __str__(self) -> str:
        return f"{self.item.strip()} {self.itmdesc}"

    def is_active(self) -> bool:
        return self.itmstat != "I" and not self.deleted


class IcLoct(SageRow):
    """`ICLOCT`: an inventory location."""

    loctid = models.CharField(max_length=LOCTID_WIDTH)
    locdesc = models.CharField(max_length=30, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_icloct"
        verbose_name = "ICLOCT location"
        ordering = ["company", "loctid"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "loctid"], name="sagepro_icloct_unique_loctid"
            )
        ]

    def __str__(self) -> str:
        return f"{self.loctid.strip()} {self.locdesc}"


class IcIloc(SageRow):
    """`ICILOC`: one item's quantity on hand at one location."""

    item = models.CharField(max_length=ITEM_WIDTH)
    loctid = models.CharField(max_length=LOCTID_WIDTH)
    lonhand = quantity_field()

    class Meta:
        db_table = "sandbox_sagepro_iciloc"
        verbose_name = "ICILOC item location"
        ordering = ["company", "item", "loctid"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "item", "loctid"],
                name="sagepro_iciloc_unique_item_location",
            )
        ]

    def __str__(self) -> str:
        return f"{self.item.strip()} @ {self.loctid.strip()}: {self.lonhand}"


class SoMast(SageRow):
    """`SOMAST`: a sales order header. `SOSTAT` blank = open, `'I'` = invoiced (the
    sandbox's choice; Sage's code list is unverified)."""

    sono = models.CharField(max_length=SONO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    sodate = models.DateField()
    ref = models.CharField(max_length=SO_REFERENCE_WIDTH)
    ponum = models.CharField(max_length=keys.PONUM_WIDTH, default="", blank=True)
    ordamt = money_field()  # the lines' total
    tax = money_field()
    shpamt = money_field()  # freight
    sostat = models.CharField(max_length=1, default="", blank=True)
    invno = models.CharField(max_length=keys.INVNO_WIDTH, default="", blank=True)
    idemkey = models.CharField(max_length=100, default="", blank=True)
    reqhash = models.CharField(max_length=64, default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sandbox_sagepro_somast"
        verbose_name = "SOMAST sales order"
        ordering = ["company", "sono"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "sono"], name="sagepro_somast_unique_sono"
            ),
            models.UniqueConstraint(
                fields=["company", "idemkey"],
                condition=Q(deleted=False) & ~Q(idemkey=""),
                name="sagepro_somast_unique_live_key",
            ),
            models.UniqueConstraint(
                fields=["company", "ref"],
                condition=Q(deleted=False),
                name="sagepro_somast_unique_live_ref",
            ),
        ]

    def __str__(self) -> str:
        return f"order {self.sono.strip()} {self.custno.strip()} {self.ref}"

    @property
    def total(self) -> Decimal:
        return self.ordamt + self.tax + self.shpamt


class SoTran(SageRow):
    """`SOTRAN`: one sales order line."""

    order = models.ForeignKey(SoMast, on_delete=models.PROTECT, related_name="lines")
    sono = models.CharField(max_length=SONO_WIDTH)
    lineno = models.PositiveIntegerField()
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    item = models.CharField(max_length=ITEM_WIDTH)
    descrip = models.CharField(max_length=50, default="", blank=True)
    qtyord = quantity_field()
    price = money_field()
    extprice = money_field()
    loctid = models.CharField(max_length=LOCTID_WIDTH, default="", blank=True)
    taxable = models.CharField(max_length=1, default="Y")

    class Meta:
        db_table = "sandbox_sagepro_sotran"
        verbose_name = "SOTRAN sales order line"
        ordering = ["company", "sono", "lineno"]

    def __str__(self) -> str:
        return f"{self.sono.strip()}/{self.lineno} {self.item.strip()} x{self.qtyord}"


class SoAddr(SageRow):
    """`SOADDR`: the order's ship-to address (`COMPANY` is the name, as in ARCUST)."""

    order = models.OneToOneField(
        SoMast, on_delete=models.PROTECT, related_name="ship_to"
    )
    sono = models.CharField(max_length=SONO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    name = models.CharField("COMPANY (name)", max_length=35, default="", blank=True)
    address1 = models.CharField(max_length=35, default="", blank=True)
    address2 = models.CharField(max_length=35, default="", blank=True)
    city = models.CharField(max_length=20, default="", blank=True)
    state = models.CharField(max_length=10, default="", blank=True)
    zip = models.CharField(max_length=10, default="", blank=True)
    country = models.CharField(max_length=15, default="", blank=True)

    class Meta:
        db_table = "sandbox_sagepro_soaddr"
        verbose_name = "SOADDR ship-to address"
        verbose_name_plural = "SOADDR ship-to addresses"

    def __str__(self) -> str:
        return f"{self.sono.strip()} ship to {self.name}"
