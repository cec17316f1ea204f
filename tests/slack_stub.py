"""A stand-in for Slack's Web API on 127.0.0.1, reached by the real `slack_sdk.WebClient`.

Tests point `SLACK_API_BASE_URL` at it, then assert on the calls it received. Each
method answers `{"ok": true, ...}` unless a test scripts another answer with
`respond()` (an error, a 429 with Retry-After, a non-JSON 500...).

Like Slack, it keeps the messages posted with `chat.postMessage` and answers
`conversations.replies` with the ones in that thread (their `metadata` only with
`include_all_metadata`), `users.info` and `conversations.info` with a name. `hold()`
makes the next call of a method take effect (the message is in the thread) and then
stall before answering, as a worker killed mid-post would see it.
"""
from __future__ import annotations

import json
import socket
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


@dataclass
class Hold:
    """Calls of a method that take effect, then stall until `release()` (or `seconds`)."""

    times: int = 1
    seconds: float = 120.0
    held: threading.Event = field(default_factory=threading.Event)  # set once a call is stalling
    released: threading.Event = field(default_factory=threading.Event)

    def release(self) -> None:
        self.released.set()


class SlackStub:
    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self._scripts: dict[str, list[ScriptedResponse]] = {}
        self._holds: dict[str, list[Hold]] = {}
        self.messages: list[dict[str, Any]] = []  # what chat.postMessage posted, as Slack stores it
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
                stub._stall_if_held(method)
                payload = body if isinstance(body, (bytes, str)) else json.dumps(body)
                payload = payload.encode() if isinstance(payload, str) else payload
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                try:
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError, socket.timeout):
                    pass  # the caller is gone (a killed worker): Slack's side of the call happened all the same

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

    def hold(self, method: str, *, times: int = 1, seconds: float = 120.0) -> Hold:
        """Make the next `times` calls of `method` take effect, then stall (up to `seconds`) before answering."""
        hold = Hold(times=times, seconds=seconds)
        with self._lock:
            self._holds.setdefault(method, []).append(hold)
        return hold

    def _stall_if_held(self, method: str) -> None:
        with self._lock:
            holds = self._holds.get(method)
            if not holds:
                return
            hold = holds[0]
            hold.times -= 1
            if hold.times <= 0:
                holds.pop(0)
        hold.held.set()
        hold.released.wait(hold.seconds)

    def thread(self, channel: str, thread_ts: str) -> list[dict[str, Any]]:
        """The messages posted in the thread `thread_ts` of `channel` (its parent too, if posted here), oldest first."""
        with self._lock:
            return [
                dict(m) for m in self.messages
                if m["channel"] == channel and (m.get("thread_ts") == thread_ts or m["ts"] == thread_ts)
            ]

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
            if call.method == "chat.postMessage":
                message = {"type": "message", "channel": call.args.get("channel"), "ts": ts, "text": call.args.get("text")}
                if call.args.get("thread_ts"):
                    message["thread_ts"] = call.args["thread_ts"]
                metadata = call.args.get("metadata")
                if isinstance(metadata, str):
                    metadata = json.loads(metadata)
                if metadata:
                    message["metadata"] = metadata
                if call.args.get("blocks"):
                    message["blocks"] = call.args["blocks"]
                self.messages.append(message)
                body.update(channel=message["channel"], ts=ts, message={"text": message["text"]})
            elif call.method == "chat.update":
                body.update(channel=call.args.get("channel"), ts=call.args.get("ts") or ts, message={"text": call.args.get("text")})
            elif call.method == "chat.postEphemeral":
                body["message_ts"] = ts
            elif call.method == "users.info":
                user = call.args.get("user", "U0")
                body["user"] = {"id": user, "name": user.lower(), "real_name": f"User {user}", "profile": {"display_name": f"user-{user}"}}
            elif call.method == "conversations.info":
                channel = call.args.get("channel", "C0")
                body["channel"] = {"id": channel, "name": f"channel-{channel.lower()}"}
            elif call.method == "conversations.replies":
                channel, thread_ts = call.args.get("channel"), call.args.get("ts")
                with_metadata = str(call.args.get("include_all_metadata", "")).lower() in {"1", "true"}
                replies = [
                    {k: v for k, v in m.items() if k != "metadata" or with_metadata}
                    for m in self.messages
                    if m["channel"] == channel and (m.get("thread_ts") == thread_ts or m["ts"] == thread_ts)
                ]
                body["messages"] = replies
                body["has_more"] = False
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
            self.messages.clear()
            for holds in self._holds.values():
                for hold in holds:
                    hold.release()
            self._holds.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
