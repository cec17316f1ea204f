"""What the Slack thread is told about a task run (products/slack_app/run_reports.py), through the
facade, against the Slack stand-in and the real tasks product.

Invariants: every post of a run is made at most once however often a step is retried; a
failure is posted with a hint that fits its kind; a pull request becomes a card with
buttons; once Slack says the message or thread is gone, the run posts nothing more; a
Slack rate limit is raised for the activity to retry after Retry-After.
"""
from __future__ import annotations

import json

import pytest

from products.slack_app import facade
from products.slack_app.models import BotMessage
from products.tasks.facade import create_task, finish_run, start_run

from .conftest import BOT_TOKEN  # noqa: F401 - the integration fixture's token

pytestmark = pytest.mark.django_db

CHANNEL = "C123"
THREAD = "1700000001.000100"


def make_run(integration):
    created = create_task(
        project=integration.project, title="Fix the flaky login test", description="from Slack", repository="acme/web",
        origin_product="slack", idempotency_key=None,
    )
    return created.run


def target(integration, run, **extra) -> facade.RunReportTarget:
    return facade.RunReportTarget(
        integration_id=integration.pk, run_id=run.pk, key=f"posthog-code-task-run-{run.pk}", channel=CHANNEL, thread_ts=THREAD,
        mention_ts=THREAD, **extra,
    )


def posts(slack_api) -> list[str]:
    return [c.args["text"] for c in slack_api.calls_to("chat.postMessage")]


def test_the_status_message_is_posted_once_then_edited(integration, slack_api):
    run = make_run(integration)
    first = facade.show_run_status(target(integration, run))
    again = facade.show_run_status(target(integration, run))  # a retried step, before it learned the ts
    assert first.ts and again.ts == first.ts
    assert len(slack_api.calls_to("chat.postMessage")) == 1

    start_run(run.pk)
    edited = facade.show_run_status(target(integration, run, status_ts=first.ts))
    assert edited.ts == first.ts
    [update] = slack_api.calls_to("chat.update")
    assert update.args["ts"] == first.ts and update.args["text"].startswith(":hourglass_flowing_sand: Working on it…")
    assert f"/tasks/{run.task_id}/" in update.args["text"]


def test_the_outcome_edits_a_status_message_whose_ts_the_workflow_never_learned(integration, slack_api):
    """Invariant: a status message posted by a step whose answer was lost (its worker killed) is edited, never posted again."""
    run = make_run(integration)
    posted = facade.show_run_status(target(integration, run))  # the workflow never heard back: it has no status_ts
    finish_run(run.pk, status="completed", summary="Fixed it.")
    facade.report_run_outcome(target(integration, run))
    assert posts(slack_api)[1:] == ["Fixed it."]  # the status message once (earlier), then the result
    [update] = slack_api.calls_to("chat.update")
    assert update.args["ts"] == posted.ts and update.args["text"].startswith(":white_check_mark: Done.")


@pytest.mark.parametrize(
    ("error_kind", "error", "hint"),
    [
        ("runner_lost", "No heartbeat for 120 s", "The runner stopped responding"),
        ("agent_error", "model not allowed", "The agent could not answer"),
        ("runner_error", "tests failed", "The runner reported an error. Details are on the task page"),
        ("sandbox_crashed", "something odd", "Details are on the task page"),
    ],
)
def test_a_failure_is_posted_once_with_a_hint_for_its_kind(integration, slack_api, error_kind, error, hint):
    run = make_run(integration)
    start_run(run.pk)
    finish_run(run.pk, status="failed", error=error, error_kind=error_kind)

    facade.report_run_outcome(target(integration, run))
    facade.report_run_outcome(target(integration, run))  # retried

    [text] = posts(slack_api)
    assert text.startswith(f"Sorry, this task failed: {error}") and hint in text
    names = [(c.method, c.args["name"]) for c in slack_api.calls if c.method.startswith("reactions.")]
    assert names[:2] == [("reactions.remove", "eyes"), ("reactions.add", "x")]


def test_quota_limited_posts_the_usual_denial(integration, slack_api, settings):
    run = make_run(integration)
    finish_run(run.pk, status="quota_limited", error="credits used up", error_kind="quota_limited")

    facade.report_run_outcome(target(integration, run))

    assert posts(slack_api) == [f"Your team has used its monthly AI credits. Top up at {settings.BILLING_URL} to continue."]
    assert ("reactions.add", "octagonal_sign") in [(c.method, c.args["name"]) for c in slack_api.calls if c.method.startswith("reactions.")]


def test_a_pull_request_becomes_a_card_with_buttons(integration, slack_api):
    run = make_run(integration)
    start_run(run.pk)
    finish_run(run.pk, status="completed", summary="Pinned the clock.", pr_url="https://github.com/acme/web/pull/7")

    facade.report_run_outcome(target(integration, run))

    [post] = slack_api.calls_to("chat.postMessage")
    assert "https://github.com/acme/web/pull/7" in post.args["text"]
    blocks = post.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons = {e["text"]["text"]: e["url"] for b in blocks if b["type"] == "actions" for e in b["elements"]}
    assert buttons == {"View pull request": "https://github.com/acme/web/pull/7", "View task": f"http://testserver/tasks/{run.task_id}/"}


@pytest.mark.parametrize("gone", ["message_not_found", "thread_not_found", "channel_not_found"])
def test_once_slack_says_the_thread_is_gone_nothing_more_is_posted(integration, slack_api, gone):
    run = make_run(integration)
    status = facade.show_run_status(target(integration, run))
    slack_api.respond("chat.update", body={"ok": False, "error": gone})
    start_run(run.pk)

    assert facade.show_run_status(target(integration, run, status_ts=status.ts)).stopped
    finish_run(run.pk, status="completed", summary="done")
    calls_before = len(slack_api.calls)
    later = [
        facade.post_run_reply(target(integration, run), step="answer-1", text="an answer"),
        facade.report_run_outcome(target(integration, run, status_ts=status.ts)),
        facade.show_run_status(target(integration, run, status_ts=status.ts)),
    ]

    assert all(report.stopped for report in later)
    assert len(slack_api.calls) == calls_before  # not one more call to Slack
    assert BotMessage.objects.filter(key=f"posthog-code-task-run-{run.pk}", step="reporting_stopped").exists()


def test_a_missing_reactions_scope_does_not_stop_the_result(integration, slack_api):
    run = make_run(integration)
    finish_run(run.pk, status="completed", summary="The answer.")
    slack_api.respond("reactions.remove", body={"ok": False, "error": "missing_scope"})

    report = facade.report_run_outcome(target(integration, run))

    assert not report.stopped and posts(slack_api) == ["The answer."]


def test_a_slack_rate_limit_is_raised_for_the_activity_to_retry(integration, slack_api):
    run = make_run(integration)
    finish_run(run.pk, status="completed", summary="The answer.")
    slack_api.respond("chat.postMessage", status=429, headers={"Retry-After": "3"}, body={"ok": False, "error": "ratelimited"})

    with pytest.raises(facade.SlackRateLimited) as raised:
        facade.report_run_outcome(target(integration, run))
    assert raised.value.retry_after == 3

    facade.report_run_outcome(target(integration, run))  # the retry posts it, once
    assert [m["text"] for m in slack_api.thread(CHANNEL, THREAD)] == ["The answer."]
