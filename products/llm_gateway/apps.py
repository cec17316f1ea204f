from django.apps import AppConfig


class LLMGatewayConfig(AppConfig):
    name = "products.llm_gateway"
    label = "llm_gateway"
    verbose_name = "LLM gateway"
