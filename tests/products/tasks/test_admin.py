"""An operator switches a project's runs to external runners in the admin; runs show who worked them."""
from __future__ import annotations

import pytest

from products.tasks.models import AgentSettings, TaskRun
from products.tasks.runs import claim_next_run
from products.tasks.services import create_task

pytestmark = pytest.mark.django_db


def make_run(project) -> TaskRun:
    return create_task(project=project, title="Fix it", description="", repository="acme/web", origin_product="slack",
                       idempotency_key=None).run


def test_an_operator_switches_a_project_to_external_runners_in_the_admin(admin_client, accounts):
    project = accounts.project()
    before = make_run(project)
    page = admin_client.get("/admin/tasks/agentsettings/add/")
    assert page.status_code == 200 and "external runners (REST API)" in page.content.decode()

    response = admin_client.post("/admin/tasks/agentsettings/add/", {"project": project.pk, "backend": "external"})

    assert response.status_code == 302, response.content.decode()[:2000]
    assert AgentSettings.objects.get(project=project).backend == "external"
    assert make_run(project).backend == "external"
    assert TaskRun.objects.get(pk=before.pk).backend == "builtin"  # runs that exist keep theirs
    listing = admin_client.get("/admin/tasks/agentsettings/").content.decode()
    assert project.name in listing


def test_the_run_admin_shows_the_runner_and_the_runs_history(admin_client, accounts):
    project = accounts.project()
    AgentSettings.objects.create(project=project, backend="external")
    run = make_run(project)
    claim_next_run(project.pk, "sandbox-7")
    html = admin_client.get(f"/admin/tasks/taskrun/{run.pk}/change/").content.decode()
    assert "sandbox-7" in html and "in progress (claimed by sandbox-7)" in html and "queued (backend: external)" in html
    assert "sandbox-7" in admin_client.get("/admin/tasks/taskrun/").content.decode()
