from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "products.accounts"
    label = "accounts"
    verbose_name = "Accounts and API keys"

    def ready(self) -> None:
        from . import schema  # noqa: F401  (registers the OpenAPI auth extension)
