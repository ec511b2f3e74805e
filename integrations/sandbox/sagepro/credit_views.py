"""Issue 14 (credit_views): placeholder, filled by its owner."""

from django.urls import URLPattern

urlpatterns: list[URLPattern] = []
