"""`manage.py bootstrap_demo` gives `make run` a working demo: ids, token and a usable key.

Run twice, it reuses the organization, project and user and replaces the key (only the
newest printed key works); the printed key really reads the quota endpoint, and the printed
password logs into /admin/. The command lives in posthog_app (it spans accounts and slack_app).
"""
from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth import get_user_model
from rest_framework.test import APIClient

from products.accounts.facade import Organization, OrganizationMembership, PersonalAPIKey, Project
from products.billing.quota_limiting import QuotaResource

pytestmark = pytest.mark.django_db

EXPECTED_KEYS = [
    "ORGANIZATION_ID",
    "PROJECT_ID",
    "PROJECT_API_TOKEN",
    "ADMIN_USERNAME",
    "ADMIN_PASSWORD",
    "PERSONAL_API_KEY",
]


def bootstrap(*args) -> dict[str, str]:
    from django.core.management import call_command

    out = StringIO()
    call_command("bootstrap_demo", *args, stdout=out)
    lines = out.getvalue().splitlines()
    # Every line is KEY=VALUE, so `sed -n 's/^KEY=//p'` and `source` both work.
    assert all("=" in line and " " not in line for line in lines), lines
    values = dict(line.split("=", 1) for line in lines)
    assert len(values) == len(lines)
    return values


def test_it_prints_the_demo_as_key_value_lines():
    values = bootstrap()
    assert list(values) == EXPECTED_KEYS
    assert values["PROJECT_API_TOKEN"].startswith("phc_")
    assert values["PERSONAL_API_KEY"].startswith("phx_")
    assert values["ADMIN_USERNAME"] == "demo"
    assert values["ADMIN_PASSWORD"] == "demo-password-change-me"

    project = Project.objects.get(pk=int(values["PROJECT_ID"]))
    assert (project.name, project.api_token) == ("Demo Project", values["PROJECT_API_TOKEN"])
    assert project.organization_id == int(values["ORGANIZATION_ID"])
    assert project.organization.name == "Demo Organization"

    user = get_user_model().objects.get(username="demo")
    assert (user.email, user.is_staff, user.is_superuser) == ("demo@example.com", True, True)
    membership = OrganizationMembership.objects.get(user=user, organization=project.organization)
    assert membership.level == OrganizationMembership.Level.OWNER

    key = PersonalAPIKey.objects.find_by_value(values["PERSONAL_API_KEY"])
    assert (key.user, key.scopes, key.label) == (user, ["*"], "bootstrap_demo")


def test_the_printed_key_reads_every_resource_of_the_printed_project():
    values = bootstrap()
    response = APIClient().get(
        f"/api/projects/{values['PROJECT_ID']}/quota_limits/",
        HTTP_AUTHORIZATION=f"Bearer {values['PERSONAL_API_KEY']}",
    )
    assert response.status_code == 200, response.content
    assert set(response.json()["limited"]) == {r.value for r in QuotaResource}


def test_a_second_run_reuses_everything_and_only_the_newest_key_works():
    """One demo key, rotated: a key printed by an earlier `make run` stops working."""
    first, second = bootstrap(), bootstrap()
    for name in ("ORGANIZATION_ID", "PROJECT_ID", "PROJECT_API_TOKEN", "ADMIN_USERNAME"):
        assert first[name] == second[name]
    assert first["PERSONAL_API_KEY"] != second["PERSONAL_API_KEY"]
    assert (Organization.objects.count(), Project.objects.count(), get_user_model().objects.count()) == (1, 1, 1)
    assert OrganizationMembership.objects.count() == 1
    assert PersonalAPIKey.objects.filter(label="bootstrap_demo").count() == 1

    url = f"/api/projects/{second['PROJECT_ID']}/quota_limits/"
    old = APIClient().get(url, HTTP_AUTHORIZATION=f"Bearer {first['PERSONAL_API_KEY']}")
    assert old.status_code == 401
    new = APIClient().get(url, HTTP_AUTHORIZATION=f"Bearer {second['PERSONAL_API_KEY']}")
    assert new.status_code == 200


def test_rotation_leaves_the_demo_users_other_keys_and_other_users_demo_keys_alone(django_user_model):
    bootstrap()
    user = django_user_model.objects.get(username="demo")
    _, own_value = PersonalAPIKey.create_key(user=user, label="my laptop", scopes=["*"])
    someone = django_user_model.objects.create_user(username="someone", password="x")
    _, other_value = PersonalAPIKey.create_key(user=someone, label="bootstrap_demo", scopes=["*"])
    bootstrap()
    assert PersonalAPIKey.objects.find_by_value(own_value) is not None
    assert PersonalAPIKey.objects.find_by_value(other_value) is not None


def test_the_printed_password_logs_into_the_admin(client):
    values = bootstrap("--password", "s3cret-demo")
    assert values["ADMIN_PASSWORD"] == "s3cret-demo"
    assert client.login(username=values["ADMIN_USERNAME"], password="s3cret-demo")
    assert client.get("/admin/accounts/project/").status_code == 200
    # A later run with another password replaces it.
    bootstrap("--password", "rotated")
    client.logout()
    assert not client.login(username="demo", password="s3cret-demo")
    assert client.login(username="demo", password="rotated")


def test_it_reuses_an_existing_demo_user_and_makes_it_an_owner_and_admin(django_user_model):
    django_user_model.objects.create_user(username="demo", email="", password="old")
    values = bootstrap()
    user = django_user_model.objects.get(username="demo")
    assert (user.is_staff, user.is_superuser, user.email) == (True, True, "demo@example.com")
    assert OrganizationMembership.objects.get(user=user).organization_id == int(values["ORGANIZATION_ID"])
