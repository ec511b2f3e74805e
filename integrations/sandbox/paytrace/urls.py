"""PayTrace sandbox routes, mounted at /sandbox/paytrace/ (hosts root of the v1 API)."""

from django.urls import path

from integrations.sandbox.paytrace import views

app_name = "sandbox_paytrace"

urlpatterns = [
    path("oauth/token", views.oauth_token, name="oauth-token"),
    path("v1/transactions/sale/keyed", views.sale_keyed, name="sale-keyed"),
    path("v1/transactions/export/by_id", views.export_by_id, name="export-by-id"),
    path(
        "v1/transactions/export/by_date_range",
        views.export_by_date_range,
        name="export-by-date-range",
    ),
    path("v1/transactions/void", views.void, name="void"),
    path(
        "v1/transactions/refund/for_transaction",
        views.refund_for_transaction,
        name="refund-for-transaction",
    ),
    path("v1/batches/export", views.batches_export, name="batches-export"),
    path(
        "v1/batches/transaction_list",
        views.batches_transaction_list,
        name="batches-transaction-list",
    ),
    path("_settle", views.settle, name="settle"),
]
