from django.apps import AppConfig


class IntegrationsConfig(AppConfig):
    name = "integrations"
    verbose_name = "Integrations"

    def ready(self) -> None:
        from integrations import checks, roles, schedules  # noqa: F401 - registers checks and signals
        from integrations.carddata import install as install_card_data_net
        from integrations.config.versioning import register_connection
        from integrations.redaction import install_log_redaction

        install_log_redaction()
        register_connection()
        install_card_data_net()
