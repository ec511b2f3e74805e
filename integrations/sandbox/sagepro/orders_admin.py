"""Read-only admin for the sandbox's GL batch, sales order and inventory tables."""

from django.contrib import admin

from integrations.admin.base import ReadOnlyAdmin, ReadOnlyInline

from .orders_models import (
    GlBatch,
    GlBatchLine,
    IcIloc,
    IcItem,
    IcLoct,
    SoAddr,
    SoMast,
    SoTran,
)


class GlBatchLineInline(ReadOnlyInline):
    model = GlBatchLine
    fields = ("glseqno", "glacnt", "gldamnt", "glcamnt", "gltdes")
    readonly_fields = fields


@admin.register(GlBatch)
class GlBatchAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "batchno",
        "gldate",
        "yearprd",
        "btype",
        "bdesc",
        "glrefr",
        "drtotal",
        "crtotal",
        "bstat",
        "deleted",
    ]
    list_filter = ["company", "bstat", "btype", "deleted"]
    search_fields = ["batchno", "glrefr", "bdesc", "idemkey"]
    inlines = [GlBatchLineInline]


class SoTranInline(ReadOnlyInline):
    model = SoTran
    fields = ("lineno", "item", "descrip", "qtyord", "price", "extprice", "loctid")
    readonly_fields = fields


class SoAddrInline(ReadOnlyInline):
    model = SoAddr
    fields = ("name", "address1", "address2", "city", "state", "zip", "country")
    readonly_fields = fields


@admin.register(SoMast)
class SoMastAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "sono",
        "custno",
        "sodate",
        "ref",
        "ordamt",
        "tax",
        "shpamt",
        "invno",
        "sostat",
        "deleted",
    ]
    list_filter = ["company", "sostat", "deleted"]
    search_fields = ["sono", "custno", "ref", "ponum", "idemkey"]
    inlines = [SoTranInline, SoAddrInline]


@admin.register(IcItem)
class IcItemAdmin(ReadOnlyAdmin):
    list_display = ["company", "item", "itmdesc", "price", "stkcode", "itmstat"]
    list_filter = ["company", "itmstat", "stkcode", "deleted"]
    search_fields = ["item", "itmdesc"]


@admin.register(IcLoct)
class IcLoctAdmin(ReadOnlyAdmin):
    list_display = ["company", "loctid", "locdesc", "deleted"]


@admin.register(IcIloc)
class IcIlocAdmin(ReadOnlyAdmin):
    list_display = ["company", "item", "loctid", "lonhand", "deleted"]
    list_filter = ["company", "loctid"]
