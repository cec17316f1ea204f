"""The external runner protocol over HTTP: who may call it, claims that never hand one run to two
runners, heartbeats only from the claimer, progress, follow-ups by cursor, an idempotent finish,
and runners that went quiet refused. Ends with the example runner script run against a live server."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.db import connection, transaction
from django.utils import timezone
from rest_framework.test import APIClient

from products.tasks.models import AgentSettings, Task, TaskRun, TaskRunEvent
from products.tasks.runs import claim_next_run
from products.tasks.services import add_followup, create_task
from products.tasks.tasks import fail_stale_task_runs

pytestmark = pytest.mark.django_db

ROOT = Path(__file__).resolve().parents[3]
Status = TaskRun.Status


def base(project_id) -> str:
    return f"/api/projects/{project_id}/task_runs"


def bearer(value) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


def post(path, body, value):
    return APIClient().post(path, body, format="json", **bearer(value))


def make_task(project, title="Fix the flaky login test", **extra) -> Task:
    kwargs = dict(project=project, title=title, description="from Slack: it fails on CI", repository="acme/web",
                  origin_product="slack", idempotency_key=None)
    kwargs.update(extra)
    return create_task(**kwargs).task


def external_project(accounts, org=None):
    project = accounts.project(org or accounts.organization())
    AgentSettings.objects.create(project=project, backend="external")
    return project


@pytest.fixture
def setup(accounts):
    """A project whose runs go to external runners, a task:write key for it, and one queued run."""
    org = accounts.organization()
    project = external_project(accounts, org)
    user = accounts.user(org)
    _, value = accounts.key(user, scopes=["task:write"], projects=[project])
    task = make_task(project)
    return project, user, value, task


def claim(project, value, runner="runner-a"):
    return post(f"{base(project.id)}/claim/", {"runner": runner}, value)


def claimed(setup, runner="runner-a") -> dict:
    project, _, value, _ = setup
    response = claim(project, value, runner)
    assert response.status_code == 200, response.content
    return response.json()


def age(run_id: int, seconds: float) -> None:
    TaskRun.objects.filter(pk=run_id).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


# --- Who may call it ----------------------------------------------------------------------------


def endpoints(project_id, run_id):
    return [
        ("post", f"{base(project_id)}/claim/", {"runner": "r"}),
        ("post", f"{base(project_id)}/{run_id}/heartbeat/", {"runner": "r"}),
        ("post", f"{base(project_id)}/{run_id}/progress/", {"runner": "r", "line": "x"}),
        ("get", f"{base(project_id)}/{run_id}/followups/", None),
        ("post", f"{base(project_id)}/{run_id}/finish/", {"runner": "r", "status": "completed", "summary": "x"}),
    ]


def call(method, path, body, **headers):
    client = APIClient()
    return client.post(path, body, format="json", **headers) if method == "post" else client.get(path, **headers)


def test_no_key_or_a_bad_key_is_401_and_nothing_is_claimed(setup):
    project, _, _, task = setup
    run = task.runs.get()
    for method, path, body in endpoints(project.id, run.id):
        assert call(method, path, body).status_code == 401, path
        assert call(method, path, body, **bearer("phx_not_a_key")).status_code == 401, path
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_a_key_without_task_write_is_403_naming_the_scope_but_may_read_follow_ups(setup, accounts):
    project, user, _, task = setup
    run = task.runs.get()
    _, read_only = accounts.key(user, scopes=["task:read"])
    for method, path, body in endpoints(project.id, run.id):
        response = call(method, path, body, **bearer(read_only))
        if method == "get":
            assert response.status_code == 200, path
        else:
            assert response.status_code == 403, path
            assert response.json()["code"] == "missing_scope" and "task:write" in response.json()["detail"]
    _, unrelated = accounts.key(user, scopes=["llm_gateway:write"])
    assert call("get", f"{base(project.id)}/{run.id}/followups/", None, **bearer(unrelated)).status_code == 403
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_a_key_scoped_to_another_project_or_another_org_is_404_like_a_missing_project(setup, accounts):
    project, user, _, task = setup
    run = task.runs.get()
    sibling = accounts.project(project.organization)
    _, sibling_key = accounts.key(user, scopes=["task:write"], projects=[sibling])
    _, outsider = accounts.key(accounts.user(accounts.organization()), scopes=["*"])
    for value in (sibling_key, outsider):
        for method, path, body in endpoints(project.id, run.id):
            assert call(method, path, body, **bearer(value)).status_code == 404, path
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_a_run_of_another_project_is_404_through_this_projects_urls(setup, accounts):
    project, user, value, _ = setup
    other = external_project(accounts, project.organization)
    foreign_run = make_task(other).runs.get()
    _, both = accounts.key(user, scopes=["task:write"])
    claim_next_run(other.id, "r")
    for method, path, body in endpoints(project.id, foreign_run.id)[1:]:
        response = call(method, path, body, **bearer(both))
        assert response.status_code == 404, path
    assert TaskRun.objects.get(pk=foreign_run.pk).progress == ""


# --- Claim ----------------------------------------------------------------------------------------


@pytest.mark.sqlite  # also on the database `make run` uses
def test_claim_hands_out_the_oldest_queued_external_run_with_what_the_runner_needs(setup, accounts):
    project, _, value, task = setup
    first_run = task.runs.get()
    add_followup(task=task, text="also the signup test", author_slack_user_id="U1", author_name="Ada",
                 idempotency_key=None)
    newer = make_task(project, title="Newer")

    body = claimed(setup, "sandbox-7")

    assert body["id"] == first_run.pk and body["task_id"] == task.pk and body["status"] == "in_progress"
    assert body["title"] == "Fix the flaky login test" and body["description"] == "from Slack: it fails on CI"
    assert body["repository"] == "acme/web" and body["claimed_by"] == "sandbox-7" and body["resume_from"] is None
    assert body["task_url"] == f"http://testserver/tasks/{task.pk}/"
    assert [(f["text"], f["author_name"]) for f in body["followups"]] == [("also the signup test", "Ada")]
    assert body["followups_cursor"] == body["followups"][0]["id"] and body["heartbeat_timeout_seconds"] == 120
    stored = TaskRun.objects.get(pk=first_run.pk)
    assert (stored.status, stored.claimed_by) == (Status.IN_PROGRESS, "sandbox-7")
    assert stored.claimed_at is not None and stored.heartbeat_at == stored.claimed_at
    assert TaskRunEvent.objects.filter(run=stored, kind="status").last().text == "in progress (claimed by sandbox-7)"
    # The next claim gets the next run; then nothing is left: 204 with no body.
    assert claimed(setup, "sandbox-8")["id"] == newer.runs.get().pk
    empty = claim(project, value, "sandbox-9")
    assert empty.status_code == 204 and empty.content == b""


def test_builtin_runs_and_other_projects_runs_are_never_handed_to_runners(setup, accounts):
    project, _, value, task = setup
    TaskRun.objects.filter(task=task).update(backend="builtin")
    make_task(external_project(accounts, project.organization))
    assert claim(project, value).status_code == 204
    assert task.runs.get().status == Status.QUEUED


def test_a_resumed_run_tells_the_runner_what_the_previous_run_ended_with(setup):
    project, _, value, task = setup
    first = claimed(setup)
    assert post(f"{base(project.id)}/{first['id']}/finish/", {
        "runner": "runner-a", "status": "completed", "summary": "Fixed login.", "pr_url": "https://github.com/acme/web/pull/1",
    }, value).status_code == 200
    add_followup(task=task, text="now the logout test", author_slack_user_id="U1", author_name="Ada", idempotency_key=None)

    body = claimed(setup, "runner-b")

    assert body["resume_from"]["id"] == first["id"] and body["resume_from"]["status"] == "completed"
    assert body["resume_from"]["summary"] == "Fixed login."
    assert body["resume_from"]["pr_url"] == "https://github.com/acme/web/pull/1"
    assert [f["text"] for f in body["followups"]] == ["now the logout test"]


@pytest.mark.parametrize("body", [{}, {"runner": ""}, {"runner": "   "}, {"runner": "a\nb"}, {"runner": "x" * 101},
                                  {"runner": 5}, {"runner": "ok", "extra": 1}, ["runner"]])
def test_a_claim_without_a_proper_runner_name_is_400_and_claims_nothing(setup, body):
    project, _, value, task = setup
    response = post(f"{base(project.id)}/claim/", body, value)
    assert response.status_code == 400, response.content
    assert response.json()["detail"] and response.json()["code"]
    assert task.runs.get().status == Status.QUEUED


@pytest.mark.django_db(transaction=True)
def test_a_run_being_claimed_is_skipped_not_waited_for_and_never_handed_out_twice(accounts):
    """SKIP LOCKED: while one runner's claim holds the run, another runner's claim answers at once with 204."""
    org = accounts.organization()
    project = external_project(accounts, org)
    _, value = accounts.key(accounts.user(org), scopes=["task:write"])
    run = make_task(project).runs.get()
    answers: list[tuple[int, float]] = []

    def second_runner():
        started = time.monotonic()
        try:
            answers.append((claim(project, value, "runner-b").status_code, time.monotonic() - started))
        finally:
            connection.close()

    with transaction.atomic():  # runner A's claim, not yet committed: the row is locked
        mine = claim_next_run(project.id, "runner-a")
        assert mine.run.pk == run.pk
        thread = threading.Thread(target=second_runner)
        thread.start()
        thread.join(timeout=20)
        assert not thread.is_alive(), "the second claim waited for the first one's lock"
    [(status, seconds)] = answers
    assert status == 204 and seconds < 5
    assert TaskRun.objects.get(pk=run.pk).claimed_by == "runner-a"
    assert claim(project, value, "runner-c").status_code == 204  # committed: in progress, not queued


@pytest.mark.django_db(transaction=True)
def test_two_runners_racing_for_one_run_get_it_exactly_once(accounts):
    org = accounts.organization()
    project = external_project(accounts, org)
    _, value = accounts.key(accounts.user(org), scopes=["task:write"])
    for round_ in range(8):
        run = make_task(project, title=f"Round {round_}").runs.get()
        barrier = threading.Barrier(2)
        answers: dict[str, int] = {}

        def runner(name):
            try:
                barrier.wait()
                answers[name] = claim(project, value, name).status_code
            finally:
                connection.close()

        threads = [threading.Thread(target=runner, args=(f"r{i}",)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        assert sorted(answers.values()) == [200, 204], answers
        winner = next(name for name, status in answers.items() if status == 200)
        assert TaskRun.objects.get(pk=run.pk).claimed_by == winner
        assert TaskRunEvent.objects.filter(run=run, kind="status", text__contains="claimed by").count() == 1


@pytest.mark.django_db(transaction=True)
def test_n_runners_for_n_runs_each_get_a_different_run(accounts):
    n = 6
    org = accounts.organization()
    project = external_project(accounts, org)
    _, value = accounts.key(accounts.user(org), scopes=["task:write"])
    run_ids = {make_task(project, title=f"Task {i}").runs.get().pk for i in range(n)}
    barrier = threading.Barrier(n)
    got: dict[str, int] = {}

    def runner(name):
        try:
            barrier.wait()
            response = claim(project, value, name)
            if response.status_code == 200:
                got[name] = response.json()["id"]
        finally:
            connection.close()

    threads = [threading.Thread(target=runner, args=(f"r{i}",)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    # Every runner that was answered 200 got a run of its own; a runner that arrived while all
    # remaining runs were being claimed may have been told 204, so the rest are claimed after.
    assert len(set(got.values())) == len(got)
    while (response := claim(project, value, f"late-{len(got)}")).status_code == 200:
        got[f"late-{len(got)}"] = response.json()["id"]
    assert sorted(got.values()) == sorted(run_ids)
    claimed_by = dict(TaskRun.objects.filter(pk__in=run_ids).values_list("pk", "claimed_by"))
    assert {name: run_id for name, run_id in got.items()} == {name: run_id for run_id, name in claimed_by.items()}


# --- Heartbeat and progress -------------------------------------------------------------------------


def test_only_the_claiming_runner_may_heartbeat(setup):
    project, _, value, _ = setup
    run = claimed(setup, "runner-a")
    age(run["id"], 60)
    before = TaskRun.objects.get(pk=run["id"]).heartbeat_at

    other = post(f"{base(project.id)}/{run['id']}/heartbeat/", {"runner": "runner-b"}, value)
    assert other.status_code == 409 and other.json()["code"] == "not_claimant"
    assert "runner-a" in other.json()["detail"]
    assert TaskRun.objects.get(pk=run["id"]).heartbeat_at == before

    mine = post(f"{base(project.id)}/{run['id']}/heartbeat/", {"runner": "runner-a"}, value)
    assert mine.status_code == 200 and mine.json()["status"] == "in_progress"
    assert TaskRun.objects.get(pk=run["id"]).heartbeat_at > before


def test_a_run_nobody_claimed_cannot_be_heartbeat_or_reported_on(setup):
    project, _, value, task = setup
    run = task.runs.get()
    for path, body in ((f"{run.pk}/heartbeat/", {"runner": "r"}), (f"{run.pk}/progress/", {"runner": "r", "line": "x"}),
                       (f"{run.pk}/finish/", {"runner": "r", "status": "completed", "summary": "x"})):
        response = post(f"{base(project.id)}/{path}", body, value)
        assert response.status_code == 409 and response.json()["code"] == "not_claimant", path
        assert "claim" in response.json()["detail"]
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_progress_sets_the_status_line_keeps_history_and_counts_as_a_heartbeat(setup):
    project, _, value, _ = setup
    run = claimed(setup)
    age(run["id"], 100)
    response = post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-a", "line": "Cloning\nacme/web"}, value)
    assert response.status_code == 200 and response.json()["progress"] == "Cloning acme/web"
    post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-a", "line": "Running tests"}, value)
    stored = TaskRun.objects.get(pk=run["id"])
    assert stored.progress == "Running tests" and timezone.now() - stored.heartbeat_at < timedelta(seconds=10)
    assert list(TaskRunEvent.objects.filter(run=stored, kind="progress").values_list("text", flat=True)) == [
        "Cloning acme/web", "Running tests"]
    # Not the claimer's, or an empty line: refused, nothing recorded.
    assert post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-b", "line": "hi"}, value).status_code == 409
    blank = post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-a", "line": "  \n "}, value)
    assert blank.status_code == 400 and "line" in blank.json()["detail"]
    assert TaskRunEvent.objects.filter(run=stored, kind="progress").count() == 2


def test_a_run_cancelled_meanwhile_tells_the_runner_to_stop(setup):
    project, _, value, task = setup
    run = claimed(setup)
    patched = APIClient().patch(f"/api/projects/{project.id}/tasks/{task.id}/runs/{run['id']}/", {"status": "cancelled"},
                                format="json", **bearer(value))
    assert patched.status_code == 200
    beat = post(f"{base(project.id)}/{run['id']}/heartbeat/", {"runner": "runner-a"}, value)
    assert beat.status_code == 409 and beat.json()["code"] == "run_finished" and "cancelled" in beat.json()["detail"]
    finish = post(f"{base(project.id)}/{run['id']}/finish/", {"runner": "runner-a", "status": "completed", "summary": "x"}, value)
    assert finish.status_code == 409 and finish.json()["code"] == "finish_conflict"
    assert TaskRun.objects.get(pk=run["id"]).status == Status.CANCELLED


# --- Follow-ups -------------------------------------------------------------------------------------


def test_follow_ups_are_read_after_a_cursor(setup):
    project, _, value, task = setup
    run = claimed(setup)
    path = f"{base(project.id)}/{run['id']}/followups/"
    assert APIClient().get(path, {"after": run["followups_cursor"]}, **bearer(value)).json() == {
        "followups": [], "cursor": 0, "has_more": False}
    one = add_followup(task=task, text="use the staging DB", author_slack_user_id="U1", author_name="Ada",
                       idempotency_key=None).followup
    two = add_followup(task=task, text="and skip flaky ones", author_slack_user_id="U2", author_name="Lin",
                       idempotency_key=None).followup

    page = APIClient().get(path, {"after": 0}, **bearer(value)).json()
    assert [(f["id"], f["text"], f["author_name"]) for f in page["followups"]] == [
        (one.pk, "use the staging DB", "Ada"), (two.pk, "and skip flaky ones", "Lin")]
    assert page["cursor"] == two.pk and page["has_more"] is False
    later = APIClient().get(path, {"after": one.pk}, **bearer(value)).json()
    assert [f["text"] for f in later["followups"]] == ["and skip flaky ones"]
    assert APIClient().get(path, {"after": two.pk}, **bearer(value)).json()["followups"] == []
    assert APIClient().get(path, **bearer(value)).json()["cursor"] == two.pk  # no `after`: from the start


def test_follow_ups_come_in_pages_of_100(setup):
    project, _, value, task = setup
    run = claimed(setup)
    for i in range(101):
        add_followup(task=task, text=f"note {i}", author_slack_user_id="U1", author_name="", idempotency_key=None)
    path = f"{base(project.id)}/{run['id']}/followups/"
    first = APIClient().get(path, **bearer(value)).json()
    assert len(first["followups"]) == 100 and first["has_more"] is True
    rest = APIClient().get(path, {"after": first["cursor"]}, **bearer(value)).json()
    assert [f["text"] for f in rest["followups"]] == ["note 100"] and rest["has_more"] is False


@pytest.mark.parametrize("after", ["-1", "abc", "1.5", "", "99999999999999999999"])
def test_a_bad_cursor_is_400(setup, after):
    project, _, value, _ = setup
    run = claimed(setup)
    response = APIClient().get(f"{base(project.id)}/{run['id']}/followups/", {"after": after}, **bearer(value))
    assert response.status_code == 400 and response.json()["code"] == "invalid_cursor"


# --- Finish ---------------------------------------------------------------------------------------------


def finish(project, run_id, value, **body):
    return post(f"{base(project.id)}/{run_id}/finish/", {"runner": "runner-a", **body}, value)


@pytest.mark.sqlite  # also on the database `make run` uses
def test_finish_with_a_pr_is_stored_and_a_retried_identical_finish_changes_nothing(setup):
    project, _, value, _ = setup
    run = claimed(setup)
    body = {"status": "completed", "summary": "Fixed the race.", "pr_url": "https://github.com/acme/web/pull/42"}
    first = finish(project, run["id"], value, **body)
    assert first.status_code == 200, first.content
    assert first.json()["status"] == "completed" and first.json()["pr_url"] == body["pr_url"]
    stored = TaskRun.objects.get(pk=run["id"])
    events = TaskRunEvent.objects.filter(run=stored).count()

    again = finish(project, run["id"], value, **body)

    assert again.status_code == 200 and again.json() == first.json()
    after = TaskRun.objects.get(pk=run["id"])
    assert (after.finished_at, after.updated_at) == (stored.finished_at, stored.updated_at)
    assert TaskRunEvent.objects.filter(run=stored).count() == events


@pytest.mark.parametrize("second", [
    {"status": "completed", "summary": "Something else."},
    {"status": "completed", "summary": "Fixed the race.", "pr_url": "https://github.com/acme/web/pull/43"},
    {"status": "failed", "error": "oops"},
])
def test_a_finish_that_differs_from_the_first_is_409_and_the_first_stands(setup, second):
    project, _, value, _ = setup
    run = claimed(setup)
    finish(project, run["id"], value, status="completed", summary="Fixed the race.", pr_url="https://github.com/acme/web/pull/42")
    response = finish(project, run["id"], value, **second)
    assert response.status_code == 409 and response.json()["code"] == "finish_conflict"
    assert "already finished as completed" in response.json()["detail"]
    stored = TaskRun.objects.get(pk=run["id"])
    assert (stored.summary, stored.pr_url) == ("Fixed the race.", "https://github.com/acme/web/pull/42")


def test_a_failed_finish_needs_an_error_and_is_kept_as_a_runner_error(setup):
    project, _, value, _ = setup
    run = claimed(setup)
    missing = finish(project, run["id"], value, status="failed")
    assert missing.status_code == 400 and missing.json()["code"] == "missing_error"
    done = finish(project, run["id"], value, status="failed", error="Could not clone acme/web.")
    assert done.status_code == 200
    assert (done.json()["status"], done.json()["error_kind"]) == ("failed", "runner_error")


@pytest.mark.parametrize("pr_url", ["github.com/acme/web/pull/1", "ftp://github.com/x", "javascript:alert(1)",
                                    "https://", "not a url", "https://github.com/" + "a" * 2000])
def test_a_pr_url_that_is_not_an_http_url_is_400_and_the_run_stays_open(setup, pr_url):
    project, _, value, _ = setup
    run = claimed(setup)
    response = finish(project, run["id"], value, status="completed", summary="done", pr_url=pr_url)
    assert response.status_code == 400
    assert response.json()["code"] in {"invalid_pr_url"} and "pr_url" in response.json()["detail"]
    assert TaskRun.objects.get(pk=run["id"]).status == Status.IN_PROGRESS


@pytest.mark.parametrize("body, code", [
    ({"status": "cancelled"}, "invalid_status"), ({"status": "quota_limited"}, "invalid_status"),
    ({"status": "completed", "sumary": "typo"}, "unknown_field"), ({}, "invalid_status"),
    ({"status": "completed", "summary": 5}, "invalid_summary"),
])
def test_a_malformed_finish_is_400_with_a_reason(setup, body, code):
    project, _, value, _ = setup
    run = claimed(setup)
    response = finish(project, run["id"], value, **body)
    assert response.status_code == 400 and response.json()["code"] == code, response.json()
    assert TaskRun.objects.get(pk=run["id"]).status == Status.IN_PROGRESS


def test_another_runner_cannot_finish_the_run(setup):
    project, _, value, _ = setup
    run = claimed(setup)
    response = post(f"{base(project.id)}/{run['id']}/finish/",
                    {"runner": "runner-b", "status": "completed", "summary": "mine now"}, value)
    assert response.status_code == 409 and response.json()["code"] == "not_claimant"
    assert TaskRun.objects.get(pk=run["id"]).status == Status.IN_PROGRESS


# --- A runner that went quiet -------------------------------------------------------------------------


@pytest.mark.sqlite  # also on the database `make run` uses
def test_a_runner_that_stops_heartbeating_loses_the_run_and_is_told_why(setup, settings):
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 120
    project, _, value, _ = setup
    run = claimed(setup)
    age(run["id"], 121)
    assert fail_stale_task_runs() == [run["id"]]

    for path, body in (("heartbeat/", {"runner": "runner-a"}), ("progress/", {"runner": "runner-a", "line": "back!"}),
                       ("finish/", {"runner": "runner-a", "status": "completed", "summary": "done after all"})):
        response = post(f"{base(project.id)}/{run['id']}/{path}", body, value)
        assert response.status_code == 409 and response.json()["code"] == "run_lost", path
        assert "no heartbeat arrived for 120 s" in response.json()["detail"]
    stored = TaskRun.objects.get(pk=run["id"])
    assert (stored.status, stored.error_kind, stored.summary) == (Status.FAILED, "runner_lost", "")


def test_a_runner_that_keeps_reporting_is_never_failed(setup, settings):
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 120
    project, _, value, _ = setup
    run = claimed(setup)
    age(run["id"], 119)
    assert fail_stale_task_runs() == []
    age(run["id"], 500)
    post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-a", "line": "still here"}, value)
    assert fail_stale_task_runs() == []
    assert TaskRun.objects.get(pk=run["id"]).status == Status.IN_PROGRESS


# --- Telling the workflow ------------------------------------------------------------------------------


def _open_run_workflow(run_id: int):
    """An open execution under the run's workflow id (no worker needed: Temporal records signals to it)."""
    from temporal.client import get_client, run_sync, task_run_workflow_id

    async def start():
        client = await get_client()
        return await client.start_workflow(
            "test-signal-recorder", id=task_run_workflow_id(run_id), task_queue=f"nobody-{run_id}-{time.time_ns()}"
        )

    return run_sync(start(), timeout=10)


def _signals_received(handle) -> list[str]:
    from temporal.client import run_sync

    async def names():
        history = await handle.fetch_history()
        return [e.workflow_execution_signaled_event_attributes.signal_name for e in history.events
                if e.HasField("workflow_execution_signaled_event_attributes")]

    return run_sync(names(), timeout=10)


def test_claim_progress_and_finish_tell_the_runs_workflow(setup, temporal, django_capture_on_commit_callbacks):
    """The workflow must hear of a change at once (a real Temporal server receives the signals)."""
    project, _, value, task = setup
    run_id = TaskRun.objects.get(task=task).pk
    handle = _open_run_workflow(run_id)
    # The test's transaction never commits: run the after-commit callbacks as a commit would.
    with django_capture_on_commit_callbacks(execute=True):
        run = claimed(setup)
        assert post(f"{base(project.id)}/{run['id']}/heartbeat/", {"runner": "runner-a"}, value).status_code == 200
        assert post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-a", "line": "x"}, value).status_code == 200
        assert finish(project, run["id"], value, status="completed", summary="ok").status_code == 200
    assert run["id"] == run_id
    # claim, progress, finish (a heartbeat changes nothing the thread shows)
    assert _signals_received(handle) == ["run_changed"] * 3


def test_temporal_unreachable_never_fails_a_runners_call(setup, settings, django_capture_on_commit_callbacks):
    """Temporal being down must not cost the runner its call: the workflow also polls."""
    project, _, value, _ = setup
    with socket.socket() as sock:  # a port nothing listens on
        sock.bind(("127.0.0.1", 0))
        settings.TEMPORAL_ADDRESS = f"127.0.0.1:{sock.getsockname()[1]}"
    with django_capture_on_commit_callbacks(execute=True):
        run = claimed(setup)
        assert post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "runner-a", "line": "x"}, value).status_code == 200
        assert finish(project, run["id"], value, status="completed", summary="ok").status_code == 200
    assert TaskRun.objects.get(pk=run["id"]).status == TaskRun.Status.COMPLETED


# --- The example runner, end to end ------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_the_example_runner_works_a_run_end_to_end_against_a_live_server(live_server, accounts):
    org = accounts.organization()
    project = external_project(accounts, org)
    _, value = accounts.key(accounts.user(org), scopes=["task:write"], projects=[project])
    task = make_task(project)
    add_followup(task=task, text="please also check signup", author_slack_user_id="U1", author_name="Ada",
                 idempotency_key=None)
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    env.update(TASK_RUNNER_API_KEY=value)

    def run_script(*extra: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, str(ROOT / "scripts" / "example_runner.py"), "--base-url", live_server.url,
             "--project", str(project.id), "--runner", "example-1", *extra],
            env=env, capture_output=True, text=True, timeout=60,
        )

    done = run_script("--pr-url", "https://github.com/acme/web/pull/9")

    assert done.returncode == 0, done.stderr
    steps = [json.loads(line) for line in done.stdout.splitlines()]
    assert [s["step"] for s in steps] == ["claimed", "heartbeat", "progress", "progress", "followups", "finished"]
    run = TaskRun.objects.get(task=task)
    assert (run.status, run.claimed_by, run.pr_url) == (Status.COMPLETED, "example-1", "https://github.com/acme/web/pull/9")
    assert "please also check signup" in run.summary
    assert list(run.events.filter(kind="progress").values_list("text", flat=True)) == [
        "Reading the task: Fix the flaky login test", "Working on acme/web"]
    # Nothing else queued: the runner says so and exits cleanly; a refused key is exit 1 with the reason.
    idle = run_script()
    assert idle.returncode == 0 and json.loads(idle.stdout)["step"] == "idle"
    env["TASK_RUNNER_API_KEY"] = "phx_wrong"
    refused = run_script()
    assert refused.returncode == 1 and "401" in refused.stderr


def test_the_sweep_tells_the_workflow_of_each_run_it_failed(setup, temporal, django_capture_on_commit_callbacks):
    """A run failed for a quiet runner must reach the thread even if nothing else happens to it."""
    run = claimed(setup)
    age(run["id"], 10_000)
    handle = _open_run_workflow(run["id"])
    with django_capture_on_commit_callbacks(execute=True):
        assert fail_stale_task_runs() == [run["id"]]
    assert _signals_received(handle) == ["run_changed"]


def test_the_task_api_shows_what_the_runner_reported(setup):
    project, _, value, task = setup
    run = claimed(setup, "sandbox-7")
    post(f"{base(project.id)}/{run['id']}/progress/", {"runner": "sandbox-7", "line": "Running tests"}, value)
    assert post(f"{base(project.id)}/{run['id']}/finish/", {
        "runner": "sandbox-7", "status": "completed", "summary": "Done.", "pr_url": "https://github.com/acme/web/pull/5",
    }, value).status_code == 200
    body = APIClient().get(f"/api/projects/{project.id}/tasks/{task.id}/", **bearer(value)).json()
    [shown] = body["runs"]
    assert {k: shown[k] for k in ("status", "backend", "claimed_by", "progress", "summary", "pr_url", "error", "error_kind")} == {
        "status": "completed", "backend": "external", "claimed_by": "sandbox-7", "progress": "Running tests",
        "summary": "Done.", "pr_url": "https://github.com/acme/web/pull/5", "error": "", "error_kind": "",
    }
    assert shown["finished_at"] is not None
