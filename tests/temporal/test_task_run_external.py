"""The task-run workflow with external runners, end to end: mention -> task -> a runner working the
run through the REST protocol -> the Slack thread.

The real worker runs on this test's task queue; the runner is this test, calling the real
REST API with a project-scoped `task:write` key (whose views signal the workflow through
`temporal.client.notify_task_run`). Invariants: the status message is ONE message edited
on each new progress line; a pull-request URL becomes a card with buttons posted ONCE,
even when the runner's finish call is retried; a runner that stops heartbeating fails the
run and the thread is told once, with a hint; a follow-up reaches the runner through its
cursor; a follow-up after the run ended resumes the task as a new run with its own report.
"""
from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from products.tasks.models import TaskRun
from tests.temporal.slack_mention_helpers import CHANNEL, make_integration
from tests.temporal.task_run_helpers import (  # noqa: F401 - `worker` is a fixture
    STATUS_WAITING,
    STATUS_WORKING,
    mention,
    reactions,
    result_of,
    run_result,
    thread_steps,
    thread_texts,
    use_external_runners,
    wait_until,
    worker,
)

pytestmark = pytest.mark.django_db(transaction=True)

PR_URL = "https://github.com/acme/web/pull/42"


class Runner:
    """An external runner speaking the REST protocol with a project-scoped `task:write` key."""

    def __init__(self, accounts, project, name: str = "sandbox-1") -> None:
        user = accounts.user(project.organization)
        _, self.key = accounts.key(user, scopes=("task:write",), projects=(project,))
        self.project = project
        self.name = name
        self.http = Client()

    def _post(self, path: str, body: dict):
        return self.http.post(
            f"/api/projects/{self.project.pk}/task_runs/{path}", data=json.dumps({"runner": self.name, **body}),
            content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {self.key}",
        )

    def claim(self, wait: float = 10) -> dict:
        """Claim the next queued run, polling as a runner does: a run is claimable once its workflow queued it,
        moments after the mention workflow that created it returned (204 until then)."""
        deadline = time.monotonic() + wait
        response = self._post("claim/", {})
        while response.status_code == 204 and time.monotonic() < deadline:
            time.sleep(0.1)
            response = self._post("claim/", {})
        assert response.status_code == 200, response.content
        return response.json()

    def progress(self, run_id: int, line: str):
        return self._post(f"{run_id}/progress/", {"line": line})

    def finish(self, run_id: int, **body):
        return self._post(f"{run_id}/finish/", body)

    def followups(self, run_id: int, after: int = 0) -> dict:
        response = self.http.get(
            f"/api/projects/{self.project.pk}/task_runs/{run_id}/followups/?after={after}", HTTP_AUTHORIZATION=f"Bearer {self.key}"
        )
        assert response.status_code == 200, response.content
        return response.json()


@pytest.fixture
def external(accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    use_external_runners(integration.project)
    return integration, Runner(accounts, integration.project)


def status_updates(slack_api) -> list[str]:
    return [c.args["text"] for c in slack_api.calls_to("chat.update")]


def test_a_runners_pull_request_becomes_one_card_even_when_its_finish_call_is_retried(
    slack_api, temporal, worker, settings, external
):
    integration, runner = external
    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    run_id = result_of(temporal, workflow_id)["run_id"]
    wait_until(lambda: thread_texts(slack_api, event["ts"])[1:2] and thread_texts(slack_api, event["ts"])[1].startswith(STATUS_WAITING),
               what="the status message saying it waits for a runner")

    claimed = runner.claim()
    assert claimed["id"] == run_id
    wait_until(lambda: any(t.startswith(STATUS_WORKING) for t in status_updates(slack_api)), what="the claim shown")
    for line in ("Cloning acme/web", "Running the test suite"):
        assert runner.progress(run_id, line).status_code == 200
        wait_until(lambda: any(line in t for t in status_updates(slack_api)), what=f"the status showing {line!r}")
    finish = dict(status="completed", summary="Pinned the clock in the login test.", pr_url=PR_URL)
    assert runner.finish(run_id, **finish).status_code == 200
    assert runner.finish(run_id, **finish).status_code == 200  # the runner retried: its first answer was lost
    final = run_result(temporal, run_id)

    assert (final["status"], final["reported"]) == ("completed", True)
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result"]
    # One status message, edited in place on each change: claimed, each progress line, done.
    status = slack_api.thread(CHANNEL, event["ts"])[1]
    assert {c.args["ts"] for c in slack_api.calls_to("chat.update")} == {status["ts"]}
    updates = status_updates(slack_api)
    assert [u.split("  <")[0] for u in updates] == [
        STATUS_WORKING,
        f"{STATUS_WORKING}\n> Cloning acme/web",
        f"{STATUS_WORKING}\n> Running the test suite",
        ":white_check_mark: Done.",
    ]
    assert status["text"].startswith(":white_check_mark: Done.")
    # The card, once: the summary and a "View pull request" button to the URL.
    cards = [c for c in slack_api.calls_to("chat.postMessage") if c.args.get("blocks")]
    assert len(cards) == 1
    blocks = cards[0].args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons = {e["text"]["text"]: e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert buttons["View pull request"] == PR_URL
    assert "Pinned the clock in the login test." in blocks[0]["text"]["text"]
    assert reactions(slack_api, event["ts"])[-2:] == [("reactions.remove", "eyes"), ("reactions.add", "white_check_mark")]
    assert TaskRun.objects.get(pk=run_id).pr_url == PR_URL


def test_a_runner_that_stops_heartbeating_fails_the_run_and_the_thread_is_told_once(
    slack_api, temporal, worker, settings, external
):
    """A run must never stay in_progress forever because its runner died: the workflow's poll fails it."""
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 2
    integration, runner = external
    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    run_id = result_of(temporal, workflow_id)["run_id"]
    runner.claim()
    assert runner.progress(run_id, "Cloning acme/web").status_code == 200
    # ... and the runner dies: no heartbeat, no progress, no finish.

    final = run_result(temporal, run_id, timeout=60)

    assert final["status"] == "failed"
    run = TaskRun.objects.get(pk=run_id)
    assert (run.status, run.error_kind) == ("failed", "runner_lost")
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "failure"]
    failure = thread_texts(slack_api, event["ts"])[2]
    assert failure.startswith("Sorry, this task failed:")
    assert "The runner stopped responding" in failure
    assert thread_texts(slack_api, event["ts"])[1].startswith(":x: This run failed.")
    assert reactions(slack_api, event["ts"])[-2:] == [("reactions.remove", "eyes"), ("reactions.add", "x")]
    # The runner comes back too late: refused, and the thread hears nothing more.
    late = runner.finish(run_id, status="completed", summary="done after all")
    assert late.status_code == 409
    assert len(slack_api.calls_to("chat.postMessage")) == 3


def test_a_follow_up_reaches_the_runner_through_its_cursor_and_a_later_one_resumes_the_task(
    slack_api, temporal, worker, settings, external
):
    integration, runner = external
    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    run_id = result_of(temporal, workflow_id)["run_id"]
    claimed = runner.claim()

    # While the runner works: the follow-up is stored on the run and read through the cursor.
    _, followup_id = mention(temporal, settings, integration, "the signup test too, please", thread_ts=event["ts"])
    forwarded = result_of(temporal, followup_id)
    assert (forwarded["run_id"], forwarded["resumed"]) == (run_id, False)
    page = runner.followups(run_id, after=claimed.get("followups_cursor", 0))
    assert ["the signup test too, please" in f["text"] for f in page["followups"]] == [True]
    assert runner.finish(run_id, status="completed", summary="Both tests fixed.").status_code == 200
    assert run_result(temporal, run_id)["status"] == "completed"

    # After the run ended: a follow-up resumes the task as a new run, with its own workflow and report.
    later_event, later_id = mention(temporal, settings, integration, "now the logout test", thread_ts=event["ts"])
    resumed = result_of(temporal, later_id)
    assert resumed["resumed"] and resumed["run_id"] != run_id
    second = runner.claim()
    assert second["id"] == resumed["run_id"]
    assert runner.finish(second["id"], status="completed", summary="Logout test fixed.").status_code == 200
    assert run_result(temporal, second["id"])["status"] == "completed"

    texts = thread_texts(slack_api, event["ts"])
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result", "status", "result"]
    assert texts[2] == "Both tests fixed." and texts[4] == "Logout test fixed."
    # The resumed run's reaction swap is on the follow-up that resumed it.
    assert reactions(slack_api, later_event["ts"])[-2:] == [("reactions.remove", "eyes"), ("reactions.add", "white_check_mark")]
