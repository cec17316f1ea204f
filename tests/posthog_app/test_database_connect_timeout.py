"""A database that accepts connections but never answers: the Slack webhook answers 503 inside Slack's 3 seconds.

Invariant: with PostgreSQL hung, Slack is told to deliver again (503) before its own 3 s
timeout, instead of a server thread hanging on the connection for ever (settings.py's
DATABASE_CONNECT_TIMEOUT). Run in a process of its own with the production settings
(posthog_app.settings, not the tests'), through the production entry point.
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

REQUEST = r'''
import hashlib, hmac, io, json, sys, time
from posthog_app.wsgi import application

def call(method, body=b""):
    ts = str(int(time.time()))
    environ = {
        "REQUEST_METHOD": method, "PATH_INFO": "/slack/events", "SERVER_NAME": "localhost", "SERVER_PORT": "80",
        "HTTP_HOST": "localhost", "wsgi.input": io.BytesIO(body), "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json", "wsgi.url_scheme": "http", "HTTP_X_SLACK_REQUEST_TIMESTAMP": ts,
        "HTTP_X_SLACK_SIGNATURE": "v0=" + hmac.new(b"s", f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest(),
    }
    started = []
    content = b"".join(application(environ, lambda status, headers: started.append(status)))
    return int(started[0].split()[0]), content

call("GET")  # imports and URL resolvers loaded: the timing below is the request's own
event = {"type": "app_mention", "user": "U1", "text": "<@UBOT> hi", "ts": "1.2", "channel": "C1"}
body = json.dumps({"type": "event_callback", "team_id": "T1", "event_id": "Ev1", "event": event}).encode()
began = time.monotonic()
status, content = call("POST", body)
print(json.dumps({"status": status, "body": content.decode(), "seconds": time.monotonic() - began}))
'''


def test_a_hung_database_makes_the_webhook_answer_503_within_slacks_3_seconds(settings):
    hung = socket.socket()
    hung.bind(("127.0.0.1", 0))
    hung.listen(16)  # the kernel accepts connections; nothing ever reads or answers
    try:
        env = dict(
            os.environ,
            DJANGO_SETTINGS_MODULE="posthog_app.settings",
            DATABASE_URL=f"postgres://postgres@127.0.0.1:{hung.getsockname()[1]}/hung",
            REDIS_URL=settings.REDIS_URL,
            SLACK_SIGNING_SECRET="s",
            DEBUG="1",
            ALLOWED_HOSTS="localhost",
            LOG_LEVEL="CRITICAL",
        )
        env.pop("DATABASE_CONNECT_TIMEOUT", None)  # the default is what is tested
        done = subprocess.run(
            [sys.executable, "-c", REQUEST], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60
        )
    finally:
        hung.close()
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    assert json.loads(answer["body"])["error"] == "temporarily_unavailable"
    assert answer["seconds"] < 3.0
