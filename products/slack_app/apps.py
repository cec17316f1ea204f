from django.apps import AppConfig


class SlackAppConfig(AppConfig):
    name = "products.slack_app"
    label = "slack_app"
    verbose_name = "Slack integration"
