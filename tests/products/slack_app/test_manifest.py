"""The Slack app manifest kept in the repo asks for exactly what the service needs.

Invariant: someone who creates the Slack app from `slack_app_manifest.yml` can install it
("Add to Slack" refuses an install missing any required bot scope), and Slack delivers
every event the service acts on to its endpoints.
"""
from __future__ import annotations

from pathlib import Path

import yaml

from products.slack_app.oauth import CALLBACK_PATH, REQUIRED_BOT_SCOPES
from products.slack_app.signin import CALLBACK_PATH as SIGNIN_CALLBACK_PATH
from products.slack_app.signin import OIDC_SCOPES

MANIFEST = Path(__file__).resolve().parents[3] / "slack_app_manifest.yml"


def test_the_manifest_grants_the_required_scopes_and_subscribes_to_every_event_we_handle():
    manifest = yaml.safe_load(MANIFEST.read_text())
    assert sorted(manifest["oauth_config"]["scopes"]["bot"]) == sorted(REQUIRED_BOT_SCOPES)
    assert set(OIDC_SCOPES) <= set(manifest["oauth_config"]["scopes"]["user"])
    redirects = manifest["oauth_config"]["redirect_urls"]
    assert any(url.endswith(CALLBACK_PATH) for url in redirects) and any(url.endswith(SIGNIN_CALLBACK_PATH) for url in redirects)
    events = manifest["settings"]["event_subscriptions"]
    assert events["request_url"].endswith("/slack/events")
    assert set(events["bot_events"]) == {"app_mention", "app_home_opened", "app_uninstalled", "tokens_revoked"}
    assert manifest["settings"]["interactivity"]["request_url"].endswith("/slack/interactivity")
    assert manifest["features"]["app_home"]["home_tab_enabled"] is True
