from django.apps import AppConfig


class MappingsConfig(AppConfig):
    name = "mappings"
    verbose_name = "Mappings"

    def ready(self) -> None:
        from mappings import versioning

        versioning.register_models()
        # The configuration-history admin registers here rather than from admin.py, so
        # it stays out of that module's way; the admin site reads registrations lazily.
        from mappings import history_admin  # noqa: F401
