"""A stand-in for Slack's Web API on 127.0.0.1, reached by the real `slack_sdk.WebClient`.

Tests point `SLACK_API_BASE_URL` at it, then assert on the calls it received. Each
method answers `{"ok": true, ...}` unless a test scripts another answer with
`respond()` (an error, a 429 with Retry-After, a non-JSON 500...).
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


@dataclass
class SlackCall:
    method: str  # e.g. "chat.postMessage"
    args: dict[str, Any]
    headers: dict[str, str]

    @property
    def token(self) -> str | None:
        auth = self.headers.get("Authorization", "")
        return auth.removeprefix("Bearer ") or None


@dataclass
class ScriptedResponse:
    status: int = 200
    body: Any = field(default_factory=lambda: {"ok": True})
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = 1  # None: every call from now on


class SlackStub:
    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self._scripts: dict[str, list[ScriptedResponse]] = {}
        self._lock = threading.Lock()
        self._ts = 1700000000.000100
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length).decode() if length else ""
                ctype = self.headers.get("Content-Type", "")
                if "json" in ctype:
                    args = json.loads(raw or "{}")
                else:
                    args = {k: v[0] if len(v) == 1 else v for k, v in parse_qs(raw).items()}
                method = self.path.strip("/").split("/")[-1]
                status, body, headers = stub._record(SlackCall(method, args, dict(self.headers)))
                payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
                payload = payload.encode() if isinstance(payload, str) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = do_POST

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # --- scripting --------------------------------------------------------------------

    def respond(self, method: str, *, status: int = 200, body: Any = None, headers=None, times: int | None = 1) -> None:
        """Make the next `times` calls of `method` answer this way (then back to ok)."""
        with self._lock:
            self._scripts.setdefault(method, []).append(
                ScriptedResponse(status=status, body=body if body is not None else {"ok": True}, headers=headers or {}, times=times)
            )

    def _record(self, call: SlackCall) -> tuple[int, Any, dict[str, str]]:
        with self._lock:
            self.calls.append(call)
            scripts = self._scripts.get(call.method)
            if scripts:
                scripted = scripts[0]
                if scripted.times is not None:
                    scripted.times -= 1
                    if scripted.times <= 0:
                        scripts.pop(0)
                return scripted.status, scripted.body, scripted.headers
            self._ts += 1
            ts = f"{self._ts:.6f}"
        body: dict[str, Any] = {"ok": True}
        if call.method in {"chat.postMessage", "chat.update"}:
            body.update(channel=call.args.get("channel"), ts=call.args.get("ts") or ts, message={"text": call.args.get("text")})
        elif call.method == "chat.postEphemeral":
            body["message_ts"] = ts
        elif call.method == "users.info":
            user = call.args.get("user", "U0")
            body["user"] = {"id": user, "name": user.lower(), "real_name": f"User {user}", "profile": {"display_name": f"user-{user}"}}
        elif call.method == "conversations.replies":
            body["messages"] = []
        return 200, body, {}

    # --- assertions -------------------------------------------------------------------

    def calls_to(self, method: str) -> list[SlackCall]:
        with self._lock:
            return [c for c in self.calls if c.method == method]

    def wait_for(self, method: str, count: int = 1, timeout: float = 10.0) -> list[SlackCall]:
        """Wait until `method` has been called `count` times; return those calls."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            calls = self.calls_to(method)
            if len(calls) >= count:
                return calls
            time.sleep(0.02)
        raise AssertionError(f"expected {count} call(s) to {method}, got {len(self.calls_to(method))}: {self.calls}")

    def reset(self) -> None:
        with self._lock:
            self.calls.clear()
            self._scripts.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
