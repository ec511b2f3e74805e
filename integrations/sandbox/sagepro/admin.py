"""Read-only admin for the sandbox's Sage Pro tables (inspect, never edit)."""

from django.contrib import admin
from django.http import HttpRequest

from integrations.admin.base import ReadOnlyAdmin

from .models import (
    ArCust,
    ArMast,
    CashReceipt,
    CashReceiptLine,
    Fault,
    GlAcnt,
    GlStru,
    SycComp,
    SycDfis,
    SysData,
)


@admin.register(ArCust)
class ArCustAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "custno",
        "name",
        "balance",
        "credstat",
        "lastpay",
        "deleted",
        "changeseq",
    ]
    list_filter = ["company", "credstat", "deleted"]
    search_fields = ["custno", "name"]


@admin.register(ArMast)
class ArMastAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "invno",
        "custno",
        "invdte",
        "invamt",
        "paidamt",
        "balance",
        "artype",
        "deleted",
        "changeseq",
    ]
    list_filter = ["company", "artype", "deleted"]
    search_fields = ["invno", "custno"]


class CashReceiptLineInline(admin.TabularInline):
    model = CashReceiptLine
    fields = ("invno", "requested", "amount", "applyno", "deleted")
    readonly_fields = fields
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(CashReceipt)
class CashReceiptAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "rcptno",
        "custno",
        "paydate",
        "amount",
        "unapplied",
        "reference",
        "reversed",
        "deleted",
    ]
    list_filter = ["company", "reversed", "deleted"]
    search_fields = ["rcptno", "custno", "reference", "idemkey"]
    inlines = [CashReceiptLineInline]


@admin.register(GlAcnt)
class GlAcntAdmin(ReadOnlyAdmin):
    list_display = ["company", "glacnt", "gldesc", "glstat", "deleted"]
    list_filter = ["company", "glstat", "deleted"]


@admin.register(SycDfis)
class SycDfisAdmin(ReadOnlyAdmin):
    list_display = [
        "compid",
        "yearprd",
        "bdate",
        "edate",
        "pclosed",
        "plocked",
        "permlck",
    ]
    list_filter = ["compid"]


@admin.register(SycComp)
class SycCompAdmin(ReadOnlyAdmin):
    list_display = ["compid", "compname", "curyr", "curprd"]


@admin.register(GlStru)
class GlStruAdmin(ReadOnlyAdmin):
    list_display = ["compid", "segid", "seglen", "segmask"]


@admin.register(SysData)
class SysDataAdmin(ReadOnlyAdmin):
    list_display = ["company", "module", "counter", "nextno"]


@admin.register(Fault)
class FaultAdmin(ReadOnlyAdmin):
    list_display = ["mode", "until", "delay", "latency_ms"]


from integrations.sandbox.sagepro import credit_admin, orders_admin  # noqa: E402, F401
