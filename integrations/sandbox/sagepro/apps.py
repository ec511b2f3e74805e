from django.apps import AppConfig


class SageProSandboxConfig(AppConfig):
    name = "integrations.sandbox.sagepro"
    label = "sandbox_sagepro"
    verbose_name = "Sandbox: Sage Pro"
