"""The mention steps behind products.slack_app.facade, as the workflow's activities call them.

Invariants: a task is never left without its thread (task and mapping are one
transaction); what the task page shows is written with names, not Slack ids; a
thread's task, follow-ups and names come from real PostgreSQL, Redis and the Slack stand-in.
"""
from __future__ import annotations

import pytest
from django.db import DataError
from django.test import Client

from products.slack_app import facade
from products.slack_app.models import Integration, SlackThreadTaskMapping
from products.tasks.models import Task, TaskFollowUp

from .conftest import BOT_TOKEN

pytestmark = pytest.mark.django_db


@pytest.fixture
def org_integration(accounts, slack_api):
    org = accounts.organization("Acme")
    integration = Integration(project=accounts.project(org), integration_id="TMENTIONS", config={"repositories": ["acme/web"]})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    return org, integration


def request(integration, *, workflow_id="posthog-code-mention-TMENTIONS:Ev1", channel="C0CHAN", thread_ts="1700000001.000100",
            event_ts=None, user="U123", text="<@UBOT> ask <@U456> about the flaky test in <#C0OTHER>"):
    return facade.MentionRequest(
        integration_id=integration.pk, workflow_id=workflow_id, channel=channel, thread_ts=thread_ts,
        event_ts=event_ts or thread_ts, user=user, text=text,
    )


def test_task_and_thread_mapping_are_one_transaction(org_integration, slack_api):
    """A mapping that cannot be written leaves no task behind (no task without a thread, forever queued)."""
    _, integration = org_integration
    with pytest.raises(DataError):
        facade.create_task_for_mention(request(integration, channel="C" + "1" * 60), repository="acme/web")
    assert not Task.objects.exists() and not SlackThreadTaskMapping.objects.exists()
    assert not [c for c in slack_api.calls_to("chat.postMessage")]  # nothing announced either


def test_the_task_page_shows_people_and_channels_by_name(org_integration, slack_api, accounts):
    org, integration = org_integration
    made = facade.create_task_for_mention(request(integration), repository="acme/web")
    task = Task.objects.get(pk=made.task_id)
    assert task.title == "ask @user-U456 about the flaky test in #channel-c0other"
    assert "Requested in Slack by @user-U123 in #channel-c0chan" in task.description

    facade.forward_followup(
        request(integration, workflow_id="posthog-code-mention-TMENTIONS:Ev2", event_ts="1700000002.000100", user="U123",
                text="<@UBOT> also the logout test"),
        task_id=task.pk,
    )
    assert TaskFollowUp.objects.get().author_name == "user-U123"  # the requester too: the page shows names

    member = accounts.user(org)
    client = Client()
    client.force_login(member)
    html = client.get(f"/tasks/{task.pk}/").content.decode()
    assert "@user-U456" in html and "#channel-c0chan" in html and "user-U123" in html
    assert "&lt;@U" not in html and "C0CHAN" not in html  # no raw Slack ids


def test_names_are_looked_up_once_an_hour_not_once_a_mention(org_integration, slack_api, redis_db):
    _, integration = org_integration
    for n in range(3):
        facade.create_task_for_mention(
            request(integration, workflow_id=f"posthog-code-mention-TMENTIONS:Ev{n}", thread_ts=f"170000000{n}.000100",
                    text="<@UBOT> fix it"),
            repository="acme/web",
        )
    assert len(slack_api.calls_to("users.info")) == 1
    assert len(slack_api.calls_to("conversations.info")) == 1
    ttl = redis_db.ttl(f"slack:name:{integration.integration_id}:U123")
    assert 3500 < ttl <= 3600


def test_a_name_slack_will_not_give_falls_back_to_the_id(org_integration, slack_api):
    _, integration = org_integration
    slack_api.respond("conversations.info", body={"ok": False, "error": "missing_scope"})
    made = facade.create_task_for_mention(request(integration, text="<@UBOT> fix it"), repository="acme/web")
    assert "in #C0CHAN" in Task.objects.get(pk=made.task_id).description


# --- Post once: a step run again never posts its message twice ----------------------------------


def thread_texts(slack_api, channel="C0CHAN", thread_ts="1700000001.000100") -> list[str]:
    return [m["text"] for m in slack_api.thread(channel, thread_ts)]


@pytest.mark.parametrize("crashed_before_recording", [False, True], ids=["retried", "crashed-between-post-and-record"])
def test_every_workflow_message_is_posted_once_per_step(org_integration, slack_api, crashed_before_recording):
    from products.slack_app.models import BotMessage

    _, integration = org_integration
    wf = "posthog-code-mention-TMENTIONS:EvONCE"
    where = dict(workflow_id=wf, channel="C0CHAN", thread_ts="1700000001.000100")
    steps = [
        lambda: facade.post_repo_picker(integration.pk, repositories=["acme/web", "acme/api"], **where),
        lambda: facade.post_fixed_message(integration.pk, kind="picker_timeout", **where),
        lambda: facade.post_fixed_message(integration.pk, kind="apology", **where),
        lambda: facade.create_task_for_mention(request(integration, workflow_id=wf), repository="acme/web"),
    ]
    for step in steps:
        step()
    first = thread_texts(slack_api)
    assert len(first) == 4
    if crashed_before_recording:  # the posts reached Slack, the ledger never heard back
        BotMessage.objects.update(ts="")
    for step in steps:
        step()
    assert thread_texts(slack_api) == first
    if crashed_before_recording:
        assert len(slack_api.calls_to("conversations.replies")) == 4  # each found its message by metadata
        assert not BotMessage.objects.filter(ts="").exists()


def test_quota_denial_is_posted_once_per_event_from_webhook_and_workflow_alike(org_integration, slack_api):
    import time

    from products.billing.quota_limiting import QuotaResource, add_limited_tokens

    _, integration = org_integration
    add_limited_tokens(QuotaResource.AI_CREDITS, {integration.project.api_token: time.time() + 3600})
    where = dict(workflow_id="posthog-code-mention-TMENTIONS:EvDENY", channel="C0CHAN", thread_ts="1700000001.000100", user="U123")
    assert facade.enforce_quota(integration.pk, **where) is True
    assert facade.enforce_quota(integration.pk, **where) is True
    assert len(slack_api.calls_to("chat.postMessage")) == 1
    assert "used its monthly AI credits" in thread_texts(slack_api)[0]
