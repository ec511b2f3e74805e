"""Credit memos and later applications of a receipt's unapplied cash, as the sandbox
stores them (docs/sagepro-gateway.md §4.7 and §4.9).

Sage Pro's real tables for these are unverified; the columns follow `models.py`'s
habits: padded keys, no NULLs, `DecimalField(14, 2)` money, soft delete.
"""

from django.db import models
from django.db.models import Q
from django.utils import timezone

from . import keys
from .models import EMPTY_DATE, SageRow, money_field


class CreditMemo(SageRow):
    """`arcrmemo`: a refund's credit memo against the receipt of the sale it refunds.

    The memo's own `ARMAST` row (`artype "C"`, number `crinvno`) carries the amount,
    fully offset by the refund paid out. The GL distribution (Dr `refacnt`, Cr
    `cashacnt`; a fee Dr `feeacnt`, Cr `cashacnt`) is kept here; `glbatch` names the
    GL batch written for it ("" while the sandbox writes none). `reference` (the
    PayTrace refund transaction id) and `idemkey` are unique among live memos.
    """

    memono = models.CharField(max_length=keys.RECEIPT_NO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    memodate = models.DateField(default=EMPTY_DATE)
    amount = money_field()
    reference = models.CharField(max_length=40, default="", blank=True)
    rcptno = models.CharField(max_length=keys.RECEIPT_NO_WIDTH)
    invno = models.CharField(max_length=keys.INVNO_WIDTH, default="", blank=True)
    crinvno = models.CharField(max_length=keys.INVNO_WIDTH, default="", blank=True)
    refacnt = models.CharField(max_length=keys.GLACNT_WIDTH, default="", blank=True)
    cashacnt = models.CharField(max_length=keys.GLACNT_WIDTH, default="", blank=True)
    feeamt = money_field()
    feeacnt = models.CharField(max_length=keys.GLACNT_WIDTH, default="", blank=True)
    reason = models.CharField(max_length=60, default="", blank=True)
    glbatch = models.CharField(max_length=6, default="", blank=True)
    idemkey = models.CharField(max_length=100, default="", blank=True)
    reqhash = models.CharField(max_length=64, default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sandbox_sagepro_arcrmemo"
        verbose_name = "credit memo"
        ordering = ["company", "memono"]
        indexes = [models.Index(fields=["company", "rcptno"])]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "memono"], name="sagepro_arcrmemo_unique_memono"
            ),
            models.UniqueConstraint(
                fields=["company", "idemkey"],
                condition=Q(deleted=False),
                name="sagepro_arcrmemo_unique_live_key",
            ),
            models.UniqueConstraint(
                fields=["company", "reference"],
                condition=Q(deleted=False),
                name="sagepro_arcrmemo_unique_live_reference",
            ),
        ]

    def __str__(self) -> str:
        return f"credit memo {self.memono.strip()} {self.custno.strip()} {self.amount}"


class UnappliedApplication(SageRow):
    """`arcapg`: one `POST /cash-receipts/{no}/applications` call, applying some of a
    receipt's unapplied cash. Its lines are `CashReceiptLine` rows with its `applyno`;
    `idemkey` and `reqhash` tell a replay from a conflicting reuse of the key."""

    applyno = models.PositiveIntegerField()
    rcptno = models.CharField(max_length=keys.RECEIPT_NO_WIDTH)
    custno = models.CharField(max_length=keys.CUSTNO_WIDTH)
    appdate = models.DateField(default=EMPTY_DATE)
    applied = money_field()
    idemkey = models.CharField(max_length=100, default="", blank=True)
    reqhash = models.CharField(max_length=64, default="", blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        db_table = "sandbox_sagepro_arcapg"
        verbose_name = "application of unapplied cash"
        ordering = ["company", "applyno"]
        constraints = [
            models.UniqueConstraint(
                fields=["company", "applyno"], name="sagepro_arcapg_unique_applyno"
            ),
            models.UniqueConstraint(
                fields=["company", "idemkey"],
                condition=Q(deleted=False),
                name="sagepro_arcapg_unique_live_key",
            ),
        ]

    def __str__(self) -> str:
        return f"application {self.applyno} of receipt {self.rcptno.strip()}"
