"""Versioning proof: executions recorded by each version of the mention workflow all replay on today's code.

Versions: before the billing gate; with the gate and one activity per step; today's one
step (`handle_mention_activity`, then the picker only if needed). Invariant: deploying a
version never breaks a mention workflow that was already running (Temporal replays its
history against the new code), and today's executions keep replaying too. The negative
cases show the replay really checks: without the `patched()` guards, or with a step
removed too early, the same histories fail to replay.
"""
from __future__ import annotations

import base64
import json

import pytest
from temporalio.client import WorkflowHistory
from temporalio.worker import Replayer

from temporal.client import run_sync
from temporal.slack_mention.constants import ENFORCE_BILLING_QUOTA_ACTIVITY, HANDLE_MENTION_ACTIVITY
from temporal.slack_mention.patches import BILLING_GATE_PATCH, ONE_STEP_PATCH
from temporal.slack_mention.workflows import SlackMentionWorkflow
from tests.temporal.old_workflows import (
    SlackMentionWorkflowBeforeBillingGate,
    SlackMentionWorkflowBeforeOneStep,
    SlackMentionWorkflowUnguardedGate,
    SlackMentionWorkflowUnguardedOneStep,
)
from tests.temporal.record_histories import HISTORIES, RECORDINGS, recorded_workflow_id

BEFORE = "mention_before_billing_gate"
WITH = "mention_with_billing_gate"
ONE_STEP = "mention_one_step"
ALL = (BEFORE, WITH, ONE_STEP)


def load(stem: str) -> WorkflowHistory:
    return WorkflowHistory.from_json(recorded_workflow_id(stem), (HISTORIES / f"{stem}.json").read_text())


def replay(workflow_class: type, stem: str):
    return run_sync(Replayer(workflows=[workflow_class]).replay_workflow(load(stem), raise_on_replay_failure=False), timeout=30)


def activity_types(stem: str) -> list[str]:
    events = json.loads((HISTORIES / f"{stem}.json").read_text())["events"]
    return [
        e["activityTaskScheduledEventAttributes"]["activityType"]["name"]
        for e in events
        if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_SCHEDULED"
    ]


def patch_markers(stem: str) -> list[dict]:
    """The patch markers' decoded data, e.g. {"id": "<patch id>", "deprecated": false}."""
    events = json.loads((HISTORIES / f"{stem}.json").read_text())["events"]
    return [
        json.loads(base64.b64decode(payload["data"]))
        for e in events
        if e["eventType"] == "EVENT_TYPE_MARKER_RECORDED" and e["markerRecordedEventAttributes"]["markerName"] == "core_patch"
        for payload in e["markerRecordedEventAttributes"]["details"]["patch-data"]["payloads"]
    ]


def test_committed_histories_are_what_they_claim():
    assert set(RECORDINGS) == set(ALL)
    assert ENFORCE_BILLING_QUOTA_ACTIVITY not in activity_types(BEFORE) and patch_markers(BEFORE) == []
    assert activity_types(WITH)[0] == ENFORCE_BILLING_QUOTA_ACTIVITY
    assert patch_markers(WITH) == [{"id": BILLING_GATE_PATCH, "deprecated": False}]
    assert BILLING_GATE_PATCH == "posthog-code-slack-billing-gate"  # the id DESIGN.md names
    # All went through the picker and created the task.
    for stem in (BEFORE, WITH):
        assert activity_types(stem)[-3:] == ["route_repository_activity", "post_repo_picker_activity", "create_task_for_repo_activity"]
    # The one step: gate, lookup and routing in one activity, then the picker and the create.
    assert activity_types(ONE_STEP) == [HANDLE_MENTION_ACTIVITY, "post_repo_picker_activity", "create_task_for_repo_activity"]
    assert patch_markers(ONE_STEP) == [{"id": ONE_STEP_PATCH, "deprecated": False}]
    assert ONE_STEP_PATCH == "posthog-code-slack-mention-one-step"  # the id DESIGN.md names


@pytest.mark.parametrize("stem", ALL)
def test_todays_workflow_replays_every_history(stem):
    result = replay(SlackMentionWorkflow, stem)
    assert result.replay_failure is None, result.replay_failure


def test_todays_workflow_replays_every_history_in_one_run():
    async def replay_all():
        async def histories():
            for stem in ALL:
                yield load(stem)

        return await Replayer(workflows=[SlackMentionWorkflow]).replay_workflows(histories(), raise_on_replay_failure=True)

    results = run_sync(replay_all(), timeout=30)
    assert results.replay_failures == {}


def test_gate_without_the_patch_guard_would_break_running_executions():
    result = replay(SlackMentionWorkflowUnguardedGate, BEFORE)
    assert result.replay_failure is not None
    assert "nondetermin" in str(result.replay_failure).lower()


def test_removing_the_gate_too_early_would_break_executions_recorded_with_it():
    result = replay(SlackMentionWorkflowBeforeBillingGate, WITH)
    assert result.replay_failure is not None


def test_one_step_without_the_patch_guard_would_break_running_executions():
    for stem in (BEFORE, WITH):
        result = replay(SlackMentionWorkflowUnguardedOneStep, stem)
        assert result.replay_failure is not None, stem
        assert "nondetermin" in str(result.replay_failure).lower()


def test_removing_the_one_step_too_early_would_break_executions_recorded_with_it():
    result = replay(SlackMentionWorkflowBeforeOneStep, ONE_STEP)
    assert result.replay_failure is not None
