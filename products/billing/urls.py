from django.urls import path

from .api import QuotaLimitsView

urlpatterns = [
    path("api/projects/<id:project_id>/quota_limits/", QuotaLimitsView.as_view(), name="project-quota-limits"),
]
