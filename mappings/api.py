"""Mapping endpoints under /api/mappings/ (suggestions; filled in by issue 4 work)."""

urlpatterns: list = []
