from django.apps import AppConfig


class SlackAppConfig(AppConfig):
    name = "products.slack_app"
    label = "slack_app"
    verbose_name = "Slack integration"

    def ready(self) -> None:
        # Usage alerts: billing sends `usage_alert_due`; Slack delivers it (billing never imports slack_app).
        from .alerts import connect_usage_alerts

        connect_usage_alerts()
        # Home tabs refreshed after each quota recomputation; broken Slack apps shown on the billing page.
        from .lifecycle import connect_signals

        connect_signals()
