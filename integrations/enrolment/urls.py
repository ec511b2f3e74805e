"""The customer's card enrolment link (the finance user's page is in the admin,
routed by `integrations.admin.cards`)."""

from django.urls import path

from integrations.enrolment import views

urlpatterns = [
    path("pay/cards/<str:secret>/", views.link_page, name="card-enrolment-link"),
]
