"""Stand-ins for the throttle tests: a remote quota deployment on loopback, a clock, a recorded sleep."""
from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from products.llm_gateway.throttles import ThrottleContext


class Clock:
    """Unix seconds that only move when told to."""

    def __init__(self, start: float | None = None) -> None:
        self.now = time.time() if start is None else start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Sleeps:
    """An `asyncio.sleep` stand-in that records the delays asked for (the backoff) and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class RemoteQuota:
    """A loopback 'remote deployment' in front of the real quota endpoint (Django's live_server).

    mode "pass" forwards each request, credential headers included, to `upstream` and relays
    the answer; "fail" answers 500; "status" answers `status` with `body`; "slow" waits
    `delay` seconds before forwarding. `requests` lists what it received.
    """

    upstream: str = ""
    mode: str = "pass"
    status: int = 500
    body: bytes = b'{"detail": "boom"}'
    delay: float = 0.0
    requests: list[Seen] = field(default_factory=list)

    def start(self) -> "RemoteQuota":
        remote = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                remote.requests.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
                if remote.mode == "fail":
                    return self._send(500, b'{"detail": "A server error occurred."}')
                if remote.mode == "status":
                    return self._send(remote.status, remote.body)
                if remote.mode == "slow":
                    time.sleep(remote.delay)
                request = urllib.request.Request(remote.upstream + self.path)
                for name in ("authorization", "x-api-key", "accept"):
                    if name in {k.lower() for k in self.headers}:
                        request.add_header(name, self.headers[name])
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        return self._send(answer.status, answer.read())
                except urllib.error.HTTPError as error:
                    return self._send(error.code, error.read())

            def _send(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def count(self) -> int:
        return len(self.requests)


def refuse_like_posthog(remote: RemoteQuota) -> None:
    """Answer as PostHog's quota endpoint does for a key without `project:read` (it wants that scope)."""
    remote.mode = "status"
    remote.status = 403
    remote.body = json.dumps(
        {"type": "authentication_error", "code": "permission_denied",
         "detail": "API key missing required scope 'project:read'", "attr": None}
    ).encode()


def context(project, credential: str, *, billable: bool = True, product: str = "slack_app", user_id=None,
            end_user: str = "", kind: str = "personal_api_key", extra: dict | None = None) -> ThrottleContext:
    return ThrottleContext(
        product=product,
        billable=billable,
        project_id=project.id,
        project_api_token=project.api_token,
        organization_id=project.organization_id,
        credential=credential,
        credential_kind=kind,
        user_id=user_id,
        end_user=end_user,
        model="gpt-4o-mini",
        extra=extra or {},
    )
