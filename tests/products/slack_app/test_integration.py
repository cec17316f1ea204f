"""The Slack integration: token encrypted at rest and never shown; the one WebClient factory; routing."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.db import IntegrityError, connection
from slack_sdk.errors import SlackApiError

from products.slack_app import messages, names, posting
from products.slack_app.crypto import SecretUndecryptable
from products.slack_app.errors import SlackRateLimited, SlackRefused
from products.slack_app.mentions import post_quota_denial
from products.slack_app.models import Integration
from products.slack_app.routing import RoutingDecision, route_repository
from products.slack_app.slack_client import get_slack_client

from .conftest import BOT_TOKEN, TEAM_ID

ROOT = Path(__file__).resolve().parents[3]

pytestmark = pytest.mark.django_db


def raw_row(integration: Integration) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM slack_app_integration WHERE id = %s", [integration.pk])
        return " ".join(str(v) for v in cursor.fetchone())


def test_bot_token_is_encrypted_at_rest_and_decrypts(integration):
    row = raw_row(integration)
    assert BOT_TOKEN not in row
    assert "xoxb" not in row
    assert Integration.objects.get(pk=integration.pk).bot_token == BOT_TOKEN


def test_token_is_not_in_str_or_repr(integration):
    assert BOT_TOKEN not in str(integration)
    assert BOT_TOKEN not in repr(integration)


def test_wrong_key_cannot_decrypt_and_the_error_does_not_leak_the_token(integration, settings):
    from cryptography.fernet import Fernet

    settings.SLACK_TOKEN_ENCRYPTION_KEY = Fernet.generate_key().decode()
    with pytest.raises(SecretUndecryptable) as excinfo:
        Integration.objects.get(pk=integration.pk).bot_token
    assert BOT_TOKEN not in str(excinfo.value)


def test_key_rotation_old_key_still_decrypts(integration, settings):
    from cryptography.fernet import Fernet

    old = settings.SLACK_TOKEN_ENCRYPTION_KEY
    settings.SLACK_TOKEN_ENCRYPTION_KEY = f"{Fernet.generate_key().decode()},{old}"
    assert Integration.objects.get(pk=integration.pk).bot_token == BOT_TOKEN


def test_dev_default_key_is_a_valid_fernet_key_derived_from_secret_key():
    """Without SLACK_TOKEN_ENCRYPTION_KEY in the environment, development still encrypts (with a key from SECRET_KEY)."""
    import base64
    import hashlib
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "SLACK_TOKEN_ENCRYPTION_KEY"}
    env.update(SECRET_KEY="some-dev-secret", DJANGO_SETTINGS_MODULE="posthog_app.settings")
    key = subprocess.run(
        [sys.executable, "-c", "from posthog_app import settings; print(settings.SLACK_TOKEN_ENCRYPTION_KEY)"],
        env=env, capture_output=True, text=True, check=True, cwd=ROOT,
    ).stdout.strip()
    from cryptography.fernet import Fernet

    Fernet(key)  # raises if not a valid key
    assert key == base64.urlsafe_b64encode(hashlib.sha256(b"slack-token-encryption:some-dev-secret").digest()).decode()


@pytest.mark.parametrize("value,ok", [("open", True), ("closed", True), ("CLOSED", True), ("maybe", False)])
def test_quota_check_failure_mode_setting_is_validated(value, ok):
    import os
    import subprocess
    import sys

    env = dict(os.environ, QUOTA_CHECK_FAILURE_MODE=value, DJANGO_SETTINGS_MODULE="posthog_app.settings")
    run = subprocess.run([sys.executable, "-c", "from posthog_app import settings; print(settings.QUOTA_CHECK_FAILURE_MODE)"],
                         env=env, capture_output=True, text=True, cwd=ROOT)
    assert (run.returncode == 0) is ok
    if ok:
        assert run.stdout.strip() == value.lower()
    else:
        assert "QUOTA_CHECK_FAILURE_MODE" in run.stderr


def test_unique_per_project_kind_and_workspace(integration):
    with pytest.raises(IntegrityError):
        Integration.objects.create(project=integration.project, integration_id=TEAM_ID)


# --- Admin: token write-only -----------------------------------------------------------------------


@pytest.fixture
def admin_client(client, django_user_model):
    user = django_user_model.objects.create_superuser("admin", "admin@example.com", "pw")
    client.force_login(user)
    return client


def test_admin_pages_never_show_the_token(admin_client, integration):
    for url in (
        "/admin/slack_app/integration/",
        f"/admin/slack_app/integration/{integration.pk}/change/",
        "/admin/slack_app/integration/add/",
    ):
        response = admin_client.get(url)
        assert response.status_code == 200, url
        html = response.content.decode()
        assert BOT_TOKEN not in html, url
        assert integration.sensitive_config not in html, url


def test_admin_sets_a_new_token_and_blank_keeps_the_old_one(admin_client, integration):
    url = f"/admin/slack_app/integration/{integration.pk}/change/"
    form = {
        "project": integration.project_id,
        "kind": "slack",
        "integration_id": TEAM_ID,
        "config": '{"repositories": ["acme/web"], "default_repository": null, "alerts_channel": null}',
        "bot_token": "",
    }
    assert admin_client.post(url, form).status_code == 302
    integration.refresh_from_db()
    assert integration.bot_token == BOT_TOKEN
    assert integration.repositories == ["acme/web"]

    form["bot_token"] = "xoxb-rotated-token"
    assert admin_client.post(url, form).status_code == 302
    integration.refresh_from_db()
    assert integration.bot_token == "xoxb-rotated-token"
    assert "xoxb-rotated-token" not in raw_row(integration)
    assert "xoxb-rotated-token" not in admin_client.get(url).content.decode()


@pytest.mark.parametrize(
    "config,error",
    [
        ('["acme/web"]', "JSON object"),
        ('{"repositories": ["acme"]}', "owner/name"),
        ('{"repositories": "acme/web"}', "owner/name"),
        ('{"repositories": ["acme/web"], "default_repository": "acme/api"}', "default_repository"),
    ],
)
def test_admin_refuses_a_config_the_bot_cannot_route_with(admin_client, integration, config, error):
    url = f"/admin/slack_app/integration/{integration.pk}/change/"
    form = {"project": integration.project_id, "kind": "slack", "integration_id": TEAM_ID, "config": config, "bot_token": ""}
    response = admin_client.post(url, form)
    assert response.status_code == 200  # the form again, with the error
    assert error in response.content.decode()
    integration.refresh_from_db()
    assert integration.repositories == ["acme/web", "acme/api"]


def test_admin_pages_for_mappings_and_tasks_render(admin_client):
    for url in (
        "/admin/slack_app/slackthreadtaskmapping/",
        "/admin/slack_app/repopicker/",
        "/admin/slack_app/botmessage/",
        "/admin/tasks/task/",
        "/admin/tasks/taskrun/",
        "/admin/tasks/taskfollowup/",
        "/admin/tasks/task/add/",
    ):
        assert admin_client.get(url).status_code == 200, url


# --- The WebClient factory --------------------------------------------------------------------------


def test_client_talks_to_the_configured_base_url_with_the_decrypted_token(integration, slack_api):
    get_slack_client(integration).chat_postMessage(channel="C1", text="hi")
    [call] = slack_api.calls_to("chat.postMessage")
    assert call.token == BOT_TOKEN


def test_base_url_without_trailing_slash_still_works(integration, slack_api, settings):
    settings.SLACK_API_BASE_URL = slack_api.base_url.rstrip("/")
    get_slack_client(integration).auth_test()
    assert len(slack_api.calls_to("auth.test")) == 1


def test_rate_limit_surfaces_as_429_with_retry_after_and_is_not_retried_in_process(integration, slack_api):
    slack_api.respond("chat.postMessage", status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "17"})
    with pytest.raises(SlackRateLimited) as excinfo:
        posting.post_message(integration, channel="C1", thread_ts="1.2", text="hi")
    assert isinstance(excinfo.value.__cause__, SlackApiError) and excinfo.value.__cause__.response.status_code == 429
    assert excinfo.value.retry_after == 17
    assert len(slack_api.calls_to("chat.postMessage")) == 1


def test_quota_denial_429_is_reraised_not_sent_ephemeral(integration, slack_api):
    slack_api.respond("chat.postMessage", status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "3"})
    with pytest.raises(SlackRateLimited):
        post_quota_denial(integration, workflow_id="wf-429", channel="C1", thread_ts="1.2", user="U1")
    assert slack_api.calls_to("chat.postEphemeral") == []


def test_already_reacted_is_not_an_error(integration, slack_api):
    slack_api.respond("reactions.add", body={"ok": False, "error": "already_reacted"})
    posting.add_reaction(integration, channel="C1", ts="1.2", name="eyes")
    slack_api.respond("reactions.add", body={"ok": False, "error": "channel_not_found"})
    with pytest.raises(SlackRefused):
        posting.add_reaction(integration, channel="C1", ts="1.2", name="eyes")


def test_display_name_prefers_the_profile_display_name_and_falls_back_to_the_id(integration, slack_api):
    assert names.user_name(integration, "U9") == "user-U9"
    slack_api.respond("users.info", body={"ok": False, "error": "user_not_found"})
    assert names.user_name(integration, "U10") == "U10"


def test_repo_picker_has_one_button_per_repository_and_a_no_repository_button(integration, slack_api):
    import json

    from products.slack_app.mentions import post_repo_picker

    ts = post_repo_picker(integration.pk, channel="C1", thread_ts="1.2", workflow_id="wf-1", repositories=["acme/web", "acme/api"])
    assert ts
    [call] = slack_api.calls_to("chat.postMessage")
    blocks = call.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    buttons = [e for b in blocks if b["type"] == "actions" for e in b["elements"]]
    assert [(b["action_id"], json.loads(b["value"])) for b in buttons] == [
        ("repo_selected", {"workflow_id": "wf-1", "repository": "acme/web"}),
        ("repo_selected", {"workflow_id": "wf-1", "repository": "acme/api"}),
        ("no_repo_needed", {"workflow_id": "wf-1"}),
    ]
    assert call.args["thread_ts"] == "1.2"


# --- Routing ----------------------------------------------------------------------------------------

REPOS = ["acme/web", "acme/api", "acme/web-admin"]


@pytest.mark.parametrize(
    "text,repositories,default,expected",
    [
        ("<@U1> fix the login test in acme/api", REPOS, None, RoutingDecision("acme/api", False)),
        ("<@U1> see https://github.com/acme/web/pull/12", REPOS, "acme/api", RoutingDecision("acme/web", False)),
        ("<@U1> fix <https://github.com/Acme/Web-Admin|acme/web-admin>.", REPOS, None, RoutingDecision("acme/web-admin", False)),
        ("<@U1> acme/web-admin then acme/web", REPOS, None, RoutingDecision("acme/web-admin", False)),
        ("<@U1> fix other/repo", REPOS, None, RoutingDecision(None, True)),  # not one of ours
        ("<@U1> fix it", ["acme/web"], None, RoutingDecision("acme/web", False)),  # the only one
        ("<@U1> fix it", REPOS, "acme/api", RoutingDecision("acme/api", False)),  # the default
        ("<@U1> fix it", REPOS, None, RoutingDecision(None, True)),  # ask
        ("<@U1> fix it", [], None, RoutingDecision(None, False)),  # no repositories: no repository
        ("<@U1> fix notacme/web", REPOS, None, RoutingDecision(None, True)),
    ],
)
def test_route_repository(text, repositories, default, expected):
    assert route_repository(text, repositories, default) == expected
