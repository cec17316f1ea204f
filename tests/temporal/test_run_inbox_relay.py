"""`python manage.py run_inbox_relay` next to `run_temporal_worker --no-relay`, as `make run` starts them.

Invariants: a worker started with `--no-relay` never starts a recorded mention's workflow
(the row stays pending); the relay process does, so the mention becomes one task and one
"On it"; SIGTERM stops the relay cleanly (exit 0) after the pass under way.
"""
from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid

import pytest
from django.test import Client

from products.slack_app.inbox_models import MentionInbox
from products.tasks.models import Task
from temporal.slack_mention.constants import mention_workflow_id
from tests.products.slack_app.conftest import mention_envelope, post_event
from tests.temporal.test_relay import make_integration, on_it_posts, wait_until
from tests.temporal.test_run_temporal_worker import ROOT, WorkerProcess, worker_env

pytestmark = pytest.mark.django_db(transaction=True)


class RelayProcess(WorkerProcess):
    """`manage.py run_inbox_relay`, its output read line by line (as WorkerProcess does for the worker)."""

    def __init__(self, env: dict[str, str]) -> None:  # noqa: D107 - same reader as WorkerProcess
        import queue
        import threading

        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_inbox_relay"], cwd=ROOT, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        self.lines = queue.Queue()
        self.output = []
        threading.Thread(target=self._read, daemon=True).start()


def test_the_relay_process_starts_what_a_no_relay_worker_leaves_and_stops_on_sigterm(temporal, slack_api, accounts, settings):
    env = worker_env(settings, TEMPORAL_TASK_QUEUE=f"relay-cmd-{uuid.uuid4()}", LOG_LEVEL="INFO",
                     SLACK_INBOX_RELAY_POLL_SECONDS="0.5")
    integration = make_integration(accounts)
    team = integration.integration_id
    worker = WorkerProcess(env, "--no-relay")
    relay = None
    try:
        worker.wait_for_line("Temporal worker polling", timeout=60)
        assert "relay running" not in "".join(worker.output)
        envelope = mention_envelope(team_id=team, ts="1700000300.000100")
        assert post_event(Client(), envelope).json()["outcome"] == "started"
        time.sleep(3)  # six of the relay's polls: a worker without its relay starts nothing
        row = MentionInbox.objects.get(slack_team_id=team, event_id=envelope["event_id"])
        assert (row.state, row.attempts) == ("pending", 0)
        assert not on_it_posts(slack_api, "1700000300.000100")

        relay = RelayProcess(env)
        relay.wait_for_line("inbox relay running", timeout=60)
        wait_until(lambda: on_it_posts(slack_api, "1700000300.000100"), 60, "the task's 'On it'", relay)
        row.refresh_from_db()
        assert (row.state, row.result) == ("done", "started")
        assert Task.objects.filter(idempotency_key=mention_workflow_id(team, envelope["event_id"])).count() == 1
        assert len(on_it_posts(slack_api, "1700000300.000100")) == 1

        relay.proc.send_signal(signal.SIGTERM)
        assert relay.proc.wait(timeout=20) == 0
        relay.wait_for_line("Slack mention inbox relay stopped", timeout=5)
    finally:
        if relay is not None:
            relay.stop()
        worker.stop()
