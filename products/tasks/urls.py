from django.urls import path

from .api import TaskDetailView, TaskListView, TaskRunStatusView
from .views import task_page

urlpatterns = [
    path("tasks/<id:task_id>/", task_page, name="task-page"),
    path("api/projects/<id:project_id>/tasks/", TaskListView.as_view(), name="project-tasks"),
    path("api/projects/<id:project_id>/tasks/<id:task_id>/", TaskDetailView.as_view(), name="project-task"),
    path(
        "api/projects/<id:project_id>/tasks/<id:task_id>/runs/<id:run_id>/",
        TaskRunStatusView.as_view(),
        name="project-task-run",
    ),
]
