from django.apps import AppConfig


class PayTraceSandboxConfig(AppConfig):
    name = "integrations.sandbox.paytrace"
    label = "sandbox_paytrace"
    verbose_name = "Sandbox: PayTrace"
