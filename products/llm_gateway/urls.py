from django.urls import path

from .api import UsageEventsView

urlpatterns = [
    path("api/projects/<id:project_id>/usage_events/", UsageEventsView.as_view(), name="project-usage-events"),
]
