"""Operators manage organizations, projects, memberships and API keys in the admin.

A personal API key's value is shown exactly once, on the page answering the form that
created it, and only its hash is stored.
"""
from __future__ import annotations

import re

import pytest
from rest_framework.test import APIClient

from products.accounts.api_keys import ALL_SCOPES, hash_key_value
from products.accounts.models import Organization, OrganizationMembership, PersonalAPIKey, Project

pytestmark = pytest.mark.django_db

KEY_VALUE = re.compile(r"phx_[A-Za-z0-9_\-]{20,}")


@pytest.fixture
def data(accounts, admin_user):
    org = accounts.organization("Acme")
    project = accounts.project(org, "Web")
    member = accounts.user(org, level=OrganizationMembership.Level.ADMIN)
    key, _ = accounts.key(member, scopes=["project:read"], organizations=[org])
    return {
        "organization": org,
        "project": project,
        "organizationmembership": OrganizationMembership.objects.get(user=member),
        "personalapikey": key,
        "member": member,
    }


@pytest.mark.parametrize("model", ["organization", "project", "organizationmembership", "personalapikey"])
def test_every_accounts_admin_page_renders(admin_client, data, model):
    obj = data[model]
    for path in (
        f"/admin/accounts/{model}/",
        f"/admin/accounts/{model}/?q=a",
        f"/admin/accounts/{model}/add/",
        f"/admin/accounts/{model}/{obj.pk}/change/",
    ):
        response = admin_client.get(path)
        assert response.status_code == 200, (path, response.content.decode()[:1000])


def test_the_project_list_shows_organization_and_api_token(admin_client, data):
    body = admin_client.get("/admin/accounts/project/").content.decode()
    assert data["project"].api_token in body
    assert "Acme" in body


def test_a_project_added_in_the_admin_gets_a_generated_token(admin_client, data):
    response = admin_client.post("/admin/accounts/project/add/", {"organization": data["organization"].pk, "name": "New"})
    assert response.status_code == 302, response.content.decode()[:2000]
    project = Project.objects.get(name="New")
    assert project.api_token.startswith("phc_") and len(project.api_token) > 20
    assert project.organization == data["organization"]


def test_a_membership_is_added_in_the_admin(admin_client, accounts):
    org = accounts.organization()
    user = accounts.user()
    response = admin_client.post(
        "/admin/accounts/organizationmembership/add/",
        {"organization": org.pk, "user": user.pk, "level": OrganizationMembership.Level.OWNER},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert OrganizationMembership.objects.get(user=user).level == OrganizationMembership.Level.OWNER


def create_key_in_admin(admin_client, user, scopes, **extra):
    return admin_client.post(
        "/admin/accounts/personalapikey/add/",
        {"user": user.pk, "label": "ci key", "scopes": scopes, **extra},
    )


def test_a_new_key_is_shown_once_and_stored_only_as_a_hash(admin_client, data):
    org, project, member = data["organization"], data["project"], data["member"]
    response = create_key_in_admin(
        admin_client, member, ["project:read", "llm_gateway:read"], scoped_projects=[project.pk]
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    assert "no-store" in response["Cache-Control"]
    values = set(KEY_VALUE.findall(response.content.decode()))
    assert len(values) == 1
    value = values.pop()

    key = PersonalAPIKey.objects.get(label="ci key")
    assert key.user == member
    assert key.scopes == ["project:read", "llm_gateway:read"]
    assert list(key.scoped_projects.all()) == [project]
    # Stored as a hash: the value is nowhere in the row, and the hash finds the key.
    assert key.secure_value == hash_key_value(value)
    assert value not in (key.secure_value, key.mask_value)
    assert PersonalAPIKey.objects.find_by_value(value) == key
    assert key.mask_value == f"{value[:4]}...{value[-4:]}"

    # Never shown again: not on the change page or the list, and the hash is never shown either.
    for path in (f"/admin/accounts/personalapikey/{key.pk}/change/", "/admin/accounts/personalapikey/"):
        body = admin_client.get(path).content.decode()
        assert value not in body
        assert key.secure_value not in body
        assert key.secure_value.removeprefix("sha256$") not in body
        assert key.mask_value in body

    # And it really works against the API.
    api = APIClient().get(f"/api/projects/{project.pk}/quota_limits/", HTTP_AUTHORIZATION=f"Bearer {value}")
    assert api.status_code == 200, api.content


def test_an_unknown_scope_is_a_form_error_naming_the_valid_ones(admin_client, data):
    response = create_key_in_admin(admin_client, data["member"], ["project:read", "bogus:scope"])
    assert response.status_code == 200
    body = response.content.decode()
    assert "Unknown scope bogus:scope" in body
    assert "llm_gateway:read" in body
    assert not KEY_VALUE.search(body)
    assert not PersonalAPIKey.objects.filter(label="ci key").exists()


def test_a_key_needs_at_least_one_scope(admin_client, data):
    response = create_key_in_admin(admin_client, data["member"], [])
    assert response.status_code == 200
    assert "Choose at least one scope." in response.content.decode()
    assert not PersonalAPIKey.objects.filter(label="ci key").exists()


def test_every_scope_is_offered_as_a_checkbox(admin_client, data):
    body = admin_client.get("/admin/accounts/personalapikey/add/").content.decode()
    for scope in ALL_SCOPES:
        assert f'type="checkbox" name="scopes" value="{scope}"' in body


def test_editing_a_key_keeps_its_value_and_owner(admin_client, data, accounts):
    key = data["personalapikey"]
    secure_value, owner = key.secure_value, key.user
    other = accounts.user()
    response = admin_client.post(
        f"/admin/accounts/personalapikey/{key.pk}/change/",
        {"user": other.pk, "label": "renamed", "scopes": ["*"], "secure_value": "sha256$forged", "mask_value": "x"},
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    key.refresh_from_db()
    assert (key.label, key.scopes) == ("renamed", ["*"])
    assert (key.secure_value, key.user) == (secure_value, owner)
    assert key.mask_value != "x"


def test_regenerating_a_key_shows_the_new_value_and_retires_the_old(admin_client, accounts, data):
    project, member = data["project"], data["member"]
    key, old_value = accounts.key(member, scopes=["project:read"])
    response = admin_client.post(
        "/admin/accounts/personalapikey/", {"action": "regenerate_keys", "_selected_action": [key.pk]}
    )
    assert response.status_code == 200, response.content.decode()[:2000]
    (new_value,) = set(KEY_VALUE.findall(response.content.decode()))
    assert new_value != old_value
    assert PersonalAPIKey.objects.find_by_value(old_value) is None
    assert PersonalAPIKey.objects.find_by_value(new_value) == key

    url = f"/api/projects/{project.pk}/quota_limits/"
    assert APIClient().get(url, HTTP_AUTHORIZATION=f"Bearer {old_value}").status_code == 401
    assert APIClient().get(url, HTTP_AUTHORIZATION=f"Bearer {new_value}").status_code == 200


def test_the_organization_page_lists_its_projects_and_members(admin_client, data):
    body = admin_client.get(f"/admin/accounts/organization/{data['organization'].pk}/change/").content.decode()
    assert data["project"].api_token in body
    assert data["member"].username in body
    assert Organization.objects.count() == 1
