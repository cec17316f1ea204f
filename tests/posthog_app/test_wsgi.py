"""posthog_app.wsgi: Slack's webhooks go through a trimmed handler that answers exactly as the full stack did.

Invariant: `SlackWSGIHandler` only leaves out work; every request to `/slack/events` or
`/slack/interactivity` gets the same status, body and security headers as through
Django's full middleware stack (what the test client runs), bad signatures, oversized
bodies, wrong methods and foreign Host headers included. Every other path still gets the
full stack.
"""
from __future__ import annotations

import io
import json
import sys

import pytest
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from django.utils.module_loading import import_string

from posthog_app import wsgi
from products.slack_app.inbox_models import MentionInbox
from tests.products.slack_app.conftest import integration, mention_envelope, sign  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = ("X-Content-Type-Options", "Referrer-Policy", "Cross-Origin-Opener-Policy", "X-Frame-Options")


@pytest.fixture(autouse=True)
def keep_the_test_transaction():
    """As Django's test client does: the handler's request signals must not close the test's connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


class Answer:
    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status_code, self.headers, self.content = status, headers, body


def call(method: str, path: str, body: bytes = b"", host: str = "testserver", content_type: str = "application/json", **extra) -> Answer:
    """One request through `posthog_app.wsgi.application`, as gunicorn makes it."""
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": path, "SCRIPT_NAME": "", "QUERY_STRING": "",
        "SERVER_NAME": "testserver", "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "HTTP_HOST": host,
        "CONTENT_TYPE": content_type, "CONTENT_LENGTH": str(len(body)), "wsgi.input": io.BytesIO(body),
        "wsgi.url_scheme": "http", "wsgi.errors": sys.stderr, "wsgi.multithread": True, "wsgi.multiprocess": True,
        "wsgi.run_once": False, "wsgi.version": (1, 0), **extra,
    }
    started = {}

    def start_response(status, headers, exc_info=None):
        started["status"], started["headers"] = int(status.split()[0]), dict(headers)

    response = wsgi.application(environ, start_response)
    try:
        content = b"".join(response)
    finally:
        response.close()
    return Answer(started["status"], started["headers"], content)


def signed(envelope: dict) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(envelope).encode()
    return body, sign(body)


def test_a_signed_mention_is_recorded_and_answered_with_the_security_headers(integration):  # noqa: F811
    body, headers = signed(mention_envelope())
    answer = call("POST", "/slack/events", body, **headers)
    assert answer.status_code == 200
    assert json.loads(answer.content) == {"ok": True, "outcome": "started"}
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["X-Frame-Options"] == "DENY"
    assert answer.headers["Referrer-Policy"] == "same-origin"
    assert MentionInbox.objects.count() == 1


def test_the_slack_paths_use_the_trimmed_handler_and_others_the_full_stack():
    assert wsgi.SLACK_PATHS == {"/slack/events", "/slack/interactivity"}
    middleware = type(wsgi.slack_application._middleware_chain.__wrapped__).__name__  # the outermost one
    assert middleware == "SecurityMiddleware"
    # No middleware kept has view, template-response or exception hooks (load_middleware would drop them).
    assert wsgi.slack_application._view_middleware == []
    for path in wsgi.SLACK_MIDDLEWARE:
        cls = import_string(path)
        assert not any(hasattr(cls, hook) for hook in ("process_view", "process_exception", "process_template_response"))
    # Elsewhere the session and CSRF middleware still run: the login page sets the CSRF cookie.
    login = call("GET", "/login/")
    assert login.status_code == 200 and "Set-Cookie" in login.headers and "csrftoken" in login.headers["Set-Cookie"]


def same_as_full_stack(client, method: str, path: str, body: bytes, headers: dict[str, str], **call_kwargs) -> Answer:
    """Make the request through the trimmed handler and through the full stack; they must answer alike."""
    ours = call(method, path, body, **call_kwargs, **headers)
    content_type = call_kwargs.get("content_type", "application/json")
    full = client.generic(method, path, data=body, content_type=content_type, **headers, **(
        {"HTTP_HOST": call_kwargs["host"]} if "host" in call_kwargs else {}
    ))
    assert ours.status_code == full.status_code
    assert ours.content == full.content
    for header in SECURITY_HEADERS:
        assert ours.headers.get(header) == full.headers.get(header), header
    return ours


@pytest.mark.parametrize("path", ["/slack/events", "/slack/interactivity"])
def test_a_bad_signature_is_refused_as_before(client, integration, path):  # noqa: F811
    body, headers = signed(mention_envelope())
    headers["HTTP_X_SLACK_SIGNATURE"] = "v0=" + "0" * 64
    answer = same_as_full_stack(client, "POST", path, body, headers)
    assert answer.status_code == 401
    assert MentionInbox.objects.count() == 0


@pytest.mark.parametrize("path", ["/slack/events", "/slack/interactivity"])
def test_an_oversized_body_is_refused_as_before(client, path):
    body = b"x" * (1024 * 1024 + 1)
    answer = same_as_full_stack(client, "POST", path, body, sign(body))
    assert answer.status_code == 413


@pytest.mark.parametrize("path", ["/slack/events", "/slack/interactivity"])
def test_a_get_is_refused_as_before(client, path):
    answer = same_as_full_stack(client, "GET", path, b"", {})
    assert answer.status_code == 405


def test_malformed_json_is_refused_as_before(client, integration):  # noqa: F811
    body = b'{"type": "event_callback", '
    answer = same_as_full_stack(client, "POST", "/slack/events", body, sign(body))
    assert answer.status_code == 400


def test_a_foreign_host_is_refused_as_before(client, integration):  # noqa: F811
    body, headers = signed(mention_envelope())
    answer = same_as_full_stack(client, "POST", "/slack/events", body, headers, host="evil.example")
    assert answer.status_code == 400
    assert MentionInbox.objects.count() == 0


def test_url_verification_answers_the_challenge(client):
    body, headers = signed({"type": "url_verification", "challenge": "abc123"})
    answer = same_as_full_stack(client, "POST", "/slack/events", body, headers)
    assert answer.status_code == 200 and json.loads(answer.content) == {"challenge": "abc123"}


IMPORT_WSGI = """
import sys
import posthog_app.wsgi
from django.urls import get_resolver
print("products.slack_app.events" in sys.modules, "url_patterns" in vars(get_resolver(posthog_app.wsgi.SLACK_URLCONF)))
"""


def test_the_webhooks_modules_are_imported_when_the_process_loads_the_app_not_in_its_first_request():
    """A worker's first mention must not pay the import (it held the GIL ~180 ms, stalling the process's other requests)."""
    import os
    import subprocess
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "posthog_app.settings_test", "PYTHONPATH": str(root)}
    proc = subprocess.run([sys.executable, "-c", IMPORT_WSGI], env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.split() == ["True", "True"]
