"""GET /api/projects/{id}/quota_limits/: who may read it, and what they see."""
import time

import pytest
from rest_framework.test import APIClient

from products.accounts.models import PersonalAPIKey
from products.billing import quota_limiting as ql
from products.billing.quota_limiting import QuotaResource

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database


def url(project_id) -> str:
    return f"/api/projects/{project_id}/quota_limits/"


@pytest.fixture
def setup(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    user = accounts.user(org)
    return org, project, user


def get(path, **headers):
    return APIClient().get(path, **headers)


def bearer(value):
    return {"HTTP_AUTHORIZATION": f"Bearer {value}"}


@pytest.mark.parametrize("scopes", [["project:read"], ["llm_gateway:read"], ["*"], ["project:write"]])
def test_key_with_a_granting_scope_reads_every_resource(setup, accounts, scopes):
    org, project, user = setup
    _, value = accounts.key(user, scopes=scopes)
    response = get(url(project.id), **bearer(value))
    assert response.status_code == 200, response.content
    body = response.json()
    assert set(body["limited"]) == {r.value for r in QuotaResource}
    assert all(v == {"limited": False, "limited_until": None, "suspended_until": None} for v in body["limited"].values())


def test_x_api_key_header_is_accepted(setup, accounts):
    _, project, user = setup
    _, value = accounts.key(user, scopes=["project:read"])
    assert get(url(project.id), HTTP_X_API_KEY=value).status_code == 200


def test_limit_set_then_cleared_is_seen_on_the_very_next_request(setup, accounts):
    _, project, user = setup
    _, value = accounts.key(user)
    until = int(time.time()) + 3600
    ql.add_limited_tokens(QuotaResource.AI_CREDITS, {project.api_token: until})
    ql.add_limited_tokens(QuotaResource.EVENTS, {project.api_token: until}, ql.SUSPENDED)
    body = get(url(project.id), **bearer(value)).json()["limited"]
    assert body["ai_credits"]["limited"] is True
    assert body["ai_credits"]["limited_until"].startswith(time.strftime("%Y-%m-%dT", time.gmtime(until)))
    assert body["events"] == {"limited": False, "limited_until": None, "suspended_until": body["events"]["suspended_until"]}
    assert body["events"]["suspended_until"] is not None
    ql.remove_limited_tokens(QuotaResource.AI_CREDITS, [project.api_token])
    assert get(url(project.id), **bearer(value)).json()["limited"]["ai_credits"]["limited"] is False


def test_expired_limit_reads_as_not_limited(setup, accounts):
    _, project, user = setup
    _, value = accounts.key(user)
    ql.add_limited_tokens(QuotaResource.AI_CREDITS, {project.api_token: int(time.time()) - 5})
    assert get(url(project.id), **bearer(value)).json()["limited"]["ai_credits"]["limited"] is False


def test_no_credentials_is_401(setup):
    _, project, _ = setup
    response = get(url(project.id))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("value", ["phx_not_a_real_key", "garbage", "phc_project_token_is_not_a_key"])
def test_bad_key_is_401(setup, value):
    _, project, _ = setup
    assert get(url(project.id), **bearer(value)).status_code == 401
    assert get(url(project.id), HTTP_X_API_KEY=value).status_code == 401


def test_key_of_inactive_user_is_401(setup, accounts):
    _, project, user = setup
    _, value = accounts.key(user)
    user.is_active = False
    user.save()
    assert get(url(project.id), **bearer(value)).status_code == 401


def test_key_without_the_scope_is_403_naming_it(setup, accounts):
    _, project, user = setup
    _, value = accounts.key(user, scopes=["task:read"])
    response = get(url(project.id), **bearer(value))
    assert response.status_code == 403
    assert "project:read" in response.json()["detail"]
    assert response.json()["code"] == "missing_scope"


def test_project_of_another_organization_is_404_like_a_missing_one(setup, accounts):
    _, _, user = setup
    _, value = accounts.key(user)
    other = accounts.project()
    missing = get(url(999999), **bearer(value))
    foreign = get(url(other.id), **bearer(value))
    assert missing.status_code == foreign.status_code == 404
    assert missing.json() == foreign.json()


def test_key_scoped_to_other_organization_or_project_is_404(setup, accounts):
    org, project, user = setup
    sibling = accounts.project(org)
    other_org = accounts.organization()
    accounts.user(other_org)  # unrelated
    _, org_scoped = accounts.key(user, organizations=[other_org])
    _, project_scoped = accounts.key(user, projects=[sibling])
    _, right_scope = accounts.key(user, organizations=[org], projects=[project])
    assert get(url(project.id), **bearer(org_scoped)).status_code == 404
    assert get(url(project.id), **bearer(project_scoped)).status_code == 404
    assert get(url(sibling.id), **bearer(project_scoped)).status_code == 200
    assert get(url(project.id), **bearer(right_scope)).status_code == 200


def test_logged_in_member_may_read_and_non_member_gets_404(setup, accounts):
    org, project, user = setup
    client = APIClient()
    client.force_login(user)
    assert client.get(url(project.id)).status_code == 200
    outsider = accounts.user(accounts.organization())
    client.force_login(outsider)
    assert client.get(url(project.id)).status_code == 404


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_only_read_methods_are_allowed(setup, accounts, method):
    _, project, user = setup
    _, value = accounts.key(user)
    response = getattr(APIClient(), method)(url(project.id), **bearer(value))
    assert response.status_code == 405


def test_head_and_options_are_allowed(setup, accounts):
    _, project, user = setup
    _, value = accounts.key(user)
    assert APIClient().head(url(project.id), **bearer(value)).status_code == 200
    assert APIClient().options(url(project.id), **bearer(value)).status_code == 200


def test_key_use_is_recorded_at_most_once_a_minute(setup, accounts, django_assert_max_num_queries):
    _, project, user = setup
    key, value = accounts.key(user)
    assert key.last_used_at is None
    get(url(project.id), **bearer(value))
    first = PersonalAPIKey.objects.get(pk=key.pk).last_used_at
    assert first is not None
    get(url(project.id), **bearer(value))
    assert PersonalAPIKey.objects.get(pk=key.pk).last_used_at == first


def test_keys_are_stored_only_as_hashes(setup, accounts):
    _, _, user = setup
    key, value = accounts.key(user)
    assert value.startswith("phx_")
    stored = PersonalAPIKey.objects.filter(pk=key.pk).values().get()
    assert value not in str(stored)
    assert PersonalAPIKey.objects.find_by_value(value) == key


def test_redis_down_is_503_not_500(setup, accounts, settings):
    _, project, user = setup
    _, value = accounts.key(user)
    settings.REDIS_URL = "redis://127.0.0.1:1/9"
    response = get(url(project.id), **bearer(value))
    assert response.status_code == 503
    assert response.json()["code"] == "quota_state_unavailable"
