"""PayTrace sandbox routes, mounted at /sandbox/paytrace/ (hosts root of the v1 API)."""

from django.urls import path

from integrations.sandbox.paytrace import protect_views, vault_views, views

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
    # Hosted fields (the Protect.js stand-in).
    path(
        "v1/payment_fields/token/create",
        vault_views.payment_fields_token,
        name="payment-fields-token",
    ),
    path("protect/js/<str:name>", protect_views.protect_asset, name="protect-asset"),
    path("protect/hpf", protect_views.hosted_fields, name="protect-hpf"),
    path("protect/try", protect_views.try_hosted_fields, name="protect-try"),
    path("protect/tokenize", protect_views.tokenize, name="protect-tokenize"),
    # The customer vault.
    path(
        "v1/customer/pt_protect_create",
        vault_views.customer_protect_create,
        name="customer-protect-create",
    ),
    path(
        "v1/customer/pt_protect_update",
        vault_views.customer_protect_update,
        name="customer-protect-update",
    ),
    path("v1/customer/create", vault_views.customer_create, name="customer-create"),
    path("v1/customer/update", vault_views.customer_update, name="customer-update"),
    path("v1/customer/delete", vault_views.customer_delete, name="customer-delete"),
    path("v1/customer/export", vault_views.customer_export, name="customer-export"),
    path(
        "v1/transactions/sale/by_customer",
        vault_views.sale_by_customer,
        name="sale-by-customer",
    ),
    # Recurring billing.
    path(
        "v1/recurrence/create", vault_views.recurrence_create, name="recurrence-create"
    ),
    path(
        "v1/recurrence/update", vault_views.recurrence_update, name="recurrence-update"
    ),
    path(
        "v1/recurrence/delete", vault_views.recurrence_delete, name="recurrence-delete"
    ),
    path(
        "v1/recurrence/export", vault_views.recurrence_export, name="recurrence-export"
    ),
    path(
        "v1/recurrence/export_approved",
        vault_views.recurrence_export_approved,
        name="recurrence-export-approved",
    ),
    # Sandbox-only controls.
    path("_card_state", vault_views.card_state, name="card-state"),
    path("_run_recurrences", vault_views.run_recurrences, name="run-recurrences"),
]
