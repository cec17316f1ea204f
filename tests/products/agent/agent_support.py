"""Shared pieces of the agent tests: a real task run (through the tasks facade) to answer for."""
from __future__ import annotations

import pytest

from products.tasks.facade import RunSnapshot, create_task, get_run

DESCRIPTION = (
    "fix the flaky login test in acme/web\n\n"
    "Thread context:\n"
    "alice: the login test fails one run in ten on CI\n"
    "bob: it started after the session-cookie change"
)


@pytest.fixture
def task_run(accounts) -> RunSnapshot:
    """A queued run of a new task in a new project, as the task-run workflow would read it."""
    project = accounts.project()
    created = create_task(
        project=project,
        title="fix the flaky login test",
        description=DESCRIPTION,
        repository="acme/web",
        origin_product="slack_app",
        idempotency_key=None,
    )
    return get_run(created.run.pk)
