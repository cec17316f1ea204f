from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "products.billing"
    label = "billing"
    verbose_name = "Billing and quota limits"

    def ready(self) -> None:
        # Plans, allowances, overrides, usage and alerts have their own admin module.
        from . import admin_plans  # noqa: F401
