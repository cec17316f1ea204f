"""The task runner API: who may use it, what it lists, and which run status changes it accepts."""
from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
import schemathesis
from django.core import signals
from django.db import close_old_connections, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from hypothesis import HealthCheck, settings as hypothesis_settings
from rest_framework.test import APIClient

from posthog_app.wsgi import application

from products.tasks.models import Task, TaskRun
from products.tasks.services import add_followup, create_task

pytestmark = pytest.mark.django_db

Status = TaskRun.Status


def list_url(project_id) -> str:
    return f"/api/projects/{project_id}/tasks/"


def detail_url(project_id, task_id) -> str:
    return f"/api/projects/{project_id}/tasks/{task_id}/"


def run_url(project_id, task_id, run_id) -> str:
    return f"/api/projects/{project_id}/tasks/{task_id}/runs/{run_id}/"


def bearer(value) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def make_task(project, title="Fix the flaky login test", **extra):
    kwargs = dict(project=project, title=title, description="from Slack", repository="acme/web",
                  origin_product="slack", idempotency_key=None)
    kwargs.update(extra)
    return create_task(**kwargs).task


def set_status(run: TaskRun, status: str) -> TaskRun:
    TaskRun.objects.filter(pk=run.pk).update(status=status)
    run.refresh_from_db()
    return run


@pytest.fixture
def setup(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    user = accounts.user(org)
    _, value = accounts.key(user, scopes=["task:write"])
    task = make_task(project)
    return project, user, value, task


def patch(path, body, value, **kwargs):
    return APIClient().patch(path, body, format="json", **bearer(value), **kwargs)


# --- Who may call it ------------------------------------------------------------------


def endpoints(project, task):
    run = task.runs.get()
    return [
        ("get", list_url(project.id), "task:read"),
        ("get", detail_url(project.id, task.id), "task:read"),
        ("patch", run_url(project.id, task.id, run.id), "task:write"),
    ]


def call(method, path, **headers):
    if method == "patch":
        return APIClient().patch(path, {"status": "in_progress"}, format="json", **headers)
    return APIClient().get(path, **headers)


def test_no_credentials_is_401_everywhere(setup):
    project, _, _, task = setup
    for method, path, _ in endpoints(project, task):
        response = call(method, path)
        assert response.status_code == 401, path
    assert task.runs.get().status == Status.QUEUED


@pytest.mark.parametrize("value", ["phx_not_a_real_key", "garbage"])
def test_bad_key_is_401_everywhere(setup, value):
    project, _, _, task = setup
    for method, path, _ in endpoints(project, task):
        assert call(method, path, **bearer(value)).status_code == 401, path


def test_key_without_the_scope_is_403_naming_it(setup, accounts):
    project, user, _, task = setup
    _, quota_only = accounts.key(user, scopes=["project:read"])
    _, read_only = accounts.key(user, scopes=["task:read"])
    for method, path, scope in endpoints(project, task):
        response = call(method, path, **bearer(quota_only))
        assert response.status_code == 403, path
        assert scope in response.json()["detail"] and response.json()["code"] == "missing_scope"
    # task:read reads but may not report progress.
    response = call("patch", run_url(project.id, task.id, task.runs.get().id), **bearer(read_only))
    assert response.status_code == 403 and "task:write" in response.json()["detail"]
    assert call("get", detail_url(project.id, task.id), **bearer(read_only)).status_code == 200
    assert task.runs.get().status == Status.QUEUED


@pytest.mark.parametrize("scopes", [["task:write"], ["*"]])
def test_write_and_star_scopes_grant_everything(setup, accounts, scopes):
    project, user, _, task = setup
    _, value = accounts.key(user, scopes=scopes)
    for method, path, _ in endpoints(project, task):
        assert call(method, path, **bearer(value)).status_code == 200, path


def test_project_of_another_organization_is_404_like_a_missing_one(setup, accounts):
    _, _, value, _ = setup
    other_project = accounts.project()
    foreign_task = make_task(other_project)
    for method, path, _ in endpoints(other_project, foreign_task):
        foreign = call(method, path, **bearer(value))
        missing = call(method, path.replace(f"/projects/{other_project.id}/", "/projects/999999/"), **bearer(value))
        assert foreign.status_code == missing.status_code == 404, path
        assert foreign.json() == missing.json()
    assert foreign_task.runs.get().status == Status.QUEUED


def test_hidden_project_is_404_even_with_a_bad_filter_or_body(setup, accounts):
    _, _, value, _ = setup
    other = accounts.project()
    task = make_task(other)
    assert APIClient().get(list_url(other.id), {"status": "bogus", "limit": 0}, **bearer(value)).status_code == 404
    assert patch(run_url(other.id, task.id, task.runs.get().id), {"status": "bogus"}, value).status_code == 404


def test_key_scoped_to_another_project_is_404(setup, accounts):
    project, user, _, task = setup
    sibling = accounts.project(project.organization)
    _, value = accounts.key(user, scopes=["task:write"], projects=[sibling])
    for method, path, _ in endpoints(project, task):
        assert call(method, path, **bearer(value)).status_code == 404, path
    assert call("get", list_url(sibling.id), **bearer(value)).status_code == 200


def test_logged_in_member_may_use_it_and_non_member_gets_404(setup, accounts):
    project, user, _, task = setup
    client = APIClient()
    client.force_login(user)
    assert client.get(list_url(project.id)).status_code == 200
    assert client.get(detail_url(project.id, task.id)).status_code == 200
    outsider = accounts.user(accounts.organization())
    client.force_login(outsider)
    assert client.get(list_url(project.id)).status_code == 404
    assert client.get(detail_url(project.id, task.id)).status_code == 404


@pytest.mark.parametrize(
    "which, methods",
    [("list", ["post", "put", "patch", "delete"]), ("detail", ["post", "put", "patch", "delete"]),
     ("run", ["get", "post", "put", "delete"])],
)
def test_only_supported_methods_are_allowed(setup, which, methods):
    project, _, value, task = setup
    path = {"list": list_url(project.id), "detail": detail_url(project.id, task.id),
            "run": run_url(project.id, task.id, task.runs.get().id)}[which]
    for method in methods:
        assert getattr(APIClient(), method)(path, **bearer(value)).status_code == 405, method
    if which != "run":
        assert APIClient().head(path, **bearer(value)).status_code == 200


# --- Listing --------------------------------------------------------------------------


def test_list_shows_the_projects_tasks_newest_first_with_their_latest_run(setup, accounts):
    project, _, value, oldest = setup
    now = timezone.now()
    Task.objects.filter(pk=oldest.pk).update(created_at=now - timedelta(hours=2))
    middle = make_task(project, title="Middle", repository=None)
    Task.objects.filter(pk=middle.pk).update(created_at=now - timedelta(hours=1))
    newest = make_task(project, title="Newest")
    make_task(accounts.project(project.organization), title="Other project's task")

    body = APIClient().get(list_url(project.id), **bearer(value)).json()

    assert body["count"] == 3
    assert [t["title"] for t in body["results"]] == ["Newest", "Middle", "Fix the flaky login test"]
    item = body["results"][0]
    run = newest.runs.get()
    assert item["id"] == newest.id
    assert item["description"] == "from Slack" and item["repository"] == "acme/web" and item["origin_product"] == "slack"
    assert item["url"] == f"http://testserver/tasks/{newest.id}/"
    assert item["latest_run"]["id"] == run.id and item["latest_run"]["status"] == "queued"
    assert item["latest_run"]["resume_from"] is None
    assert set(item["latest_run"]) == {"id", "status", "resume_from", "created_at", "updated_at"}
    assert body["results"][1]["repository"] == ""


def test_list_latest_run_is_the_resumed_one_after_a_follow_up(setup):
    project, _, value, task = setup
    first = set_status(task.runs.get(), Status.COMPLETED)
    resumed = add_followup(task=task, text="one more thing", author_slack_user_id="U1", author_name="Ada",
                           idempotency_key=None).run
    item = APIClient().get(list_url(project.id), **bearer(value)).json()["results"][0]
    assert item["latest_run"]["id"] == resumed.id
    assert item["latest_run"]["status"] == "queued" and item["latest_run"]["resume_from"] == first.id


def test_list_is_paginated_with_limit_and_offset_capped_at_100(setup):
    project, _, value, _ = setup
    for i in range(104):
        make_task(project, title=f"Task {i}")
    client = APIClient()

    first = client.get(list_url(project.id), {"limit": 2}, **bearer(value)).json()
    second = client.get(list_url(project.id), {"limit": 2, "offset": 2}, **bearer(value)).json()
    assert first["count"] == second["count"] == 105
    assert [t["title"] for t in first["results"]] == ["Task 103", "Task 102"]
    assert [t["title"] for t in second["results"]] == ["Task 101", "Task 100"]
    assert "offset=2" in first["next"] and first["previous"] is None

    assert len(client.get(list_url(project.id), **bearer(value)).json()["results"]) == 20
    capped = client.get(list_url(project.id), {"limit": 1000}, **bearer(value)).json()
    assert len(capped["results"]) == 100
    last = client.get(list_url(project.id), {"limit": 100, "offset": 100}, **bearer(value)).json()
    assert [t["title"] for t in last["results"]][-1] == "Fix the flaky login test" and last["next"] is None


def test_list_filters_on_the_latest_runs_status(setup):
    project, _, value, queued = setup
    running = make_task(project, title="Running")
    set_status(running.runs.get(), Status.IN_PROGRESS)
    resumed = make_task(project, title="Completed then followed up")
    set_status(resumed.runs.get(), Status.COMPLETED)
    add_followup(task=resumed, text="again", author_slack_user_id="U1", author_name="Ada", idempotency_key=None)
    client = APIClient()

    def titles(status):
        response = client.get(list_url(project.id), {"status": status}, **bearer(value))
        assert response.status_code == 200
        return [t["title"] for t in response.json()["results"]]

    assert titles("queued") == ["Completed then followed up", "Fix the flaky login test"]
    assert titles("in_progress") == ["Running"]
    assert titles("completed") == []  # the completed run is no longer the latest one
    assert client.get(list_url(project.id), {"status": "queued"}, **bearer(value)).json()["count"] == 2


@pytest.mark.parametrize("status", ["bogus", "QUEUED", ""])
def test_unknown_status_filter_is_400_with_a_reason(setup, status):
    project, _, value, _ = setup
    response = APIClient().get(list_url(project.id), {"status": status}, **bearer(value))
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "invalid_status_filter"
    assert "in_progress" in body["detail"] and repr(status) in body["detail"]


def test_list_and_detail_queries_do_not_grow_with_tasks_runs_or_follow_ups(setup):
    project, _, value, task = setup
    client = APIClient()

    def queries(path) -> int:
        with CaptureQueriesContext(connection) as ctx:
            assert client.get(path, **bearer(value)).status_code == 200
        return len(ctx.captured_queries)

    queries(list_url(project.id))  # the first call also records the key's use
    few_list, few_detail = queries(list_url(project.id)), queries(detail_url(project.id, task.id))
    for i in range(10):
        make_task(project, title=f"More {i}")
        set_status(task.runs.order_by("-id").first(), Status.COMPLETED)
        add_followup(task=task, text=f"again {i}", author_slack_user_id="U1", author_name="Ada", idempotency_key=None)
    assert queries(list_url(project.id)) == few_list
    assert queries(detail_url(project.id, task.id)) == few_detail
    assert len(client.get(detail_url(project.id, task.id), **bearer(value)).json()["runs"]) == 11


@pytest.mark.parametrize("params", [{"limit": 0}, {"limit": -1}, {"limit": "ten"}, {"limit": ""}, {"limit": "2.5"},
                                    {"offset": -1}, {"offset": "1e3"}, {"offset": "null"}])
def test_bad_limit_or_offset_is_400_not_silently_ignored(setup, params):
    project, _, value, _ = setup
    response = APIClient().get(list_url(project.id), params, **bearer(value))
    assert response.status_code == 400
    name = next(iter(params))
    assert response.json()["code"] == "invalid_pagination" and f"`{name}`" in response.json()["detail"]


def test_offset_past_the_end_is_an_empty_page(setup):
    project, _, value, _ = setup
    body = APIClient().get(list_url(project.id), {"offset": 10**30}, **bearer(value)).json()
    assert body["count"] == 1 and body["results"] == [] and body["next"] is None


# --- Detail ---------------------------------------------------------------------------


def test_detail_shows_every_run_with_its_follow_ups(setup):
    project, _, value, task = setup
    first = task.runs.get()
    early = add_followup(task=task, text="Also the signup test", author_slack_user_id="U1", author_name="Ada",
                         idempotency_key=None).followup
    set_status(first, Status.FAILED)
    second = add_followup(task=task, text="Try again please", author_slack_user_id="U2", author_name="Grace",
                          idempotency_key=None).run

    body = APIClient().get(detail_url(project.id, task.id), **bearer(value)).json()

    assert body["id"] == task.id and body["title"] == "Fix the flaky login test"
    assert body["url"] == f"http://testserver/tasks/{task.id}/"
    assert [(r["id"], r["status"], r["resume_from"]) for r in body["runs"]] == [
        (first.id, "failed", None), (second.id, "queued", first.id)
    ]
    assert body["runs"][0]["followups"] == [{
        "id": early.id, "text": "Also the signup test", "author_slack_user_id": "U1", "author_name": "Ada",
        "created_at": body["runs"][0]["followups"][0]["created_at"],
    }]
    assert [f["text"] for f in body["runs"][1]["followups"]] == ["Try again please"]


def test_detail_of_a_task_in_another_project_of_the_same_org_is_404(setup, accounts):
    project, _, value, _ = setup
    sibling_task = make_task(accounts.project(project.organization))
    assert APIClient().get(detail_url(project.id, sibling_task.id), **bearer(value)).status_code == 404
    assert APIClient().get(detail_url(project.id, 999999), **bearer(value)).status_code == 404


def test_follow_up_after_completing_a_run_shows_the_resumed_run(setup):
    project, _, value, task = setup
    run = task.runs.get()
    assert patch(run_url(project.id, task.id, run.id), {"status": "in_progress"}, value).status_code == 200
    assert patch(run_url(project.id, task.id, run.id), {"status": "completed"}, value).status_code == 200

    add_followup(task=task, text="Now fix the logout test", author_slack_user_id="U9", author_name="Linus",
                 idempotency_key="evt-1")

    runs = APIClient().get(detail_url(project.id, task.id), **bearer(value)).json()["runs"]
    assert [r["status"] for r in runs] == ["completed", "queued"]
    assert runs[1]["resume_from"] == run.id
    assert [(f["text"], f["author_name"]) for f in runs[1]["followups"]] == [("Now fix the logout test", "Linus")]
    assert runs[0]["followups"] == []
    # The runner can start the new run.
    assert patch(run_url(project.id, task.id, runs[1]["id"]), {"status": "in_progress"}, value).json()["status"] == "in_progress"


# --- Run status transitions ------------------------------------------------------------


@pytest.mark.parametrize(
    "current, new",
    [("queued", "in_progress"), ("queued", "cancelled"), ("queued", "failed"),
     ("in_progress", "completed"), ("in_progress", "failed"), ("in_progress", "cancelled")],
)
def test_allowed_transition_is_applied_and_returned(setup, current, new):
    project, _, value, task = setup
    run = set_status(task.runs.get(), current)
    response = patch(run_url(project.id, task.id, run.id), {"status": new}, value)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == run.id and body["status"] == new and body["resume_from"] is None
    assert TaskRun.objects.get(pk=run.pk).status == new


@pytest.mark.parametrize("current", ["completed", "failed", "cancelled"])
@pytest.mark.parametrize("new", ["in_progress", "completed", "failed", "cancelled"])
def test_finished_run_never_changes_409(setup, current, new):
    project, _, value, task = setup
    run = set_status(task.runs.get(), current)
    response = patch(run_url(project.id, task.id, run.id), {"status": new}, value)
    assert response.status_code == 409
    assert response.json()["code"] == "run_finished"
    assert current in response.json()["detail"]
    assert TaskRun.objects.get(pk=run.pk).status == current


@pytest.mark.parametrize("current, new", [("queued", "completed"), ("in_progress", "in_progress")])
def test_transition_the_current_status_does_not_allow_is_409(setup, current, new):
    project, _, value, task = setup
    run = set_status(task.runs.get(), current)
    response = patch(run_url(project.id, task.id, run.id), {"status": new}, value)
    assert response.status_code == 409
    assert response.json()["code"] == "transition_not_allowed"
    assert f"cannot move to {new}" in response.json()["detail"]
    assert TaskRun.objects.get(pk=run.pk).status == current


@pytest.mark.parametrize(
    "body, code",
    [({"status": "bogus"}, "invalid_status"), ({"status": "queued"}, "invalid_status"), ({}, "invalid_status"),
     ({"status": None}, "invalid_status"), ({"status": 3}, "invalid_status"), (["in_progress"], "invalid_request")],
)
def test_invalid_status_is_400_with_a_reason(setup, body, code):
    project, _, value, task = setup
    run = task.runs.get()
    response = patch(run_url(project.id, task.id, run.id), body, value)
    assert response.status_code == 400
    assert response.json()["code"] == code and response.json()["detail"]
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_unknown_status_reason_lists_the_allowed_ones(setup):
    project, _, value, task = setup
    detail = patch(run_url(project.id, task.id, task.runs.get().id), {"status": "done"}, value).json()["detail"]
    assert '"done"' in detail and "in_progress, completed, failed, cancelled" in detail


def test_malformed_json_is_400(setup):
    project, _, value, task = setup
    response = APIClient().generic("PATCH", run_url(project.id, task.id, task.runs.get().id), "{not json",
                                   content_type="application/json", **bearer(value))
    assert response.status_code == 400


def test_an_unknown_field_is_400_naming_it(setup):
    project, _, value, task = setup
    run = task.runs.get()
    response = patch(run_url(project.id, task.id, run.id), {"status": "in_progress", "stauts": "x"}, value)
    assert response.status_code == 400 and "'stauts'" in response.json()["detail"]
    assert response.json()["code"] == "unknown_field"
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


# Bodies json.loads accepts but nothing downstream can handle: a 400 naming the problem (StrictJSONParser).
HOSTILE_BODIES = {
    "600 levels in an object": '{"status": "in_progress", "extra": ' + '{"a": ' * 600 + "1" + "}" * 600 + "}",
    "100,000 levels of lists": "[" * 100_000 + "]" * 100_000,
    "a lone surrogate": '{"status": "in_\\ud800progress"}',
    "a lone surrogate in a key": '{"\\udfff": 1, "status": "in_progress"}',
}


@pytest.mark.sqlite
@pytest.mark.parametrize("body", list(HOSTILE_BODIES.values()), ids=list(HOSTILE_BODIES))
def test_too_deep_json_or_a_lone_surrogate_is_400_with_a_reason_and_changes_nothing(setup, body):
    project, _, value, task = setup
    run = task.runs.get()
    response = APIClient().generic("PATCH", run_url(project.id, task.id, run.id), body.encode(),
                                   content_type="application/json", **bearer(value))
    assert response.status_code == 400, response.content
    detail = response.json()["detail"]
    assert "nested deeper than" in detail or "lone UTF-16 surrogates" in detail, detail
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


TOO_BIG = 2**63  # one past the largest id any of our databases can hold


@pytest.mark.sqlite
@pytest.mark.parametrize("which", ["project", "task", "run"])
def test_ids_beyond_64_bits_are_404_not_500_on_every_database(setup, which):
    """schemathesis found PATCH .../tasks/23967913928378941440/runs/32352/ answering 500 on SQLite."""
    project, _, value, task = setup
    run = task.runs.get()
    ids = {"project": project.id, "task": task.id, "run": run.id, which: TOO_BIG}
    for big in (ids[which], 23967913928378941440, 10**40):
        ids[which] = big
        assert patch(run_url(ids["project"], ids["task"], ids["run"]), {"status": "in_progress"}, value).status_code == 404
        if which != "run":
            client = APIClient()
            assert client.get(detail_url(ids["project"], ids["task"]), **bearer(value)).status_code == 404
    # The largest id that fits still reaches the view (and is simply not found).
    ids[which] = TOO_BIG - 1
    assert patch(run_url(ids["project"], ids["task"], ids["run"]), {"status": "in_progress"}, value).status_code == 404
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_run_must_belong_to_the_task_and_the_task_to_the_project(setup, accounts):
    project, _, value, task = setup
    run = task.runs.get()
    other_task = make_task(project, title="Other")
    sibling_project = accounts.project(project.organization)
    assert patch(run_url(project.id, other_task.id, run.id), {"status": "in_progress"}, value).status_code == 404
    assert patch(run_url(sibling_project.id, task.id, run.id), {"status": "in_progress"}, value).status_code == 404
    assert patch(run_url(project.id, task.id, 999999), {"status": "in_progress"}, value).status_code == 404
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def _sessions_waiting_on_a_lock() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_stat_clear_snapshot()")  # else a transaction sees one frozen snapshot
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND datname = current_database()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_two_runners_starting_one_queued_run_exactly_one_wins(accounts):
    # The row lock makes "is it still queued?" and "mark it in progress" one step. To make
    # the race certain rather than likely, the test holds the row's lock until both
    # runners are waiting on it: without the service's lock both would read "queued".
    org = accounts.organization()
    project = accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=["task:write"])
    task = make_task(project)
    run = task.runs.get()
    path = run_url(project.id, task.id, run.id)
    codes: list[int] = []

    def runner():
        try:
            codes.append(patch(path, {"status": "in_progress"}, value).status_code)
        finally:
            connection.close()

    threads = [threading.Thread(target=runner) for _ in range(2)]
    with transaction.atomic():
        TaskRun.objects.select_for_update().get(pk=run.pk)
        for t in threads:
            t.start()
        deadline = time.monotonic() + 10
        while _sessions_waiting_on_a_lock() < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert _sessions_waiting_on_a_lock() >= 2, "the runners never queued up behind the lock"
    for t in threads:
        t.join(timeout=30)
    assert sorted(codes) == [200, 409]
    assert TaskRun.objects.get(pk=run.pk).status == Status.IN_PROGRESS


# --- The schema tells the truth --------------------------------------------------------

api_schema = schemathesis.openapi.from_wsgi("/api/schema/", application)


@pytest.fixture
def fuzz_caller(accounts, db):
    """A caller with one task in its project, so fuzzing reaches the 200 and 409 answers, not only 404s."""
    signals.request_started.disconnect(close_old_connections)  # keep the test transaction across WSGI calls
    signals.request_finished.disconnect(close_old_connections)
    org = accounts.organization()
    project = accounts.project(org)
    _, value = accounts.key(accounts.user(org), scopes=["task:write"])
    task = make_task(project)
    add_followup(task=task, text="more", author_slack_user_id="U1", author_name="Ada", idempotency_key=None)
    yield project, task, task.runs.get(), value
    signals.request_started.connect(close_old_connections)
    signals.request_finished.connect(close_old_connections)


@pytest.mark.sqlite
@api_schema.parametrize()
@hypothesis_settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_task_endpoints_match_their_schema_on_real_tasks(case, fuzz_caller):
    if "/tasks/" not in case.operation.path:
        return  # tests/test_api_schema.py fuzzes the other endpoints (this schemathesis's `include` filters nothing)
    project, task, run, value = fuzz_caller
    params = case.path_parameters or {}
    # Point well-formed ids (mostly) at the caller's own task and run; malformed ones stay as
    # generated, so requests schemathesis built to be invalid stay invalid.
    if all(isinstance(v, int) for v in params.values()) and params.get("project_id", 0) % 4 != 0:
        params.update(project_id=project.id, task_id=task.id)
        if "run_id" in params:
            params["run_id"] = run.id
    case.call_and_validate(headers={"Authorization": f"Bearer {value}"})
