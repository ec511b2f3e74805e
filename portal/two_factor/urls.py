from django.urls import path

from portal.two_factor import views

app_name = "two_factor"

urlpatterns = [
    path("", views.manage, name="manage"),
    path("verify/", views.verify, name="verify"),
    path("setup/", views.setup, name="setup"),
    path("recovery-codes/", views.new_recovery_codes, name="recovery_codes"),
    path("remove/", views.remove, name="remove"),
    path("reset/", views.reset, name="reset"),
]
