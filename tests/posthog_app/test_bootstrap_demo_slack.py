"""`bootstrap_demo --slack-team-id --slack-bot-token --repo`: a new user can point a real Slack app at `make run`."""
from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from products.slack_app.models import Integration

pytestmark = pytest.mark.django_db


def bootstrap(*args: str) -> dict[str, str]:
    out = StringIO()
    call_command("bootstrap_demo", *args, stdout=out)
    return dict(line.split("=", 1) for line in out.getvalue().splitlines())


def test_creates_the_demo_projects_slack_integration_and_never_prints_the_token():
    values = bootstrap("--slack-team-id", "T0DEMO", "--slack-bot-token", "xoxb-demo-secret", "--repo", "acme/web", "--repo", "acme/api")
    integration = Integration.objects.get(integration_id="T0DEMO")
    assert str(integration.project_id) == values["PROJECT_ID"]
    assert integration.repositories == ["acme/web", "acme/api"]
    assert integration.bot_token == "xoxb-demo-secret"
    assert "xoxb-demo-secret" not in integration.sensitive_config
    assert values["SLACK_TEAM_ID"] == "T0DEMO" and values["SLACK_REPOSITORIES"] == "acme/web,acme/api"
    assert "xoxb-demo-secret" not in "".join(values.values())


def test_second_run_updates_the_same_integration():
    bootstrap("--slack-team-id", "T0DEMO", "--slack-bot-token", "xoxb-one", "--repo", "acme/web")
    bootstrap("--slack-team-id", "T0DEMO", "--repo", "acme/api")  # token kept, repositories replaced
    [integration] = Integration.objects.filter(integration_id="T0DEMO")
    assert integration.repositories == ["acme/api"]
    assert integration.bot_token == "xoxb-one"
    bootstrap("--slack-team-id", "T0DEMO", "--slack-bot-token", "xoxb-two")  # repositories kept, token replaced
    integration.refresh_from_db()
    assert integration.repositories == ["acme/api"] and integration.bot_token == "xoxb-two"


def test_without_slack_options_no_integration_is_made():
    values = bootstrap()
    assert "SLACK_TEAM_ID" not in values
    assert not Integration.objects.exists()


@pytest.mark.parametrize(
    "args",
    [["--repo", "acme/web"], ["--slack-bot-token", "xoxb-x"], ["--slack-team-id", "T1", "--repo", "not-a-repo"], ["--slack-team-id", "T1", "--repo", "a/b/c"]],
    ids=["repo-without-team", "token-without-team", "bad-repo", "too-many-slashes"],
)
def test_bad_slack_options_are_refused_without_partial_writes(args):
    with pytest.raises(CommandError):
        bootstrap(*args)
    assert not Integration.objects.exists()
