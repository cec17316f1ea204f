"""`python manage.py run_temporal_worker` as an operator runs it: a real process, real signals.

Invariants: the command serves the configured task queue with the real workflow and
activities; Ctrl-C stops it cleanly (exit 0); a Temporal that never comes up makes it
exit with a clear error after the connect timeout instead of hanging or crashing at once.
"""
from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from uuid import uuid4

import pytest
from django.db import connection

from products.tasks.models import Task
from temporal.client import run_sync
from temporal.slack_mention.constants import WORKFLOW_TYPE, mention_workflow_id
from temporal.slack_mention.types import OUTCOME_TASK_CREATED, SlackMentionWorkflowResult
from tests.conftest import free_port
from tests.temporal.slack_mention_helpers import make_integration, mention_event, mention_input

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_temporal_worker", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for_line(self, text: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                if self.proc.poll() is not None and self.lines.empty():
                    break
                continue
            if text in line:
                return line
        raise AssertionError(f"{text!r} not printed; output:\n{''.join(self.output)}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def worker_env(settings, **overrides: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="posthog_app.settings_test",
        # The test database pytest-django made, so the worker sees the rows this test commits.
        DATABASE_URL=f"postgres://{connection.settings_dict['USER']}@{connection.settings_dict['HOST']}:"
        f"{connection.settings_dict['PORT']}/{connection.settings_dict['NAME']}",
        TEST_REDIS_URL=settings.REDIS_URL,
        TEMPORAL_ADDRESS=settings.TEMPORAL_ADDRESS,
        TEMPORAL_NAMESPACE=settings.TEMPORAL_NAMESPACE,
        SLACK_API_BASE_URL=settings.SLACK_API_BASE_URL,
        SLACK_TOKEN_ENCRYPTION_KEY=str(settings.SLACK_TOKEN_ENCRYPTION_KEY),
    )
    env.update(overrides)
    return env


@pytest.mark.django_db(transaction=True)
def test_worker_command_processes_mentions_and_stops_cleanly_on_ctrl_c(temporal, slack_api, accounts, settings):
    task_queue = f"cmd-{uuid4()}"
    worker = WorkerProcess(worker_env(settings, TEMPORAL_TASK_QUEUE=task_queue))
    try:
        worker.wait_for_line(f"polling task queue '{task_queue}'", timeout=30)
        integration = make_integration(accounts, repositories=["acme/web"])
        inp = mention_input(integration, mention_event("fix the flaky test"))

        async def start_and_wait():
            handle = await temporal.client.start_workflow(
                WORKFLOW_TYPE,
                inp,
                id=mention_workflow_id(inp.slack_team_id, inp.event_id),
                task_queue=task_queue,
                result_type=SlackMentionWorkflowResult,
            )
            return await handle.result()

        result = run_sync(start_and_wait(), timeout=30)
        assert result.outcome == OUTCOME_TASK_CREATED
        assert Task.objects.get(pk=result.task_id).repository == "acme/web"

        worker.proc.send_signal(signal.SIGINT)
        assert worker.proc.wait(timeout=20) == 0
        worker.wait_for_line("Temporal worker stopped", timeout=5)
    finally:
        worker.stop()


def test_worker_command_gives_up_with_a_clear_error_when_temporal_never_answers(settings):
    address = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    worker = WorkerProcess(worker_env(settings, TEMPORAL_ADDRESS=address), "--connect-timeout", "2")
    try:
        code = worker.proc.wait(timeout=30)
        worker.wait_for_line(f"Could not connect to Temporal at {address}", timeout=5)
    finally:
        worker.stop()
    assert code != 0 and time.monotonic() - started >= 2
    assert "retrying" in "".join(worker.output)
