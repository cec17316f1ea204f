"""The URLs `GatewayASGIHandler` resolves `/llm/` paths against: the gateway's own, not the whole site's.

Resolving against the root URLconf tried the admin's, billing's, Slack's and tasks' patterns
before reaching the gateway's, on every call; the names are the same as in the root URLconf.
"""
from django.urls import include, path

urlpatterns = [
    path("", include("products.llm_gateway.urls")),
]
