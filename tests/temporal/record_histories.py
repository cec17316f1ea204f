"""Regenerate the committed workflow histories the versioning test replays.

    python tests/temporal/record_histories.py

(with the same DATABASE_URL / TEST_REDIS_URL you run the tests with). It runs, on the
test session's real Temporal dev server, PostgreSQL, Redis and Slack stand-in, the same
mention with each version of the workflow: as it was before the billing gate
(`old_workflows.SlackMentionWorkflowBeforeBillingGate`), with the gate and one activity
per step (`old_workflows.SlackMentionWorkflowBeforeOneStep`) and today's
`SlackMentionWorkflow` (the one step), and writes each execution's history as JSON. The scenario is
the richest path: two repositories, no default, the picker, a `repo_selected` signal,
the task created.

Only re-record an older version's history if its code in old_workflows is what it
replays; a history recorded by a version that is actually deployed is the real proof
(`RECORD_ONLY=mention_one_step` records just that one).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

HISTORIES = Path(__file__).parent / "histories"
TEAM = "TRECORDED"
RECORDINGS = {
    # file stem: (event id, workflow class name in old_workflows or None for today's)
    "mention_before_billing_gate": ("EvBEFOREGATE", "SlackMentionWorkflowBeforeBillingGate"),
    "mention_with_billing_gate": ("EvWITHGATE", "SlackMentionWorkflowBeforeOneStep"),
    "mention_one_step": ("EvONESTEP", None),
}


def recorded_workflow_id(stem: str) -> str:
    from temporal.slack_mention.constants import mention_workflow_id

    return mention_workflow_id(TEAM, RECORDINGS[stem][0])


@pytest.mark.skipif(not os.environ.get("RECORD_HISTORIES"), reason="run tests/temporal/record_histories.py to record")
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("stem", sorted(RECORDINGS))
def test_record_history(stem, temporal, slack_api, accounts):
    from temporal.client import run_sync
    from temporal.slack_mention.constants import SIGNAL_REPO_SELECTED
    from temporal.slack_mention.types import OUTCOME_TASK_CREATED
    from temporal.slack_mention.workflows import SlackMentionWorkflow
    from tests.temporal import old_workflows
    from tests.temporal.slack_mention_helpers import make_integration, mention_event, mention_input, run_mention, wait_until

    only = os.environ.get("RECORD_ONLY")
    if only and stem not in only.split(","):
        pytest.skip(f"RECORD_ONLY={only}")
    event_id, class_name = RECORDINGS[stem]
    workflow_class = getattr(old_workflows, class_name) if class_name else SlackMentionWorkflow
    integration = make_integration(accounts, repositories=["acme/web", "acme/api"])
    inp = mention_input(integration, mention_event("the login page 500s"), event_id=event_id)
    inp.slack_team_id = TEAM

    async def answer(handle):
        await wait_until(lambda: [c for c in slack_api.calls_to("chat.postMessage") if c.args.get("blocks")])
        await handle.signal(SIGNAL_REPO_SELECTED, "acme/api")

    async def record():
        result, handle = await run_mention(temporal.client, inp, workflow_class=workflow_class, while_running=answer)
        return result, await handle.fetch_history()

    result, history = run_sync(record(), timeout=60)
    assert result.outcome == OUTCOME_TASK_CREATED and result.repository == "acme/api", result
    HISTORIES.mkdir(exist_ok=True)
    (HISTORIES / f"{stem}.json").write_text(history.to_json() + "\n")


if __name__ == "__main__":
    os.environ["RECORD_HISTORIES"] = "1"
    root = Path(__file__).resolve().parents[2]
    os.chdir(root)
    sys.exit(pytest.main(["-p", "no:cacheprovider", "-q", str(Path(__file__).relative_to(root))]))
