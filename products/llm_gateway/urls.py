from django.urls import path

from . import views
from .api import UsageEventsView

urlpatterns = [
    path("api/projects/<id:project_id>/usage_events/", UsageEventsView.as_view(), name="project-usage-events"),
    # The LLM gateway (async views; served by the ASGI application, `make run`'s gateway process).
    path("llm/<str:product>/v1/chat/completions", views.chat_completions, name="llm-gateway-chat-completions"),
    path("llm/<str:product>/v1/messages", views.messages, name="llm-gateway-messages"),
    path("llm/<str:product>/v1/models", views.models, name="llm-gateway-models"),
]
