from django.apps import AppConfig


class PosthogAppConfig(AppConfig):
    """The project's own app: home and login pages, cross-product commands, the `<id:...>` converter."""

    name = "posthog_app"
    label = "posthog_app"
    verbose_name = "PostHog Code for Slack"

    def ready(self) -> None:
        from . import converters

        converters.register()
