"""Read-only admin for the sandbox's credit memos and applications of unapplied cash."""

from django.contrib import admin

from integrations.admin.base import ReadOnlyAdmin

from .credit_models import CreditMemo, UnappliedApplication


@admin.register(CreditMemo)
class CreditMemoAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "memono",
        "custno",
        "memodate",
        "amount",
        "feeamt",
        "rcptno",
        "reference",
        "glbatch",
        "deleted",
    ]
    list_filter = ["company", "deleted"]
    search_fields = ["memono", "custno", "rcptno", "reference", "idemkey"]


@admin.register(UnappliedApplication)
class UnappliedApplicationAdmin(ReadOnlyAdmin):
    list_display = [
        "company",
        "applyno",
        "rcptno",
        "custno",
        "appdate",
        "applied",
        "deleted",
    ]
    list_filter = ["company", "deleted"]
    search_fields = ["rcptno", "custno", "idemkey"]
