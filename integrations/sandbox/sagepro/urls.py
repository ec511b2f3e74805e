"""The Sage Pro gateway contract, mounted at /sandbox/sagepro/api/v1/."""

from django.urls import path

from . import batch, changes, credit_views, listing, orders_views, views

urlpatterns = [
    # Issue 14's documents (credit memos, reversals, applications; GL batches,
    # customers, sales orders, items, locations), before the receipt's own paths.
    *credit_views.urlpatterns,
    *orders_views.urlpatterns,
    path("customers", changes.customer_changes),  # the change feed
    path("customers/<str:custno>", views.customer_detail),
    path("customers/<str:custno>/open-items", views.customer_open_items),
    path("invoices", changes.invoice_collection),  # change feed, else views
    # Any key, "/" included: the contract answers 404 INVOICE_NOT_FOUND for it.
    path("invoices/<path:invno>", views.invoice_detail),
    path("cash-receipts", listing.receipt_collection),  # dated listing, else views
    path("cash-receipts", views.receipt_collection),
    path("cash-receipts/batch", batch.receipt_batch),  # before <receipt_no>
    path("cash-receipts/<str:receipt_no>", views.receipt_detail),
    path("gl-accounts", views.gl_account_collection),
    path("gl-accounts/<str:glacnt>", views.gl_account_detail),
    path("periods", views.period_collection),
    path("_faults", views.faults),
]
