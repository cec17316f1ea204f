"""The task-run workflow with the built-in agent, end to end: mention -> task -> agent through the
real LLM gateway (in front of the fake provider) -> answer in the Slack thread.

The real worker (every workflow and activity) runs on this test's task queue; the mention
workflow's activity starts the run's workflow. Invariants: a run has ONE status message,
edited in place, and its outcome is posted ONCE; 👀 is swapped for the outcome's reaction;
a follow-up reaching a running agent is answered too; the gateway's 429 between two model
calls ends the run `quota_limited` with the usual denial; once the thread's message is
gone, nothing more is posted (and the run still finishes).
"""
from __future__ import annotations

import time

import pytest

from products.billing.facade import QuotaResource
from products.billing.models import UsageEvent
from products.billing.quota_limiting import add_limited_tokens
from products.tasks.models import TaskRun
from tests.temporal.slack_mention_helpers import CHANNEL, make_integration
from tests.temporal.task_run_helpers import (  # noqa: F401 - `worker` is a fixture
    STATUS_WORKING,
    mention,
    reactions,
    result_of,
    run_result,
    thread_steps,
    thread_texts,
    wait_until,
    worker,
)

pytestmark = pytest.mark.django_db(transaction=True)

DENIAL_START = "Your team has used its monthly AI credits."


@pytest.fixture
def agent(gateway_server, fake_upstream, settings):
    """The agent reaches the real gateway, which reaches the fake provider (gpt-4o-mini: a provider key is set)."""
    settings.LLM_GATEWAY_URL = gateway_server.base_url
    settings.LLM_AGENT_MODEL = ""
    return fake_upstream


def status_ts(slack_api, thread_ts: str) -> str:
    [status] = [m for m in slack_api.thread(CHANNEL, thread_ts) if m.get("metadata", {}).get("event_payload", {}).get("step") == "status"]
    return status["ts"]


def test_a_mention_is_answered_in_its_thread_with_one_status_message_and_one_result(
    accounts, slack_api, temporal, worker, agent, gateway_server, settings
):
    agent.respond("/chat/completions", text="Plan: 1. reproduce the flake 2. pin the clock")
    integration = make_integration(accounts, repositories=["acme/web"])

    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    created = result_of(temporal, workflow_id)
    final = run_result(temporal, created["run_id"])

    assert (final["status"], final["reported"], final["stopped"]) == ("completed", True, False)
    run = TaskRun.objects.get(pk=created["run_id"])
    assert (run.status, run.backend, run.summary) == ("completed", "builtin", "Plan: 1. reproduce the flake 2. pin the clock")
    # The thread: "On it", ONE status message (now saying done), ONE result: the agent's answer.
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result"]
    texts = thread_texts(slack_api, event["ts"])
    assert texts[1].startswith(":white_check_mark: Done.") and f"/tasks/{run.task_id}/" in texts[1]
    assert texts[2] == "Plan: 1. reproduce the flake 2. pin the clock"
    assert len(slack_api.calls_to("chat.postMessage")) == 3
    [first_status] = [c for c in slack_api.calls_to("chat.postMessage") if c.args["text"].startswith(STATUS_WORKING)]
    [update] = slack_api.calls_to("chat.update")  # the status message, edited in place
    assert update.args["ts"] == status_ts(slack_api, event["ts"]) and update.args["channel"] == CHANNEL
    assert first_status.args["thread_ts"] == event["ts"]
    assert reactions(slack_api, event["ts"]) == [
        ("reactions.add", "eyes"), ("reactions.remove", "eyes"), ("reactions.add", "white_check_mark"),
    ]
    # One model call, through the gateway (the provider saw the gateway's key, not ours), with the task in it.
    [call] = agent.calls_to("/chat/completions")
    assert call.body["model"] == "gpt-4o-mini"
    assert "fix the flaky login test" in call.body["messages"][1]["content"]
    gateway_server.wait_for_usage()
    [usage] = UsageEvent.objects.filter(project=integration.project, product="slack_app")
    assert usage.billable


def _mention_then_follow_up_while_the_first_turn_is_in_flight(temporal, settings, integration, agent, *, before_release=None):
    """Mention; while the agent's first model call is held by the provider, mention again in the thread."""
    agent.respond("/chat/completions", text="First answer: look at the session cookie.", first_byte_delay=5)
    agent.respond("/chat/completions", text="Second answer: the signup test has the same flake.")
    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    created = result_of(temporal, workflow_id)
    wait_until(lambda: agent.calls_to("/chat/completions"), what="the agent's first model call")

    _, followup_id = mention(temporal, settings, integration, "also check the signup test", thread_ts=event["ts"])
    forwarded = result_of(temporal, followup_id)
    assert (forwarded["outcome"], forwarded["run_id"], forwarded["resumed"]) == ("followup_forwarded", created["run_id"], False)
    assert len(agent.calls_to("/chat/completions")) == 1, "the first turn is still in flight"
    if before_release is not None:
        before_release()
    return event, created["run_id"]


def test_a_follow_up_reaching_a_running_agent_is_answered_too(accounts, slack_api, temporal, worker, agent, settings):
    integration = make_integration(accounts, repositories=["acme/web"])

    event, run_id = _mention_then_follow_up_while_the_first_turn_is_in_flight(temporal, settings, integration, agent)
    final = run_result(temporal, run_id)

    assert final["status"] == "completed"
    assert TaskRun.objects.get(pk=run_id).summary == "Second answer: the signup test has the same flake."
    # Both answered in the thread: the first as a reply, the second as the run's result; one status message.
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "answer-1", "result"]
    texts = thread_texts(slack_api, event["ts"])
    assert texts[2:] == ["First answer: look at the session cookie.", "Second answer: the signup test has the same flake."]
    # The second model call carried the whole conversation: the task, the first answer, the follow-up.
    first, second = agent.calls_to("/chat/completions")
    roles = [m["role"] for m in second.body["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert second.body["messages"][2]["content"] == "First answer: look at the session cookie."
    assert "also check the signup test" in second.body["messages"][3]["content"]
    assert reactions(slack_api, event["ts"])[-1] == ("reactions.add", "white_check_mark")


def test_quota_running_out_between_two_model_calls_ends_the_run_quota_limited_with_the_denial(
    accounts, slack_api, temporal, worker, agent, settings
):
    """A quota that runs out mid-run stops the run at the next model call (the gateway's 429), never later."""
    integration = make_integration(accounts, repositories=["acme/web"])

    def run_out_of_credits() -> None:
        add_limited_tokens(QuotaResource.AI_CREDITS, {integration.project.api_token: time.time() + 3600})

    event, run_id = _mention_then_follow_up_while_the_first_turn_is_in_flight(
        temporal, settings, integration, agent, before_release=run_out_of_credits
    )
    final = run_result(temporal, run_id)

    assert final["status"] == "quota_limited"
    run = TaskRun.objects.get(pk=run_id)
    assert (run.status, run.error_kind) == ("quota_limited", "quota_limited")
    # The first turn was answered; the second never reached the provider; the thread got the usual denial, once.
    assert len(agent.calls_to("/chat/completions")) == 1
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "answer-1", "failure"]
    texts = thread_texts(slack_api, event["ts"])
    assert texts[2] == "First answer: look at the session cookie."
    assert texts[3].startswith(DENIAL_START)
    assert texts[1].startswith(":octagonal_sign: Stopped: your team is out of AI credits.")
    assert reactions(slack_api, event["ts"])[-2:] == [("reactions.remove", "eyes"), ("reactions.add", "octagonal_sign")]


def test_once_the_status_message_is_deleted_nothing_more_is_posted_and_the_run_still_finishes(
    accounts, slack_api, temporal, worker, agent, settings
):
    agent.respond("/chat/completions", text="An answer nobody will see in Slack.", first_byte_delay=2)
    integration = make_integration(accounts, repositories=["acme/web"])

    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    created = result_of(temporal, workflow_id)
    ts = wait_until(lambda: [m["ts"] for m in slack_api.thread(CHANNEL, event["ts"]) if m["text"].startswith(STATUS_WORKING)],
                    what="the status message")[0]
    slack_api.delete(CHANNEL, ts)  # someone deletes it while the agent works
    final = run_result(temporal, created["run_id"])

    assert (final["status"], final["stopped"], final["reported"]) == ("completed", True, False)
    assert TaskRun.objects.get(pk=created["run_id"]).summary == "An answer nobody will see in Slack."
    # The edit was refused (message_not_found); after it: no reaction swap, no result.
    [update] = slack_api.calls_to("chat.update")
    assert update.args["ts"] == ts
    assert thread_steps(slack_api, event["ts"]) == ["on_it"]
    assert len(slack_api.calls_to("chat.postMessage")) == 2
    assert reactions(slack_api, event["ts"]) == [("reactions.add", "eyes")]


def test_a_model_the_gateway_refuses_fails_the_run_with_a_hint_posted_once(accounts, slack_api, temporal, worker, agent, settings):
    """A refusal no retry can fix (a 4xx other than 429) fails the run at once instead of retrying for half an hour."""
    settings.LLM_AGENT_MODEL = "text-davinci-003"  # not one the slack_app product allows
    integration = make_integration(accounts, repositories=["acme/web"])

    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    final = run_result(temporal, result_of(temporal, workflow_id)["run_id"], timeout=30)

    assert final["status"] == "failed"
    assert not agent.calls_to("/chat/completions")  # the gateway refused it; the provider never saw it
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "failure"]
    failure = thread_texts(slack_api, event["ts"])[2]
    assert failure.startswith("Sorry, this task failed:") and "The agent could not answer" in failure
    assert reactions(slack_api, event["ts"])[-1] == ("reactions.add", "x")


def test_a_provider_failure_is_retried_and_the_answer_still_posted_once(accounts, slack_api, temporal, worker, agent, settings):
    """The gateway's 5xx is `AgentUnavailable`: Temporal retries the turn, and the thread sees one answer."""
    agent.respond("/chat/completions", status=500)
    agent.respond("/chat/completions", text="The answer after a retry.")
    integration = make_integration(accounts, repositories=["acme/web"])

    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    final = run_result(temporal, result_of(temporal, workflow_id)["run_id"])

    assert final["status"] == "completed"
    assert len(agent.calls_to("/chat/completions")) >= 2
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result"]
    assert thread_texts(slack_api, event["ts"])[2] == "The answer after a retry."


def test_a_turn_that_cannot_report_leaves_it_to_the_conclude_step_without_asking_the_model_again(
    accounts, slack_api, temporal, worker, agent, settings
):
    """The turn concludes the run itself; when Slack fails it there (a 5xx on the last status edit), the
    answer is kept, the workflow's conclude step retries the report, and the model is asked once."""
    agent.respond("/chat/completions", text="Plan: pin the clock.")
    slack_api.respond("chat.update", status=500, body={"ok": False, "error": "internal_error"})
    integration = make_integration(accounts, repositories=["acme/web"])

    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    final = run_result(temporal, result_of(temporal, workflow_id)["run_id"])

    assert (final["status"], final["reported"]) == ("completed", True)
    assert len(agent.calls_to("/chat/completions")) == 1
    assert len(slack_api.calls_to("chat.update")) == 2  # the failed edit in the turn, the conclude step's
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result"]
    assert thread_texts(slack_api, event["ts"])[2] == "Plan: pin the clock."
    assert reactions(slack_api, event["ts"])[-1] == ("reactions.add", "white_check_mark")
