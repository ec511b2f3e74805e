from django.urls import include, path

from integrations import api, charge_api
from integrations.relay import views as relay_views
from integrations.storefront import webhook as storefront_webhook

urlpatterns = [
    path(
        "webhooks/paytrace/<str:slug>/",
        api.PayTraceWebhookView.as_view(),
        name="paytrace-webhook",
    ),
    path(
        "webhooks/paytrace/<str:slug>/silent-post/",
        api.SilentPostView.as_view(),
        name="paytrace-silent-post",
    ),
    path(
        "webhooks/storefront/<str:slug>/",
        storefront_webhook.StorefrontWebhookView.as_view(),
        name="storefront-webhook",
    ),
    # Issue 15: charging a card on file, and the customer's card enrolment link.
    path("api/payments/charge", charge_api.ChargeView.as_view(), name="charge-api"),
    path("", include("integrations.charge_api")),
    path("", include("integrations.enrolment.urls")),
    # The on-site Sage Pro agent's relay API (integrations.relay).
    path("api/agent/enrol", relay_views.enrol, name="agent-enrol"),
    path("api/agent/poll", relay_views.poll, name="agent-poll"),
    path(
        "api/agent/commands/<int:command_id>/result",
        relay_views.result,
        name="agent-result",
    ),
    path("api/agent/heartbeat", relay_views.heartbeat_view, name="agent-heartbeat"),
]
