"""A stand-in for Slack's Web API on 127.0.0.1, reached by the real `slack_sdk.WebClient`.

Tests point `SLACK_API_BASE_URL` at it, then assert on the calls it received. Each
method answers `{"ok": true, ...}` unless a test scripts another answer with
`respond()` (an error, a 429 with Retry-After, a non-JSON 500...).

Like Slack, it keeps the messages posted with `chat.postMessage` and answers
`conversations.replies` with the ones in that thread (their `metadata` only with
`include_all_metadata`), `users.info` and `conversations.info` with a name; `chat.update`
changes the stored message and `reactions.add` / `reactions.remove` change its
`reactions` (names). `delete()` deletes a message the way a user would: later edits and
reactions on it answer `message_not_found`, and reading its thread `thread_not_found`. `hold()`
makes the next call of a method take effect (the message is in the thread) and then
stall before answering, as a worker killed mid-post would see it.

It also stands in for Slack's consent pages: a browser sent to `authorize_url`
(OAuth v2, "Add to Slack") or `openid_authorize_url` ("Sign in with Slack") is sent
straight back to the `redirect_uri` with a `code` and the `state`, as if the person had
approved. `oauth.v2.access` exchanges such a code for a bot token of `workspace` with
the scopes that were asked for (`grant_scopes` overrides them; `token_rotation` adds a
refresh token and `expires_in`, and a `grant_type=refresh_token` call rotates);
`openid.connect.token` / `openid.connect.userInfo` answer as `member` of `workspace`.
"""
from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit


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
    match: Callable[[dict[str, Any]], bool] | None = None  # only calls whose args this accepts (None: any)
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
        self._deleted: set[tuple[str, str]] = set()  # (channel, ts) of messages deleted with `delete()`
        self._codes: dict[str, dict[str, str]] = {}  # authorization code -> what the authorize request asked for
        self._serial = 0
        self._set_defaults()
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
                stub._stall_if_held(method, args)
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

            def do_GET(self) -> None:  # noqa: N802
                url = urlsplit(self.path)
                if url.path.endswith("/oauth/v2/authorize") or url.path.endswith("/openid/connect/authorize"):
                    args = {k: v[0] for k, v in parse_qs(url.query).items()}
                    kind = "oauth.v2.authorize" if "/oauth/" in url.path else "openid.connect.authorize"
                    location = stub._authorize(SlackCall(kind, args, dict(self.headers)))
                    self.send_response(302)
                    self.send_header("Location", location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.do_POST()

            def log_message(self, *args) -> None:  # keep test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/api/"
        self.authorize_url = f"http://127.0.0.1:{self.server.server_address[1]}/oauth/v2/authorize"
        self.openid_authorize_url = f"http://127.0.0.1:{self.server.server_address[1]}/openid/connect/authorize"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    # --- the consent pages and the token exchanges ------------------------------------

    def _set_defaults(self) -> None:
        self.workspace = {"team_id": "T0STUB", "team_name": "Stub Workspace", "bot_user_id": "UBOTSTUB", "app_id": "ASTUB"}
        self.member = {"user_id": "UMEMBER1", "email": "member@stub.example", "name": "Stub Member"}
        self.grant_scopes: list[str] | None = None  # None: grant what the authorize request asked for
        self.token_rotation = False
        self.token_lifetime = 43200  # seconds, as Slack's rotating tokens
        self.denied = False  # the person clicks "Cancel" on the consent page

    def _authorize(self, call: SlackCall) -> str:
        """Record the authorize request and return where the browser goes next (redirect_uri with code and state)."""
        with self._lock:
            self.calls.append(call)
            self._serial += 1
            code = f"code-{self._serial}-{call.args.get('state', '')[:8]}"
            self._codes[code] = dict(call.args)
            params = {"state": call.args.get("state", "")}
            if self.denied:
                params["error"] = "access_denied"
            else:
                params["code"] = code
        redirect = call.args.get("redirect_uri", "")
        return f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(params)}"

    def _next_serial(self) -> int:
        self._serial += 1
        return self._serial

    def _oauth_v2_access(self, args: dict[str, Any]) -> dict[str, Any]:
        n = self._next_serial()
        if args.get("grant_type") == "refresh_token":
            return {
                "ok": True, "token_type": "bot", "access_token": f"xoxe.xoxb-rotated-{n}",
                "refresh_token": f"xoxe-refresh-{n}", "expires_in": self.token_lifetime,
                "team": {"id": self.workspace["team_id"], "name": self.workspace["team_name"]},
            }
        asked = self._codes.pop(str(args.get("code", "")), None)
        if asked is None:
            return {"ok": False, "error": "invalid_code"}
        scopes = self.grant_scopes if self.grant_scopes is not None else [s for s in asked.get("scope", "").split(",") if s]
        body: dict[str, Any] = {
            "ok": True, "app_id": self.workspace["app_id"], "token_type": "bot",
            "access_token": f"xoxb-installed-{n}", "scope": ",".join(scopes),
            "bot_user_id": self.workspace["bot_user_id"],
            "team": {"id": self.workspace["team_id"], "name": self.workspace["team_name"]},
            "enterprise": None, "is_enterprise_install": False, "authed_user": {"id": self.member["user_id"]},
        }
        if self.token_rotation:
            body.update(access_token=f"xoxe.xoxb-installed-{n}", refresh_token=f"xoxe-refresh-{n}", expires_in=self.token_lifetime)
        return body

    def _openid_token(self, args: dict[str, Any]) -> dict[str, Any]:
        if self._codes.pop(str(args.get("code", "")), None) is None:
            return {"ok": False, "error": "invalid_code"}
        n = self._next_serial()
        return {"ok": True, "access_token": f"xoxp-oidc-{n}", "token_type": "Bearer", "id_token": f"header.payload-{n}.signature"}

    def _openid_user_info(self) -> dict[str, Any]:
        return {
            "ok": True, "sub": self.member["user_id"], "https://slack.com/user_id": self.member["user_id"],
            "https://slack.com/team_id": self.workspace["team_id"], "https://slack.com/team_name": self.workspace["team_name"],
            "email": self.member["email"], "email_verified": True, "name": self.member["name"],
        }

    # --- scripting --------------------------------------------------------------------

    def respond(self, method: str, *, status: int = 200, body: Any = None, headers=None, times: int | None = 1) -> None:
        """Make the next `times` calls of `method` answer this way (then back to ok)."""
        with self._lock:
            self._scripts.setdefault(method, []).append(
                ScriptedResponse(status=status, body=body if body is not None else {"ok": True}, headers=headers or {}, times=times)
            )

    def hold(
        self, method: str, *, times: int = 1, seconds: float = 120.0, match: Callable[[dict[str, Any]], bool] | None = None
    ) -> Hold:
        """Make the next `times` calls of `method` (those whose args `match` accepts) take effect, then stall
        (up to `seconds`) before answering."""
        hold = Hold(times=times, seconds=seconds, match=match)
        with self._lock:
            self._holds.setdefault(method, []).append(hold)
        return hold

    def _stall_if_held(self, method: str, args: dict[str, Any]) -> None:
        with self._lock:
            holds = self._holds.get(method)
            if not holds:
                return
            hold = holds[0]
            if hold.match is not None and not hold.match(args):
                return
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

    def delete(self, channel: str, ts: str) -> None:
        """Delete the message `ts` as a user would: edits and reactions on it now answer `message_not_found`."""
        with self._lock:
            self._deleted.add((channel, ts))
            self.messages = [m for m in self.messages if not (m["channel"] == channel and m["ts"] == ts)]

    def _message(self, channel: Any, ts: Any) -> dict[str, Any] | None:
        return next((m for m in self.messages if m["channel"] == channel and m["ts"] == ts), None)

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
            target_ts = call.args.get("timestamp") if call.method.startswith("reactions.") else call.args.get("ts")
            if (call.args.get("channel"), target_ts) in self._deleted:
                gone = "thread_not_found" if call.method == "conversations.replies" else "message_not_found"
                return 200, {"ok": False, "error": gone}, {}
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
                message = self._message(call.args.get("channel"), call.args.get("ts"))
                if message is not None:
                    message["text"] = call.args.get("text")
                    if call.args.get("blocks"):
                        message["blocks"] = call.args["blocks"]
                body.update(channel=call.args.get("channel"), ts=call.args.get("ts") or ts, message={"text": call.args.get("text")})
            elif call.method in ("reactions.add", "reactions.remove"):
                message = self._message(call.args.get("channel"), call.args.get("timestamp"))
                if message is not None:
                    reactions = message.setdefault("reactions", [])
                    name = call.args.get("name")
                    if call.method == "reactions.add" and name not in reactions:
                        reactions.append(name)
                    elif call.method == "reactions.remove" and name in reactions:
                        reactions.remove(name)
            elif call.method == "chat.postEphemeral":
                body["message_ts"] = ts
            elif call.method == "oauth.v2.access":
                body = self._oauth_v2_access(call.args)
            elif call.method == "openid.connect.token":
                body = self._openid_token(call.args)
            elif call.method == "openid.connect.userInfo":
                body = self._openid_user_info()
            elif call.method == "views.publish":
                body["view"] = {"id": f"V{self._next_serial():08d}", "type": "home"}
            elif call.method == "auth.test":
                body.update(team_id=self.workspace["team_id"], team=self.workspace["team_name"], user_id=self.workspace["bot_user_id"])
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
            self._deleted.clear()
            self._codes.clear()
            self._set_defaults()
            for holds in self._holds.values():
                for hold in holds:
                    hold.release()
            self._holds.clear()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
