from django.apps import AppConfig


class MappingsConfig(AppConfig):
    name = "mappings"
    verbose_name = "Mappings"

    def ready(self) -> None:
        from mappings import versioning

        versioning.register_models()
