"""The inbox relay against a real Temporal that goes away, and a relay that dies mid-way.

Invariants:
* Temporal stopped for longer than Slack would keep retrying: every mention is still
  acknowledged at once, nothing is lost, and when the server is back the worker and the
  relay (`manage.py run_temporal_worker`, never restarted) carry on by themselves and make
  one task per mention, started oldest first.
* A relay killed after it started a workflow but before it marked the row: the next relay
  takes the row again, and the workflow id policies make that start a no-op: one
  workflow, one task, one "On it".
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from django.db import connection
from django.test import Client
from temporalio.client import Client as TemporalClient

from products.slack_app.inbox_models import MentionInbox
from products.slack_app.models import Integration
from products.tasks.models import Task
from temporal.client import run_sync
from temporal.slack_mention.constants import mention_workflow_id
from tests.conftest import VENV_BIN, free_port
from tests.products.slack_app.conftest import BOT_TOKEN, mention_envelope, post_event, relay_pending
from tests.temporal.test_run_temporal_worker import WorkerProcess, worker_env

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


class DevServer:
    """`temporal server start-dev` on a SQLite file, so it can be stopped and started again with its state."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.db_file = directory / "temporal.db"
        self.log = directory / "temporal.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [str(VENV_BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(self.port),
             "--db-filename", str(self.db_file), "--log-level", "error"],
            stdout=subprocess.DEVNULL, stderr=open(self.log, "ab"), start_new_session=True,
        )
        deadline = time.monotonic() + 60
        while True:
            assert self.proc.poll() is None, self.log.read_text()[-2000:]
            try:
                run_sync(self._ready(), timeout=10)
                return
            except Exception:
                assert time.monotonic() < deadline, "the dev server did not come up"
                time.sleep(0.3)

    async def _ready(self) -> None:
        client = await asyncio.wait_for(TemporalClient.connect(self.address), 3)
        await client.count_workflows()  # the namespace answers, not only the port

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        with socket.socket() as sock:  # nothing answers there any more
            assert sock.connect_ex(("127.0.0.1", self.port)) != 0


@pytest.fixture
def dev_server(tmp_path):
    server = DevServer(tmp_path)
    server.start()
    yield server
    server.stop()


def make_integration(accounts) -> Integration:
    integration = Integration(project=accounts.project(), integration_id=f"T{uuid.uuid4().hex[:8].upper()}",
                              config={"repositories": ["acme/web"], "default_repository": None, "alerts_channel": None})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    return integration


def wait_until(condition, timeout: float, what: str, worker: WorkerProcess | None = None):
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        if time.monotonic() > deadline:
            output = "".join(worker.output)[-4000:] if worker else ""
            raise AssertionError(f"{what} did not happen within {timeout}s\n{output}")
        time.sleep(0.2)
    return value


def on_it_posts(slack_api, thread_ts: str) -> list:
    return [c for c in slack_api.calls_to("chat.postMessage")
            if c.args.get("text", "").startswith("On it") and c.args.get("thread_ts") == thread_ts]


def test_temporal_down_longer_than_slacks_retries_loses_nothing_and_the_worker_carries_on_by_itself(
    accounts, slack_api, settings, dev_server
):
    settings.TEMPORAL_ADDRESS = dev_server.address
    task_queue = f"relay-restart-{uuid.uuid4()}"
    worker = WorkerProcess(worker_env(
        settings,
        TEMPORAL_TASK_QUEUE=task_queue,
        LOG_LEVEL="INFO",
        # Short waits so the outage spans many relay retries in seconds; one start at a time, so "oldest first"
        # is also the order the workflows start in.
        SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS="0.2",
        SLACK_INBOX_RELAY_BACKOFF_MAX_SECONDS="1",
        SLACK_INBOX_RELAY_POLL_SECONDS="0.5",
        SLACK_INBOX_RELAY_CONCURRENCY="1",
    ))
    integration = make_integration(accounts)
    team = integration.integration_id
    try:
        worker.wait_for_line("Slack mention inbox relay running", timeout=60)

        # Healthy: acknowledged, relayed, worked on.
        first = mention_envelope(team_id=team, ts="1700000100.000100")
        assert post_event(Client(), first).json()["outcome"] == "started"
        wait_until(lambda: on_it_posts(slack_api, "1700000100.000100"), 60, "the first task", worker)

        # Temporal goes away. Slack's mentions (and its redeliveries) are all acknowledged at once.
        dev_server.stop()
        during = [mention_envelope(team_id=team, ts=f"1700000{200 + n}.000100") for n in range(5)]
        for envelope in during:
            started = time.monotonic()
            response = post_event(Client(), envelope)
            assert (response.status_code, response.json()["outcome"]) == (200, "started")
            assert time.monotonic() - started < 1.0
        for retry in (1, 2, 3):  # Slack's whole retry schedule, compressed: nothing new is written
            again = post_event(Client(), during[0], headers={"HTTP_X_SLACK_RETRY_NUM": str(retry)})
            assert (again.status_code, again.json()["outcome"]) == (200, "duplicate")
        outage_until = time.monotonic() + 8
        while time.monotonic() < outage_until:
            time.sleep(0.5)
        output = "".join(worker.output)
        assert output.count("Temporal unavailable") >= 2, output[-3000:]  # the relay kept trying, and kept waiting
        assert worker.proc.poll() is None  # neither the worker nor the relay gave up
        rows = MentionInbox.objects.filter(slack_team_id=team).exclude(event_id=first["event_id"])
        assert rows.count() == 5 and set(rows.values_list("state", "attempts")) == {("pending", 0)}

        # Temporal is back (same port, same database): no restart of the worker process.
        dev_server.start()
        wait_until(lambda: Task.objects.filter(project=integration.project).count() == 6, 120, "all six tasks", worker)
        # "On it" goes out after the task's transaction commits: wait for every thread's, then count them.
        wait_until(lambda: all(on_it_posts(slack_api, e["event"]["ts"]) for e in during), 60, "every 'On it'", worker)
        time.sleep(1)  # a second post, if there were one, would follow the first within this
        for envelope in during:
            assert len(on_it_posts(slack_api, envelope["event"]["ts"])) == 1
        assert Task.objects.filter(project=integration.project).count() == 6
        assert set(rows.values_list("state", "result")) == {("done", "started")}

        # Oldest first: the workflows started in the order Slack delivered the mentions.
        async def start_times() -> list:
            client = await TemporalClient.connect(dev_server.address)
            return [(await client.get_workflow_handle(mention_workflow_id(team, e["event_id"])).describe()).start_time
                    for e in during]

        times = run_sync(start_times(), timeout=30)
        assert times == sorted(times)
    finally:
        worker.stop()


DOOMED_RELAY = """
import os, signal
import django
django.setup()
from products.slack_app import inbox
from products.slack_app.relay import MentionRelay

def die(rows, result):  # the workflows are started; the process dies before marking the rows
    print("started; dying before marking", flush=True)
    os.kill(os.getpid(), signal.SIGKILL)

inbox.settle = die
MentionRelay(name="doomed").relay_once()
"""


@pytest.fixture
def in_process_worker(temporal, settings):
    """The service's real worker on this test's own task queue (the session's dev server)."""
    from temporal.worker import build_worker

    settings.TEMPORAL_TASK_QUEUE = task_queue = f"test-relay-{uuid.uuid4()}"

    async def start():
        worker = build_worker(temporal.client, task_queue)
        return worker, asyncio.get_running_loop().create_task(worker.run())

    worker, task = run_sync(start())
    yield worker

    async def stop() -> None:
        await worker.shutdown()
        await task

    run_sync(stop(), timeout=60)


def test_a_relay_killed_between_the_start_and_marking_the_row_makes_no_second_workflow(
    accounts, slack_api, settings, temporal, in_process_worker
):
    integration = make_integration(accounts)
    envelope = mention_envelope(team_id=integration.integration_id, ts="1700000300.000100")
    workflow_id = mention_workflow_id(integration.integration_id, envelope["event_id"])
    assert post_event(Client(), envelope).json()["outcome"] == "started"

    env = worker_env(settings, TEMPORAL_TASK_QUEUE=settings.TEMPORAL_TASK_QUEUE, SLACK_INBOX_RELAY_LEASE_SECONDS="1",
                     PYTHONPATH=str(ROOT))
    doomed = subprocess.run([sys.executable, "-c", DOOMED_RELAY], env=env, cwd=ROOT, capture_output=True, timeout=60)
    assert doomed.returncode == -signal.SIGKILL, doomed.stderr.decode()[-3000:]
    assert b"started; dying before marking" in doomed.stdout

    row = MentionInbox.objects.get(workflow_id=workflow_id)
    assert row.state == "pending" and row.claimed_until is not None  # started, never marked, still leased
    assert relay_pending().claimed == 0  # nobody takes a leased row...
    time.sleep(1.2)
    again = relay_pending()  # ...until its lease has run out
    assert (again.claimed, again.started, again.already_started) == (1, 0, 1)
    row.refresh_from_db()
    assert (row.state, row.result) == ("done", "already_started")

    async def runs() -> list[str]:
        return [w.run_id async for w in temporal.client.list_workflows(f'WorkflowId="{workflow_id}"')]

    wait_until(lambda: Task.objects.filter(project=integration.project).count() == 1, 60, "the task")
    wait_until(lambda: on_it_posts(slack_api, "1700000300.000100"), 30, 'the "On it"')
    time.sleep(1)  # visibility lags a little
    assert len(run_sync(runs())) == 1  # one workflow execution ever, for this event
    assert Task.objects.filter(project=integration.project).count() == 1
    assert len(on_it_posts(slack_api, "1700000300.000100")) == 1
    connection.close()
