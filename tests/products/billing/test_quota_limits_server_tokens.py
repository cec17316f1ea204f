"""The quota endpoint accepts a server token for the one project it names, and nothing else does.

The LLM gateway of another deployment reads quota with the credential its caller presented;
for the server-only products (the Slack agent, the router) that is a server token, so the
endpoint must accept it, without it opening any other project or endpoint.
"""
from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.core import signing
from rest_framework.test import APIClient

from products.accounts.facade import SERVER_TOKEN_PREFIX, sign_server_token
from products.billing import quota_limiting as ql
from products.billing.quota_limiting import QuotaResource

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]


def token_for(project, ttl=timedelta(minutes=5)) -> str:
    return sign_server_token(project.pk, "slack_app", run_id=None, ttl=ttl)


@pytest.mark.parametrize("header", ["HTTP_AUTHORIZATION", "HTTP_X_API_KEY"])
def test_a_server_token_reads_its_own_projects_quota(accounts, header):
    project = accounts.project()
    until = int(time.time()) + 3600
    ql.add_limited_tokens(QuotaResource.AI_CREDITS, {project.api_token: until})
    value = token_for(project)
    response = APIClient().get(f"/api/projects/{project.pk}/quota_limits/", **{header: f"Bearer {value}" if header == "HTTP_AUTHORIZATION" else value})
    assert response.status_code == 200, response.content
    assert response.json()["limited"]["ai_credits"]["limited"] is True


def test_a_server_token_for_another_project_is_404(accounts):
    mine, other = accounts.project(), accounts.project()
    response = APIClient().get(f"/api/projects/{other.pk}/quota_limits/", HTTP_AUTHORIZATION=f"Bearer {token_for(mine)}")
    assert response.status_code == 404


def test_a_server_token_opens_no_other_endpoint(accounts):
    project = accounts.project()
    response = APIClient().get(f"/api/projects/{project.pk}/tasks/", HTTP_AUTHORIZATION=f"Bearer {token_for(project)}")
    assert response.status_code == 403
    assert "Server tokens cannot be used" in response.json()["detail"]


@pytest.mark.parametrize(
    "make",
    [
        lambda project: SERVER_TOKEN_PREFIX + signing.dumps({"p": project.pk, "pr": "slack_app", "r": None, "e": time.time() + 60}, salt="forged"),
        lambda project: token_for(project, ttl=timedelta(seconds=1))[:-3] + "abc",
        lambda project: SERVER_TOKEN_PREFIX + "garbage",
    ],
    ids=["wrong-signature", "tampered", "garbage"],
)
def test_a_forged_or_broken_server_token_is_401(accounts, make):
    project = accounts.project()
    response = APIClient().get(f"/api/projects/{project.pk}/quota_limits/", HTTP_AUTHORIZATION=f"Bearer {make(project)}")
    assert response.status_code == 401


def test_an_expired_server_token_is_401(accounts, monkeypatch):
    project = accounts.project()
    value = token_for(project, ttl=timedelta(seconds=5))
    real_time = time.time
    monkeypatch.setattr(time, "time", lambda: real_time() + 10)
    response = APIClient().get(f"/api/projects/{project.pk}/quota_limits/", HTTP_AUTHORIZATION=f"Bearer {value}")
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
