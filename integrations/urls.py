from django.urls import path

from integrations import api

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
]
