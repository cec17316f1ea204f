"""The Slack mention workflow end to end: a real worker (built by `temporal.worker.build_worker`,
so the sandbox loads the real workflow module) on the session's Temporal dev server, real
PostgreSQL and Redis, and Slack's Web API stood in for on loopback.

Invariants protected here:
- a mention becomes exactly one task in the right repository, tied to its thread, announced once;
- no money is spent for a team out of AI credits, whenever the credits run out;
- later mentions in the thread reach the task (resuming a finished run), and only in quota;
- Slack's rate limits delay work instead of blocking a worker thread or losing it.
"""
from __future__ import annotations

import asyncio
import json
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity
from temporalio.client import WorkflowFailureError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from products.billing.quota_limiting import QuotaResource, QuotaStateUnavailable, add_limited_tokens
from products.slack_app.models import Integration, SlackThreadTaskMapping
from products.tasks.models import Task, TaskFollowUp, TaskRun
from temporal.client import run_sync
from temporal.slack_mention import activities
from temporal.slack_mention.constants import (
    ENFORCE_BILLING_QUOTA_ACTIVITY,
    SIGNAL_NO_REPO_NEEDED,
    SIGNAL_REPO_SELECTED,
    SLACK_RATE_LIMITED_ERROR,
)
from temporal.slack_mention.types import (
    OUTCOME_FOLLOWUP_DENIED,
    OUTCOME_FOLLOWUP_FORWARDED,
    OUTCOME_PICKER_TIMED_OUT,
    OUTCOME_QUOTA_LIMITED,
    OUTCOME_TASK_CREATED,
    OUTCOME_TASK_DENIED,
    CreateTaskInput,
    EnforceQuotaInput,
    HandleMentionInput,
    QuotaGateResult,
)
from temporal.worker import ACTIVITIES
from tests.temporal.old_workflows import SlackMentionWorkflowBeforeOneStep
from tests.temporal.slack_mention_helpers import (
    BOT_TOKEN,
    CHANNEL,
    make_integration,
    mention_event,
    mention_input,
    run_mention,
    wait_until,
)

pytestmark = pytest.mark.django_db(transaction=True)

DENIAL = "Your team has used its monthly AI credits. Top up at http://testserver/billing to continue."
APOLOGY = "Sorry, something went wrong while starting this task. Please try again."


def run(temporal, inp, **kwargs):
    result, _handle = run_sync(run_mention(temporal.client, inp, **kwargs), timeout=45)
    return result


def posts_in_thread(slack_api, thread_ts: str) -> list[str]:
    return [c.args.get("text") for c in slack_api.calls_to("chat.postMessage") if c.args.get("thread_ts") == thread_ts]


def limit_project(project) -> None:
    add_limited_tokens(QuotaResource.AI_CREDITS, {project.api_token: time.time() + 3600})


def on_it(task: Task) -> str:
    return f"On it! Follow along at http://testserver/tasks/{task.pk}/"


def picker_calls(slack_api):
    return [c for c in slack_api.calls_to("chat.postMessage") if c.args.get("blocks")]


def only_task() -> Task:
    tasks = list(Task.objects.all())
    assert len(tasks) == 1, tasks
    return tasks[0]


def create_thread_task(temporal, integration, text="fix the login page in acme/web", user="UALICE"):
    """Start a task the way a first mention does; return (its event, its task)."""
    event = mention_event(text, user=user)
    result = run(temporal, mention_input(integration, event))
    assert result.outcome == OUTCOME_TASK_CREATED, result
    return event, Task.objects.get(pk=result.task_id)


def gate_then_credits_run_out(inp: EnforceQuotaInput) -> QuotaGateResult:
    """The real first gate (it passes), then the project's credits run out before the next step."""
    result = activities.enforce_billing_quota_activity(inp)
    limit_project(Integration.objects.get(pk=inp.integration_id).project)
    return result


gate_then_credits_run_out = activity.defn(name=ENFORCE_BILLING_QUOTA_ACTIVITY)(gate_then_credits_run_out)
ACTIVITIES_WITH_CREDITS_RUNNING_OUT = [
    gate_then_credits_run_out if a is activities.enforce_billing_quota_activity else a for a in ACTIVITIES
]


# --- Routing -----------------------------------------------------------------------------------


def test_repository_named_in_the_text_becomes_the_task(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    event = mention_event("the <https://x.io|login> endpoint 500s, fix it in acme/api please")

    result = run(temporal, mention_input(integration, event))

    task = only_task()
    assert result.outcome == OUTCOME_TASK_CREATED and result.task_id == task.pk and result.repository == "acme/api"
    assert task.repository == "acme/api" and task.origin_product == "slack" and task.project == integration.project
    assert task.title == "the login endpoint 500s, fix it in acme/api please"
    # People and channels by name (the task page shows the text as is), not as Slack ids.
    assert "Requested in Slack by @user-UALICE in #channel-cwork" in task.description
    assert "the login endpoint 500s" in task.description and "<@" not in task.description
    run_row = TaskRun.objects.get(task=task)
    assert run_row.status == TaskRun.Status.QUEUED and result.run_id == run_row.pk
    mapping = SlackThreadTaskMapping.objects.get(integration=integration, channel=CHANNEL, thread_ts=event["ts"])
    assert (mapping.task, mapping.task_run, mapping.mentioning_slack_user_id) == (task, run_row, "UALICE")
    assert mapping.workflow_id.startswith("posthog-code-mention-") and mapping.reply_ts
    # In Slack: 👀 on the mention, then one "On it" with the link, in the mention's thread, as the bot.
    [reaction] = slack_api.calls_to("reactions.add")
    assert (reaction.args["name"], reaction.args["timestamp"], reaction.args["channel"]) == ("eyes", event["ts"], CHANNEL)
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(task)]
    assert {c.token for c in slack_api.calls} == {BOT_TOKEN}
    assert picker_calls(slack_api) == []


def test_the_only_repository_is_used_when_the_text_names_none(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/solo"])
    result = run(temporal, mention_input(integration, mention_event("the build is red")))
    assert result.outcome == OUTCOME_TASK_CREATED and only_task().repository == "acme/solo"


def test_the_default_repository_is_used_when_several_exist(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"], default="acme/api")
    result = run(temporal, mention_input(integration, mention_event("the build is red")))
    assert result.outcome == OUTCOME_TASK_CREATED and only_task().repository == "acme/api"
    assert picker_calls(slack_api) == []


def test_picker_answer_chooses_the_repository(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    event = mention_event("the build is red")
    inp = mention_input(integration, event)

    async def answer(handle):
        [picker] = await wait_until(lambda: picker_calls(slack_api))
        buttons = [b["elements"][0] for b in picker.args["blocks"] if b["type"] == "actions"]
        values = [json.loads(b["value"]) for b in buttons]
        assert [v.get("repository") for v in values] == ["acme/web", "acme/api", None]
        assert {v["workflow_id"] for v in values} == {handle.id} and picker.args["thread_ts"] == event["ts"]
        await handle.signal(SIGNAL_REPO_SELECTED, "evil/not-offered")  # ignored: not on the picker
        await handle.signal(SIGNAL_REPO_SELECTED, "acme/web")
        await handle.signal(SIGNAL_NO_REPO_NEEDED)  # too late: the first answer stands

    result = run(temporal, inp, while_running=answer)

    task = only_task()
    assert result.outcome == OUTCOME_TASK_CREATED and task.repository == "acme/web" == result.repository
    assert posts_in_thread(slack_api, event["ts"])[-1] == on_it(task)


def test_picker_no_repository_creates_a_task_without_one(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])

    async def answer(handle):
        await wait_until(lambda: picker_calls(slack_api))
        await handle.signal(SIGNAL_NO_REPO_NEEDED)

    result = run(temporal, mention_input(integration, mention_event("write a haiku")), while_running=answer)
    assert result.outcome == OUTCOME_TASK_CREATED and result.repository is None
    assert only_task().repository == ""


def test_unanswered_picker_times_out_after_15_minutes(slack_api, accounts):
    """Time skipping: the 15-minute wait passes instantly, with the real activities."""
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    event = mention_event("the build is red")
    inp = mention_input(integration, event)
    test_server = Path(sys.executable).parent / "temporal-test-server"

    async def go():
        env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=str(test_server))
        async with env:
            started = await env.get_current_time()
            result, _ = await run_mention(env.client, inp)
            return result, await env.get_current_time() - started

    result, elapsed = run_sync(go(), timeout=60)

    assert result.outcome == OUTCOME_PICKER_TIMED_OUT
    assert elapsed >= timedelta(minutes=15)
    texts = posts_in_thread(slack_api, event["ts"])
    assert len(texts) == 2 and texts[0] == "Which repository should I work in?"
    assert texts[1].startswith("I didn't hear back about which repository to use")
    assert not Task.objects.exists() and not SlackThreadTaskMapping.objects.exists()


# --- Quota ----------------------------------------------------------------------------------------


def test_over_quota_mention_is_refused_at_the_first_gate(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    limit_project(integration.project)
    event = mention_event("fix it")

    result = run(temporal, mention_input(integration, event))

    assert result.outcome == OUTCOME_QUOTA_LIMITED
    assert posts_in_thread(slack_api, event["ts"]) == [DENIAL]
    assert slack_api.calls_to("reactions.add") == []
    assert not Task.objects.exists() and not SlackThreadTaskMapping.objects.exists()


def test_credits_running_out_after_the_first_gate_stop_task_creation(temporal, slack_api, accounts):
    """Quota can run out while a workflow is under way: the create activity checks again.

    (Run by the version with one activity per step, whose executions may still be open; today's
    one step reads quota once, moments before it creates the task, and again only after asking
    the routing model, a billed call that takes time.)
    """
    integration = make_integration(accounts, repositories=["acme/web"])
    event = mention_event("fix it")

    result = run(
        temporal, mention_input(integration, event), activities=ACTIVITIES_WITH_CREDITS_RUNNING_OUT,
        workflow_class=SlackMentionWorkflowBeforeOneStep,
    )

    assert result.outcome == OUTCOME_TASK_DENIED
    assert posts_in_thread(slack_api, event["ts"]) == [DENIAL]
    assert slack_api.calls_to("reactions.add") == []
    assert not Task.objects.exists() and not SlackThreadTaskMapping.objects.exists()


# --- Follow-ups -----------------------------------------------------------------------------------


def test_followups_in_quota_reach_the_task_with_the_senders_name(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    first, task = create_thread_task(temporal, integration)
    [run_row] = task.runs.all()

    same_user = mention_event("also check the logout page", user="UALICE", thread_ts=first["ts"])
    other_user = mention_event("and the signup page too", user="UBOB", thread_ts=first["ts"])
    r1 = run(temporal, mention_input(integration, same_user))
    r2 = run(temporal, mention_input(integration, other_user))

    assert (r1.outcome, r2.outcome) == (OUTCOME_FOLLOWUP_FORWARDED, OUTCOME_FOLLOWUP_FORWARDED)
    assert r1.task_id == r2.task_id == task.pk and r1.run_id == r2.run_id == run_row.pk and not r2.resumed
    followups = list(TaskFollowUp.objects.order_by("id").values_list("run_id", "text", "author_slack_user_id", "author_name"))
    assert followups == [
        (run_row.pk, "also check the logout page", "UALICE", "user-UALICE"),
        (run_row.pk, "and the signup page too", "UBOB", "user-UBOB"),
    ]
    assert Task.objects.count() == 1 and task.runs.count() == 1
    assert posts_in_thread(slack_api, first["ts"]) == [on_it(task)]  # no second "On it"
    reacted = [c.args["timestamp"] for c in slack_api.calls_to("reactions.add")]
    assert reacted == [first["ts"], same_user["ts"], other_user["ts"]]


def test_followup_over_quota_is_refused_and_not_forwarded(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    first, task = create_thread_task(temporal, integration)

    limit_project(integration.project)
    reply = mention_event("also the logout page", thread_ts=first["ts"])
    result = run(temporal, mention_input(integration, reply))

    assert result.outcome == OUTCOME_QUOTA_LIMITED
    assert posts_in_thread(slack_api, first["ts"]) == [on_it(task), DENIAL]
    assert not TaskFollowUp.objects.exists()


def test_followup_activity_gates_on_quota_itself(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    first, task = create_thread_task(temporal, integration)

    reply = mention_event("also the logout page", thread_ts=first["ts"])
    # The gate stand-in is a step of the version with one activity per step (see above).
    result = run(
        temporal, mention_input(integration, reply), activities=ACTIVITIES_WITH_CREDITS_RUNNING_OUT,
        workflow_class=SlackMentionWorkflowBeforeOneStep,
    )

    assert result.outcome == OUTCOME_FOLLOWUP_DENIED and result.task_id == task.pk
    assert posts_in_thread(slack_api, first["ts"]) == [on_it(task), DENIAL]
    assert not TaskFollowUp.objects.exists() and task.runs.count() == 1


def test_followup_to_a_finished_run_starts_a_run_resuming_it(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    first, task = create_thread_task(temporal, integration)
    finished = task.runs.get()
    finished.status = TaskRun.Status.COMPLETED
    finished.save()

    result = run(temporal, mention_input(integration, mention_event("one more thing", user="UBOB", thread_ts=first["ts"])))

    assert result.outcome == OUTCOME_FOLLOWUP_FORWARDED and result.resumed
    new_run = task.runs.exclude(pk=finished.pk).get()
    assert result.run_id == new_run.pk and new_run.resume_from == finished and new_run.status == TaskRun.Status.QUEUED
    assert list(new_run.followups.values_list("text", flat=True)) == ["one more thing"]
    assert SlackThreadTaskMapping.objects.get(task=task).task_run == new_run


# --- Idempotency, Slack errors, failures --------------------------------------------------------


def _create_input(integration, event, workflow_id="posthog-code-mention-T1:EvTWICE") -> CreateTaskInput:
    return CreateTaskInput(
        integration_id=integration.pk,
        workflow_id=workflow_id,
        channel=event["channel"],
        thread_ts=event["ts"],
        event_ts=event["ts"],
        user=event["user"],
        text=event["text"],
        repository="acme/web",
    )


def test_create_activity_run_twice_makes_one_task_and_one_reply(slack_api, accounts):
    """A retried or replayed create never makes a second task nor says "On it" twice."""
    integration = make_integration(accounts, repositories=["acme/web"])
    event = mention_event("fix it")
    inp = _create_input(integration, event)

    first = activities.create_task_for_repo_activity(inp)
    second = activities.create_task_for_repo_activity(inp)

    task = only_task()
    assert first.created and not second.created
    assert (first.task_id, first.run_id) == (second.task_id, second.run_id) == (task.pk, task.runs.get().pk)
    assert SlackThreadTaskMapping.objects.count() == 1
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(task)]


def _one_step_input(integration, event, workflow_id="wf-one-step") -> HandleMentionInput:
    return HandleMentionInput(
        integration_id=integration.pk,
        workflow_id=workflow_id,
        channel=event["channel"],
        thread_ts=event.get("thread_ts") or event["ts"],
        event_ts=event["ts"],
        user=event["user"],
        text=event["text"],
    )


def test_one_step_run_again_after_it_created_the_task_makes_one_task_and_one_reply(slack_api, accounts):
    """The one step retried after it created the task (a worker killed after the post): the same task,
    "On it" once, and no quota gate: the work was accepted, so credits running out since change nothing."""
    integration = make_integration(accounts, repositories=["acme/web"])
    event = mention_event("fix it")
    inp = _one_step_input(integration, event)

    first = activities.handle_mention_activity(inp)
    limit_project(integration.project)
    second = activities.handle_mention_activity(inp)

    task = only_task()
    assert first.created.created and not second.created.created and not second.limited
    assert (first.created.task_id, first.created.run_id) == (second.created.task_id, second.created.run_id) == (task.pk, task.runs.get().pk)
    assert first.repository == second.repository == "acme/web"
    assert SlackThreadTaskMapping.objects.count() == 1
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(task)]


def test_one_step_over_quota_does_nothing_but_deny(slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    limit_project(integration.project)
    event = mention_event("fix it")

    result = activities.handle_mention_activity(_one_step_input(integration, event))

    assert result.limited and result.created is None and not result.needs_picker
    assert posts_in_thread(slack_api, event["ts"]) == [DENIAL]
    assert slack_api.calls_to("reactions.add") == [] and not Task.objects.exists()


def test_one_step_stops_before_the_picker(slack_api, accounts):
    """When the rules cannot choose, the step posts nothing: the workflow posts the picker and waits."""
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    event = mention_event("the login page 500s")

    result = activities.handle_mention_activity(_one_step_input(integration, event))

    assert result.needs_picker and result.repositories == ["acme/web", "acme/api"] and result.created is None
    assert slack_api.calls_to("chat.postMessage") == [] and not Task.objects.exists()


def test_slack_rate_limit_fails_the_attempt_with_retry_after_as_the_delay(slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    slack_api.respond("reactions.add", status=429, headers={"Retry-After": "7"}, body={"ok": False, "error": "ratelimited"})

    with pytest.raises(ApplicationError) as raised:
        activities.create_task_for_repo_activity(_create_input(integration, mention_event("fix it")))

    assert raised.value.next_retry_delay == timedelta(seconds=7)
    assert raised.value.type == SLACK_RATE_LIMITED_ERROR and not raised.value.non_retryable
    assert not Task.objects.exists()


def test_workflow_waits_out_a_slack_rate_limit_and_finishes(temporal, slack_api, accounts):
    integration = make_integration(accounts, repositories=["acme/web"])
    slack_api.respond("reactions.add", status=429, headers={"Retry-After": "1"}, body={"ok": False, "error": "ratelimited"})
    event = mention_event("fix it")

    started = time.monotonic()
    result = run(temporal, mention_input(integration, event))

    assert result.outcome == OUTCOME_TASK_CREATED and time.monotonic() - started >= 1
    assert len(slack_api.calls_to("reactions.add")) == 2
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(only_task())]


def test_unexpected_failure_apologises_in_the_thread_and_fails_the_workflow(temporal, slack_api, accounts):
    """A failure retrying cannot fix (the channel vanished under the "On it" post): say sorry, fail, don't retry."""
    integration = make_integration(accounts, repositories=["acme/web"])
    slack_api.respond("chat.postMessage", body={"ok": False, "error": "channel_not_found"}, times=1)
    event = mention_event("fix it")

    result = run(temporal, mention_input(integration, event))

    assert isinstance(result, WorkflowFailureError)
    assert isinstance(result.cause, ApplicationError) and result.cause.type == "SlackMentionFailed"
    assert "channel_not_found" in str(result.cause)
    task = Task.objects.get()
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(task), APOLOGY]  # the failed post, then the apology
    assert len(slack_api.calls_to("chat.postMessage")) == 2  # not retried


def test_a_bot_without_the_reactions_scope_still_gets_its_task(temporal, slack_api, accounts):
    """The 👀 is a courtesy: a missing `reactions:write` scope must not block the work."""
    integration = make_integration(accounts, repositories=["acme/web"])
    slack_api.respond("reactions.add", body={"ok": False, "error": "missing_scope"}, times=None)
    event = mention_event("fix it")

    result = run(temporal, mention_input(integration, event))

    task = Task.objects.get()
    assert task.repository == "acme/web"
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(task)]
    assert not isinstance(result, WorkflowFailureError)


# --- Quota state unavailable ----------------------------------------------------------------------

DEAD_REDIS = "redis://127.0.0.1:9/5"  # nothing listens on the discard port


def test_gate_raises_rather_than_failing_open_when_redis_is_down(slack_api, accounts, settings):
    integration = make_integration(accounts, repositories=["acme/web"])
    settings.REDIS_URL = DEAD_REDIS

    with pytest.raises(QuotaStateUnavailable):
        activities.enforce_billing_quota_activity(
            EnforceQuotaInput(integration_id=integration.pk, channel=CHANNEL, thread_ts="1.1", user="UALICE")
        )
    assert slack_api.calls == []


def test_a_redis_blip_delays_the_workflow_but_never_lets_work_through_unchecked(temporal, slack_api, accounts, settings):
    """A quota-infra blip must neither kill a healthy mention nor skip its quota check."""
    integration = make_integration(accounts, repositories=["acme/web"])
    event = mention_event("fix it")
    redis_url = settings.REDIS_URL
    settings.REDIS_URL = DEAD_REDIS
    seen_while_down = {}

    async def redis_comes_back(handle):
        async def gate_attempts():
            pending = (await handle.describe()).raw_description.pending_activities
            return pending[0].attempt if pending else 0

        deadline = asyncio.get_running_loop().time() + 10
        while await gate_attempts() < 2 and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.1)
        seen_while_down.update(slack_calls=len(slack_api.calls), attempts=await gate_attempts())
        settings.REDIS_URL = redis_url

    result = run(temporal, mention_input(integration, event), while_running=redis_comes_back)

    assert seen_while_down["attempts"] >= 2 and seen_while_down["slack_calls"] == 0
    assert result.outcome == OUTCOME_TASK_CREATED
    assert posts_in_thread(slack_api, event["ts"]) == [on_it(only_task())]


def test_mention_inside_an_untracked_thread_starts_a_task_with_the_thread_as_context(temporal, slack_api, accounts):
    """A thread not yet tied to a task gets one (keyed on the thread), described with what was said before."""
    integration = make_integration(accounts, repositories=["acme/web"])
    parent_ts = "1699999999.000100"
    event = mention_event("can you fix this?", user="UBOB", thread_ts=parent_ts)
    slack_api.respond(
        "conversations.replies",
        body={
            "ok": True,
            "messages": [
                {"ts": parent_ts, "user": "UALICE", "text": "checkout crashes on empty carts"},
                {"ts": event["ts"], "user": "UBOB", "text": event["text"]},
            ],
        },
    )

    result = run(temporal, mention_input(integration, event))

    task = only_task()
    assert result.outcome == OUTCOME_TASK_CREATED and task.title == "can you fix this?"
    assert "Earlier in the thread:\n@user-UALICE: checkout crashes on empty carts" in task.description
    assert "@user-UBOB: can you fix this?" not in task.description  # the mention itself is not repeated as context
    [replies] = slack_api.calls_to("conversations.replies")
    assert (replies.args["channel"], replies.args["ts"]) == (CHANNEL, parent_ts)
    assert SlackThreadTaskMapping.objects.get(task=task).thread_ts == parent_ts
    assert posts_in_thread(slack_api, parent_ts) == [on_it(task)]
    assert slack_api.calls_to("reactions.add")[0].args["timestamp"] == event["ts"]
