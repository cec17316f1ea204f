"""Sign in the way a member does: GET the login page, POST its form with its CSRF token."""
from __future__ import annotations

import re

from django.test import Client


def csrf_token_of(html: str) -> str:
    match = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert match, "the page has no CSRF token field"
    return match.group(1)


def sign_in(client: Client, username: str, password: str, next_url: str | None = None):
    """Return the response to posting the login form (a 302 on success, the form again on failure)."""
    login_url = "/login/" + (f"?next={next_url}" if next_url else "")
    page = client.get(login_url)
    assert page.status_code == 200
    form = {"csrfmiddlewaretoken": csrf_token_of(page.content.decode()), "username": username, "password": password}
    if next_url:
        form["next"] = next_url
    return client.post(login_url, form)
