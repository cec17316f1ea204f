from django.apps import AppConfig


class AgentConfig(AppConfig):
    name = "products.agent"
    label = "agent"
    verbose_name = "Built-in coding agent"
