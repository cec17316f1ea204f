from django.urls import path

from .api import TaskDetailView, TaskListView, TaskRunStatusView
from .runner_api import ClaimRunView, RunFinishView, RunFollowUpsView, RunHeartbeatView, RunProgressView
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
    # The external runners' protocol (runner_api.py).
    path("api/projects/<id:project_id>/task_runs/claim/", ClaimRunView.as_view(), name="task-runs-claim"),
    path("api/projects/<id:project_id>/task_runs/<id:run_id>/heartbeat/", RunHeartbeatView.as_view(),
         name="task-run-heartbeat"),
    path("api/projects/<id:project_id>/task_runs/<id:run_id>/progress/", RunProgressView.as_view(),
         name="task-run-progress"),
    path("api/projects/<id:project_id>/task_runs/<id:run_id>/followups/", RunFollowUpsView.as_view(),
         name="task-run-followups"),
    path("api/projects/<id:project_id>/task_runs/<id:run_id>/finish/", RunFinishView.as_view(), name="task-run-finish"),
]
