#!/usr/bin/env python3
"""An example external task runner: the whole runner protocol, end to end, with the standard library only.

    python scripts/example_runner.py --base-url http://127.0.0.1:8000 --project 1 --api-key phx_...
    # or: TASK_RUNNER_BASE_URL=... TASK_RUNNER_PROJECT_ID=1 TASK_RUNNER_API_KEY=phx_... python scripts/example_runner.py

It claims the project's oldest queued run (the project's agent backend must be "external",
set in the admin under Coding tasks > Agent settings), sends a heartbeat, reports two
progress lines, reads the follow-ups people added in the Slack thread, and finishes the run
with a summary (and `--pr-url`, if given). It does no real work: a real runner would clone
`repository`, run a coding agent in a sandbox and open a pull request where this one
sleeps `--work-seconds`, heartbeating meanwhile.

The key is a personal API key with scope `task:write` (scope it to the one project).
Each step prints one JSON line to stdout; the exit status is 0 when a run was finished
(or nothing was queued), 1 when the server refused a call (its reason is printed to stderr).

The protocol (see /api/schema/swagger-ui/, tag "task runners"):
    POST {base}/api/projects/{project}/task_runs/claim/                  {"runner"}  -> 200 run | 204 none
    POST {base}/api/projects/{project}/task_runs/{run}/heartbeat/        {"runner"}
    POST {base}/api/projects/{project}/task_runs/{run}/progress/         {"runner", "line"}
    GET  {base}/api/projects/{project}/task_runs/{run}/followups/?after=<cursor>
    POST {base}/api/projects/{project}/task_runs/{run}/finish/           {"runner", "status", "summary", "pr_url", "error"}
A finish may be retried freely: the same finish again answers 200 and changes nothing.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from typing import Any


class RunnerError(Exception):
    """The server refused a call: `status` and its `{"detail", "code"}` body."""

    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(f"HTTP {status} {body.get('code', '')}: {body.get('detail', body)}")
        self.status = status
        self.code = body.get("code", "")


class Client:
    """The runner protocol over HTTP for one project, as one named runner."""

    def __init__(self, base_url: str, project: int, api_key: str, runner: str, timeout: float = 30) -> None:
        self.root = f"{base_url.rstrip('/')}/api/projects/{project}/task_runs"
        self.api_key = api_key
        self.runner = runner
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None, retries: int = 0) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(
            f"{self.root}/{path}", data=data, method=method,
            headers={"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json", "Accept": "application/json"},
        )
        for attempt in range(retries + 1):
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:
                    raw = response.read()
                    return response.status, json.loads(raw) if raw else None
            except urllib.error.HTTPError as exc:
                raw = exc.read()
                try:
                    payload = json.loads(raw) if raw else {}
                except ValueError:
                    payload = {"detail": raw[:200].decode(errors="replace")}
                if exc.code >= 500 and attempt < retries:
                    time.sleep(2**attempt)
                    continue
                raise RunnerError(exc.code, payload if isinstance(payload, dict) else {"detail": payload}) from None
            except (urllib.error.URLError, TimeoutError, ConnectionError):
                if attempt < retries:
                    time.sleep(2**attempt)
                    continue
                raise
        raise AssertionError("unreachable")

    def claim(self) -> dict[str, Any] | None:
        status, run = self._call("POST", "claim/", {"runner": self.runner})
        return run if status == 200 else None

    def heartbeat(self, run_id: int) -> dict[str, Any]:
        return self._call("POST", f"{run_id}/heartbeat/", {"runner": self.runner}, retries=2)[1]

    def progress(self, run_id: int, line: str) -> dict[str, Any]:
        return self._call("POST", f"{run_id}/progress/", {"runner": self.runner, "line": line}, retries=2)[1]

    def followups(self, run_id: int, after: int) -> dict[str, Any]:
        return self._call("GET", f"{run_id}/followups/?after={after}", retries=2)[1]

    def finish(self, run_id: int, **result: str) -> dict[str, Any]:
        # Safe to retry: the server answers a repeated, identical finish with 200 and changes nothing.
        return self._call("POST", f"{run_id}/finish/", {"runner": self.runner, **result}, retries=3)[1]


class Heartbeat(threading.Thread):
    """Beats every `interval` seconds while the runner works, until stopped or the server says to stop."""

    def __init__(self, client: Client, run_id: int, interval: float) -> None:
        super().__init__(daemon=True, name=f"heartbeat-{run_id}")
        self.client, self.run_id, self.interval = client, run_id, interval
        self.stopped = threading.Event()
        self.lost: RunnerError | None = None

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.client.heartbeat(self.run_id)
            except RunnerError as exc:  # 409: cancelled, lost, or not ours any more: stop working
                self.lost = exc
                return
            except OSError:
                pass  # the server is unreachable for a moment: beat again next time

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=5)


def say(step: str, **fields: Any) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


def work_one_run(client: Client, run: dict[str, Any], pr_url: str, work_seconds: float) -> dict[str, Any]:
    run_id = run["id"]
    say("claimed", run_id=run_id, task_id=run["task_id"], title=run["title"], repository=run["repository"],
        resume_from=(run["resume_from"] or {}).get("id"), followups=len(run["followups"]))
    client.heartbeat(run_id)
    say("heartbeat", run_id=run_id)

    beat = Heartbeat(client, run_id, interval=max(1.0, run["heartbeat_timeout_seconds"] / 4))
    beat.start()
    try:
        client.progress(run_id, f"Reading the task: {run['title']}")
        say("progress", run_id=run_id, line=1)
        time.sleep(work_seconds)  # a real runner clones the repository and runs its agent here
        client.progress(run_id, f"Working on {run['repository'] or 'the answer'}")
        say("progress", run_id=run_id, line=2)

        texts = [f["text"] for f in run["followups"]]
        page = client.followups(run_id, after=run["followups_cursor"])
        texts += [f["text"] for f in page["followups"]]
        say("followups", run_id=run_id, count=len(texts), cursor=page["cursor"])
    finally:
        beat.stop()
    if beat.lost is not None:
        raise beat.lost

    summary = f"The example runner looked at \"{run['title']}\" and did nothing (it is an example)."
    if texts:
        summary += " Follow-ups it read: " + "; ".join(texts)
    finished = client.finish(run_id, status="completed", summary=summary, pr_url=pr_url)
    say("finished", run_id=run_id, status=finished["status"], pr_url=finished["pr_url"])
    return finished


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base-url", default=os.environ.get("TASK_RUNNER_BASE_URL", "http://127.0.0.1:8000"))
    parser.add_argument("--project", type=int, default=os.environ.get("TASK_RUNNER_PROJECT_ID"),
                        help="project id (env TASK_RUNNER_PROJECT_ID)")
    parser.add_argument("--api-key", default=os.environ.get("TASK_RUNNER_API_KEY"),
                        help="personal API key with scope task:write (env TASK_RUNNER_API_KEY)")
    parser.add_argument("--runner", default=f"example-{socket.gethostname()}-{os.getpid()}", help="this runner's name")
    parser.add_argument("--pr-url", default="", help="report this pull-request URL with the result")
    parser.add_argument("--wait", type=float, default=0, help="poll this many seconds for a queued run (0: ask once)")
    parser.add_argument("--work-seconds", type=float, default=0, help="pretend to work this long between the progress lines")
    args = parser.parse_args(argv)
    if args.project is None or not args.api_key:
        parser.error("--project and --api-key (or TASK_RUNNER_PROJECT_ID and TASK_RUNNER_API_KEY) are required")

    client = Client(args.base_url, int(args.project), args.api_key, args.runner)
    deadline = time.monotonic() + args.wait
    try:
        while (run := client.claim()) is None:
            if time.monotonic() >= deadline:
                say("idle", detail="no queued run")
                return 0
            time.sleep(1)
        work_one_run(client, run, args.pr_url, args.work_seconds)
    except RunnerError as exc:
        print(f"example_runner: the server refused: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
