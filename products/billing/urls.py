from django.urls import path

from .api import QuotaLimitsView
from .views import billing_page

urlpatterns = [
    path("api/projects/<id:project_id>/quota_limits/", QuotaLimitsView.as_view(), name="project-quota-limits"),
    path("billing/", billing_page, name="billing"),
]
