"""The project's own pages: `/` links to what a newcomer needs; `/login/` and `/logout/` are the members' sign-in."""
from __future__ import annotations

import pytest
from django.test import Client

from tests.posthog_app.signin import csrf_token_of, sign_in

pytestmark = pytest.mark.django_db


def test_home_page_links_to_billing_the_api_docs_and_the_admin():
    response = Client().get("/")
    assert response.status_code == 200
    html = response.content.decode()
    for link in ('href="/billing/"', 'href="/api/schema/swagger-ui/"', 'href="/admin/"', 'href="/login/"'):
        assert link in html
    assert "<script" not in html and "stylesheet" not in html


def test_sign_in_without_next_lands_on_home_and_sign_out_needs_a_post(accounts):
    user = accounts.user(accounts.organization())
    client = Client(enforce_csrf_checks=True)
    response = sign_in(client, user.username, "pw")
    assert response.status_code == 302 and response["Location"] == "/"
    home = client.get("/")
    assert user.username in home.content.decode()
    # Signing out is a POST with the page's CSRF token, then the login page again.
    out = client.post("/logout/", {"csrfmiddlewaretoken": csrf_token_of(home.content.decode())})
    assert out.status_code == 302 and out["Location"] == "/login/"
    assert client.get("/billing/").status_code == 302


def test_sign_in_refuses_a_next_url_on_another_site(accounts):
    user = accounts.user(accounts.organization())
    response = sign_in(Client(enforce_csrf_checks=True), user.username, "pw", next_url="https://evil.example/")
    assert response.status_code == 302 and response["Location"] == "/"


def test_the_login_form_without_its_csrf_token_is_refused(accounts):
    user = accounts.user(accounts.organization())
    response = Client(enforce_csrf_checks=True).post("/login/", {"username": user.username, "password": "pw"})
    assert response.status_code == 403


def test_a_staff_user_still_signs_into_the_admin_on_its_own_page(admin_client):
    assert admin_client.get("/admin/").status_code == 200
