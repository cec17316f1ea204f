"""/healthz and /readyz: a load balancer's view of the web process."""
import pytest
from django.test import Client

pytestmark = pytest.mark.django_db


def test_healthz_answers_without_dependencies(settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/9"
    assert Client().get("/healthz").json() == {"status": "ok"}


def test_readyz_is_ok_when_database_redis_and_temporal_answer(temporal):
    response = Client().get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "ok"


def test_readyz_names_what_is_down(temporal, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/9"
    settings.TEMPORAL_ADDRESS = "127.0.0.1:1"
    response = Client().get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "down": ["redis", "temporal"]}
