"""The newcomer's loop: no provider key configured, a mention still comes back answered in its thread.

Invariant: with no provider key (and no LLM_AGENT_MODEL), the built-in agent uses the gateway's
offline demo model, so the whole loop (mention -> task -> agent through the gateway -> result
in the thread) works, and the answer posted says plainly that it is a demo model, not a real
AI. The call is still metered for the billable product, at a price of 0.
"""
from __future__ import annotations

import pytest

from products.billing.models import UsageEvent
from products.tasks.models import TaskRun
from tests.temporal.slack_mention_helpers import make_integration
from tests.temporal.task_run_helpers import (  # noqa: F401 - `worker` is a fixture
    mention,
    result_of,
    run_result,
    thread_steps,
    thread_texts,
    worker,
)

pytestmark = pytest.mark.django_db(transaction=True)


def test_without_a_provider_key_a_mention_gets_the_demo_models_answer_in_its_thread(
    accounts, slack_api, temporal, worker, gateway_server, fake_upstream, settings
):
    settings.LLM_OPENAI_API_KEY = ""
    settings.LLM_ANTHROPIC_API_KEY = ""
    settings.LLM_AGENT_MODEL = ""
    settings.LLM_GATEWAY_URL = gateway_server.base_url
    integration = make_integration(accounts, repositories=["acme/web"])

    event, workflow_id = mention(temporal, settings, integration, "fix the flaky login test")
    created = result_of(temporal, workflow_id)
    final = run_result(temporal, created["run_id"])

    assert final["status"] == "completed"
    assert thread_steps(slack_api, event["ts"]) == ["on_it", "status", "result"]
    result = thread_texts(slack_api, event["ts"])[2]
    assert result.startswith("This is PostHog Code's offline demo model, not a real AI")
    assert "fix the flaky login test" in result and "in acme/web" in result
    assert TaskRun.objects.get(pk=created["run_id"]).summary == result
    assert fake_upstream.calls == []  # no provider was asked
    gateway_server.wait_for_usage()
    [usage] = UsageEvent.objects.filter(project=integration.project, product="slack_app")
    assert (usage.model, usage.billable, usage.cost_usd) == ("posthog-demo", True, 0)
    assert usage.properties["$ai_run_id"] == created["run_id"]
