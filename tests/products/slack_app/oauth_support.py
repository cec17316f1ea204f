"""Helpers for the "Add to Slack" and "Sign in with Slack" tests: settings pointing at the Slack stand-in, a member
signed in through /login/, and a browser's trip through Slack's consent page (the stand-in's redirect)."""
from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.test import Client

from products.accounts.models import OrganizationMembership
from tests.posthog_app.signin import sign_in

CLIENT_ID = "1234.5678"
CLIENT_SECRET = "test-client-secret"


@pytest.fixture
def slack_app_settings(settings, slack_api):
    """The Slack app's credentials, and Slack's consent pages stood in for by the stub."""
    settings.SLACK_CLIENT_ID = CLIENT_ID
    settings.SLACK_CLIENT_SECRET = CLIENT_SECRET
    settings.SLACK_OAUTH_AUTHORIZE_URL = slack_api.authorize_url
    settings.SLACK_OPENID_AUTHORIZE_URL = slack_api.openid_authorize_url
    return settings


def logged_in(user, password: str = "pw") -> Client:
    """A browser signed in the way a member is: through /login/, with the form's CSRF token."""
    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, user.username, password)["Location"] == "/"
    return client


def admin_of(accounts, organization):
    return accounts.user(organization, level=OrganizationMembership.Level.ADMIN)


def query(url: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(url).query).items()}


def through_slack(authorize_url: str) -> str:
    """Follow the authorize URL to the stand-in's consent page; return where it sends the browser back (path?query)."""
    response = httpx.get(authorize_url, follow_redirects=False, trust_env=False)
    assert response.status_code == 302, response.text
    back = urlsplit(response.headers["location"])
    return f"{back.path}?{back.query}"
