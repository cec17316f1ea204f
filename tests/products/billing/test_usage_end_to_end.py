"""From usage to a refused mention: events recorded through the API are reflected in the
quota within one recomputation, and the project's next @mention is refused at the webhook."""
from __future__ import annotations

import uuid

import pytest
from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from products.billing.quota_limiting import QuotaResource, is_team_limited
from products.billing.recompute import update_all_orgs_billing_quotas
from products.slack_app.messages import quota_denial_text
from products.slack_app.models import Integration
from temporal.slack_mention.constants import mention_workflow_id
from tests.products.slack_app.conftest import mention_envelope, post_event, relay_pending, workflow_description

from .usage_helpers import make_plan

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database
TEAM_ID = "TE2E"
BOT_TOKEN = "xoxb-e2e-token"


def generation(cost_usd: float, product: str = "slack_app") -> dict:
    return {
        "uuid": str(uuid.uuid4()),
        "event": "$ai_generation",
        "timestamp": timezone.now().isoformat(),
        "properties": {"$ai_product": product, "$ai_model": "claude-sonnet-4-5", "$ai_total_cost_usd": cost_usd},
    }


def test_usage_over_the_allowance_refuses_the_next_mention(accounts, slack_api, temporal, settings):
    settings.TEMPORAL_TASK_QUEUE = f"test-e2e-{uuid.uuid4()}"  # nothing polls it; nothing may start on it
    org = accounts.organization()
    project = accounts.project(org)
    integration = Integration(project=project, integration_id=TEAM_ID, config={"repositories": ["acme/web"]})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    make_plan(org, ai_credits=500)  # $5.00 of AI credits
    _, key = accounts.key(accounts.user(org), scopes=["llm_gateway:write"])
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")

    # $3 of billable Slack work and $50 of non-billable PostHog Code use: under the allowance.
    batch = [generation(1.0), generation(2.0, "slack-twig"), generation(50.0, "posthog_code")]
    assert api.post(f"/api/projects/{project.id}/usage_events/", {"batch": batch}, format="json").status_code == 200
    update_all_orgs_billing_quotas()
    assert not is_team_limited(project.api_token, QuotaResource.AI_CREDITS)

    # Another $2.50, sent twice (a retry): counted once, which takes the total to $5.50.
    more = [generation(2.5)]
    assert api.post(f"/api/projects/{project.id}/usage_events/", more, format="json").json()["stored"] == 1
    assert api.post(f"/api/projects/{project.id}/usage_events/", more, format="json").json()["duplicates"] == 1
    summary = update_all_orgs_billing_quotas()
    assert summary.newly_limited == 1
    assert is_team_limited(project.api_token, QuotaResource.AI_CREDITS)

    slack_api.reset()
    envelope = mention_envelope(team_id=TEAM_ID, ts="1700000001.000100")
    response = post_event(Client(), envelope)
    assert response.status_code == 200
    relay_pending()  # the relay in the worker process posts the denial the webhook recorded
    [denial] = slack_api.calls_to("chat.postMessage")
    assert denial.args["text"] == quota_denial_text()
    assert denial.args["thread_ts"] == "1700000001.000100"
    assert denial.token == BOT_TOKEN
    assert workflow_description(mention_workflow_id(TEAM_ID, envelope["event_id"])) is None
