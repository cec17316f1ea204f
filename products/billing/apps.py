from django.apps import AppConfig


class BillingConfig(AppConfig):
    name = "products.billing"
    label = "billing"
    verbose_name = "Billing and quota limits"
