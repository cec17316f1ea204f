"""Versioning proof for the task-run workflow: executions recorded by each of its versions replay on today's code.

Invariant: a change to the task-run workflow never breaks a run that is already open
(Temporal replays its history against the new code). The first version's histories are
the reference every later change must replay: one built-in run that answered a follow-up,
one external run with progress lines and a pull request. The second version
(ANSWER_CONCLUDES_PATCH: a built-in turn concludes the run itself) has its own recording
of the same built-in scenario. The negative cases show the replay really checks: code that
skips a step the history recorded, or that drops the patched branch too early, does not replay.

Record today's version (the first version's files are kept: they are what open runs of it
replay) with `RECORD_HISTORIES=1 pytest tests/temporal/test_task_run_versioning.py -k record_builtin`.
"""
from __future__ import annotations

import base64
import json
import os

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from temporal.client import run_sync, task_run_workflow_id
from temporal.task_run.workflows import TaskRunWorkflow
from temporal.task_run.patches import ANSWER_CONCLUDES_PATCH
from tests.temporal.altered_task_run_workflows import (
    TaskRunWorkflowBeforeAnswerConcludes,
    TaskRunWorkflowWithRegularFirstStep,
)
from tests.temporal.record_histories import HISTORIES

BUILTIN = "task_run_builtin_with_followup"
EXTERNAL = "task_run_external_with_pull_request"
BUILTIN_V2 = "task_run_builtin_answer_concludes"
RECORDED_ID = "task-run-recorded"


def load(stem: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(RECORDED_ID, (HISTORIES / f"{stem}.json").read_text())


def activity_types(stem: str) -> list[str]:
    """The activities the history ran, in order; local ones (recorded as markers) prefixed "local:"."""
    events = json.loads((HISTORIES / f"{stem}.json").read_text())["events"]
    names = []
    for e in events:
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED":
            names.append(e["activityTaskScheduledEventAttributes"]["activityType"]["name"])
        elif e["eventType"] == "EVENT_TYPE_MARKER_RECORDED" and e["markerRecordedEventAttributes"]["markerName"] == "core_local_activity":
            [payload] = e["markerRecordedEventAttributes"]["details"]["data"]["payloads"]
            names.append("local:" + json.loads(base64.b64decode(payload["data"]))["activity_type"])
    return names


def replay(workflow_class: type, stem: str):
    return run_sync(Replayer(workflows=[workflow_class]).replay_workflow(load(stem), raise_on_replay_failure=False), timeout=30)


def test_committed_histories_are_what_they_claim():
    builtin = activity_types(BUILTIN)
    # Started and shown in one local step; two agent turns (the task, then the follow-up); the first
    # turn's finish found the follow-up waiting (nothing reported), so its answer was posted as a reply.
    assert builtin == [
        "local:sync_task_run_activity",
        "answer_task_run_activity",
        "local:conclude_task_run_activity",
        "post_run_reply_activity",
        "answer_task_run_activity",
        "local:conclude_task_run_activity",
    ]
    external = activity_types(EXTERNAL)
    assert external[0] == "local:sync_task_run_activity" and "answer_task_run_activity" not in external
    assert external.count("sync_task_run_activity") >= 2  # polls: the claim, then the runner's progress line
    assert external[-1] == "conclude_task_run_activity"  # a regular activity: runners signal at the end
    # The second version, same scenario: each turn concluded the run itself (the first found the
    # follow-up waiting, so its answer was posted as a reply); no conclude step.
    assert activity_types(BUILTIN_V2) == [
        "local:sync_task_run_activity",
        "answer_task_run_activity",
        "post_run_reply_activity",
        "answer_task_run_activity",
    ]
    assert patch_ids(BUILTIN_V2) == [ANSWER_CONCLUDES_PATCH] and patch_ids(BUILTIN) == patch_ids(EXTERNAL) == []
    assert ANSWER_CONCLUDES_PATCH == "posthog-code-task-run-answer-concludes"  # the id DESIGN.md names


def patch_ids(stem: str) -> list[str]:
    events = json.loads((HISTORIES / f"{stem}.json").read_text())["events"]
    return [
        json.loads(base64.b64decode(payload["data"]))["id"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED" and e["markerRecordedEventAttributes"]["markerName"] == "core_patch"
        for payload in e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"]
    ]


@pytest.mark.parametrize("stem", [BUILTIN, EXTERNAL, BUILTIN_V2])
def test_todays_workflow_replays_every_versions_histories(stem):
    result = replay(TaskRunWorkflow, stem)
    assert result.replay_failure is None, result.replay_failure


def test_removing_the_concluding_turn_too_early_would_break_runs_recorded_with_it():
    result = replay(TaskRunWorkflowBeforeAnswerConcludes, BUILTIN_V2)
    assert result.replay_failure is not None


@pytest.mark.parametrize("stem", [BUILTIN, EXTERNAL])
def test_a_change_to_the_steps_without_a_patch_does_not_replay(stem):
    result = replay(TaskRunWorkflowWithRegularFirstStep, stem)
    assert result.replay_failure is not None


# --- Recording ---------------------------------------------------------------------------------


def _write(temporal, stem: str, run_id: int) -> None:
    async def fetch():
        return await temporal.client.get_workflow_handle(task_run_workflow_id(run_id)).fetch_history()

    history = run_sync(fetch(), timeout=30)
    (HISTORIES / f"{stem}.json").write_text(json.dumps(json.loads(history.to_json()), indent=1) + "\n")


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
@pytest.mark.django_db(transaction=True)
def test_record_builtin(accounts, slack_api, temporal, worker, gateway_server, fake_upstream, settings):
    from tests.temporal.slack_mention_helpers import make_integration
    from tests.temporal.task_run_helpers import run_result
    from tests.temporal.test_task_run_builtin import _mention_then_follow_up_while_the_first_turn_is_in_flight

    settings.LLM_GATEWAY_URL = gateway_server.base_url
    integration = make_integration(accounts, repositories=["acme/web"])
    _, run_id = _mention_then_follow_up_while_the_first_turn_is_in_flight(temporal, settings, integration, fake_upstream)
    assert run_result(temporal, run_id)["status"] == "completed"
    _write(temporal, BUILTIN_V2, run_id)


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="set RECORD_HISTORIES=1 to record")
@pytest.mark.django_db(transaction=True)
def test_record_external(accounts, slack_api, temporal, worker, settings):
    from tests.temporal.slack_mention_helpers import make_integration
    from tests.temporal.task_run_helpers import mention, result_of, run_result, use_external_runners, wait_until
    from tests.temporal.test_task_run_external import PR_URL, Runner

    integration = make_integration(accounts, repositories=["acme/web"])
    use_external_runners(integration.project)
    runner = Runner(accounts, integration.project)
    _, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    run_id = result_of(temporal, workflow_id)["run_id"]
    runner.claim()
    runner.progress(run_id, "Running the test suite")
    wait_until(lambda: any("Running the test suite" in c.args["text"] for c in slack_api.calls_to("chat.update")))
    runner.finish(run_id, status="completed", summary="Pinned the clock.", pr_url=PR_URL)
    assert run_result(temporal, run_id)["status"] == "completed"
    _write(temporal, EXTERNAL, run_id)


from tests.temporal.task_run_helpers import worker  # noqa: E402,F401 - the recorders' fixture
