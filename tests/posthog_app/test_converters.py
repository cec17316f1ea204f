"""`<id:...>`: an id beyond the 64-bit range is a 404 on every database, for every product's URLs.

On SQLite (the `make run` database) Django's `<int:...>` handed such ids to the ORM,
which raised OverflowError: a 500 where PostgreSQL answered 404.
"""
from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, resolve
from django.urls.converters import IntConverter
from django.urls.exceptions import Resolver404
from rest_framework.test import APIClient

from posthog_app.converters import MAX_ID, BoundedIntConverter

pytestmark = pytest.mark.sqlite


def all_patterns(resolver: URLResolver, prefix: str = ""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from all_patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def test_no_url_of_ours_takes_an_unbounded_int():
    ours = [(route, p) for route, p in all_patterns(get_resolver()) if not route.startswith("admin/")]
    assert any("<id:" in route for route, _ in ours)
    for route, pattern in ours:
        converters = getattr(pattern.pattern, "converters", {})
        assert not any(isinstance(c, IntConverter) for c in converters.values()), f"{route} uses <int:...>; use <id:...>"


def test_the_converter_accepts_every_id_and_nothing_larger():
    converter = BoundedIntConverter()
    assert converter.to_python("0") == 0 and converter.to_python(str(MAX_ID)) == MAX_ID
    with pytest.raises(ValueError):
        converter.to_python(str(MAX_ID + 1))
    assert resolve(f"/api/projects/{MAX_ID}/quota_limits/").kwargs == {"project_id": MAX_ID}
    for too_big in (MAX_ID + 1, 23967913928378941440, 10**30):
        with pytest.raises(Resolver404):
            resolve(f"/api/projects/{too_big}/quota_limits/")


@pytest.mark.django_db
@pytest.mark.parametrize(
    "method,path",
    [
        ("get", "/api/projects/{id}/quota_limits/"),
        ("post", "/api/projects/{id}/usage_events/"),
        ("get", "/api/projects/{id}/tasks/"),
        ("get", "/tasks/{id}/"),
    ],
)
def test_every_products_big_ids_are_404(accounts, method, path):
    org = accounts.organization()
    _, value = accounts.key(accounts.user(org), scopes=["*"])
    client = APIClient()
    client.force_authenticate(user=None)
    for big in (MAX_ID + 1, 23967913928378941440):
        response = getattr(client, method)(path.format(id=big), {}, format="json", HTTP_AUTHORIZATION=f"Bearer {value}")
        assert response.status_code == 404, (path, big, response.status_code)
