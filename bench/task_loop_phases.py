"""Where a task run's time goes: per-phase latencies of the task loop, from the run's own records.

bench/task_loop.py measures ack -> result in the thread; this module splits that interval
into phases, each the time between two consecutive milestones of one run, taken from
records every part already keeps (wall-clock times, one machine, one clock):

* the load generator: the webhook's 200 ack;
* the inbox row (`slack_app_mentioninbox.received_at`);
* the Temporal histories of the run's mention workflow and task-run workflow: execution
  started, the first workflow task started, each activity scheduled / started / completed,
  each local activity's marker (written when the workflow task that ran it completes);
* the Slack stand-in: each `chat.postMessage` in the thread (the "On it", the status
  message, the result);
* the fake model: when each call arrived and when it was answered.

It prints, for each phase, p50 / p90 / p99 over all runs and its mean over the slowest 5%
of runs (by overhead): the phases that make the tail.
"""
from __future__ import annotations

import asyncio
import statistics
from collections import defaultdict
from typing import Any

def _activity_events(history, prefix: str) -> list[tuple[str, float]]:
    """(label, wall seconds) for the milestones in one workflow history."""
    from temporalio.api.enums.v1 import EventType

    out: list[tuple[str, float]] = []
    scheduled: dict[int, str] = {}
    first_wft = True
    markers = 0
    for event in history.events:
        t = event.event_time.ToMicroseconds() / 1e6
        kind = event.event_type
        if kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_STARTED:
            out.append((f"{prefix} workflow started", t))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_TASK_STARTED and first_wft:
            first_wft = False
            out.append((f"{prefix}: first workflow task started", t))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_SCHEDULED:
            name = event.activity_task_scheduled_event_attributes.activity_type.name
            scheduled[event.event_id] = name
            out.append((f"{prefix}: {name} scheduled", t))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_STARTED:
            name = scheduled.get(event.activity_task_started_event_attributes.scheduled_event_id, "?")
            out.append((f"{prefix}: {name} started", t))
        elif kind == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            name = scheduled.get(event.activity_task_completed_event_attributes.scheduled_event_id, "?")
            out.append((f"{prefix}: {name} completed", t))
        elif kind == EventType.EVENT_TYPE_MARKER_RECORDED:
            markers += 1
            out.append((f"{prefix}: local activity {markers} recorded", t))
        elif kind == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_COMPLETED:
            out.append((f"{prefix} workflow completed", t))
    return out


async def _histories(address: str, namespace: str, ids: list[str]) -> dict[str, Any]:
    from temporalio.client import Client

    client = await Client.connect(address, namespace=namespace)
    sem = asyncio.Semaphore(16)
    out: dict[str, Any] = {}

    async def one(wid: str) -> None:
        async with sem:
            try:
                out[wid] = await client.get_workflow_handle(wid).fetch_history()
            except Exception:  # noqa: BLE001 - a run whose workflow is missing just has fewer milestones
                pass

    await asyncio.gather(*(one(w) for w in ids))
    return out


def collect(outcomes: list[dict], slack_log: list[tuple[str, str, float, str]], model_log: dict[str, tuple[float, float]],
            address: str, namespace: str) -> dict[str, list[tuple[str, float]]]:
    """Per run (thread ts): its milestones, ordered by time. `outcomes` carry `ts`, `marker`, `ack_wall`."""
    from products.slack_app.inbox_models import MentionInbox
    from products.slack_app.models import SlackThreadTaskMapping
    from temporal.task_run.constants import task_run_workflow_id

    runs = {o["ts"]: o for o in outcomes if o.get("status") == "completed"}
    inbox = {r.thread_ts: r for r in MentionInbox.objects.filter(thread_ts__in=list(runs))}
    mappings = {m.thread_ts: m for m in SlackThreadTaskMapping.objects.filter(thread_ts__in=list(runs))}
    ids: dict[str, tuple[str, str]] = {}
    for ts in runs:
        mention = inbox[ts].workflow_id if ts in inbox else None
        run = task_run_workflow_id(mappings[ts].task_run_id) if ts in mappings and mappings[ts].task_run_id else None
        ids[ts] = (mention or "", run or "")
    histories = asyncio.run(_histories(address, namespace, [w for pair in ids.values() for w in pair if w]))

    posts: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for method, thread, t, text in slack_log:
        if method == "chat.postMessage":
            posts[thread].append((t, text))
    timelines: dict[str, list[tuple[str, float]]] = {}
    for ts, outcome in runs.items():
        marks: list[tuple[str, float]] = [("ack", outcome["ack_wall"])]
        if ts in inbox:
            marks.append(("inbox row written", inbox[ts].received_at.timestamp()))
        mention, run = ids[ts]
        if mention in histories:
            marks += _activity_events(histories[mention], "mention")
        if run in histories:
            marks += _activity_events(histories[run], "task run")
        for n, (t, text) in enumerate(sorted(posts.get(ts, [])), 1):
            marks.append((f"slack post {n} ({text[:18]!s})", t))
        if outcome["marker"] in model_log:
            start, end = model_log[outcome["marker"]]
            marks += [("model call arrived", start), ("model answered", end)]
        timelines[ts] = sorted(marks, key=lambda m: m[1])
    return timelines


def _q(values: list[float], p: int) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def report(timelines: dict[str, list[tuple[str, float]]], overhead_ms: dict[str, float], result_wall: dict[str, float]) -> str:
    """The phases (consecutive milestones up to the result in the thread), in the order most runs pass them."""
    phases: dict[str, dict[str, float]] = defaultdict(dict)  # phase -> run -> ms
    order: dict[str, list[int]] = defaultdict(list)
    for ts, marks in timelines.items():
        end = result_wall.get(ts)
        marks = [m for m in marks if end is None or m[1] <= end + 0.0005]
        for i in range(1, len(marks)):
            name = f"{marks[i - 1][0]} -> {marks[i][0]}"
            phases[name][ts] = phases[name].get(ts, 0.0) + (marks[i][1] - marks[i - 1][1]) * 1000
            order[name].append(i)
    slow = sorted(overhead_ms, key=overhead_ms.get, reverse=True)[: max(1, len(overhead_ms) // 20)]
    lines = [f"{'phase (consecutive milestones of a run)':92}{'runs':>6}{'p50':>8}{'p90':>8}{'p99':>8}{'slow5%':>8}"]
    for name in sorted(phases, key=lambda n: (statistics.median(order[n]), -len(phases[n]))):
        values = sorted(phases[name].values())
        if len(values) < len(timelines) // 20:
            continue  # a rare ordering: noise
        slow_mean = statistics.fmean(phases[name].get(ts, 0.0) for ts in slow)
        lines.append(f"{name[:92]:92}{len(values):>6}{_q(values, 50):>8.0f}{_q(values, 90):>8.0f}{_q(values, 99):>8.0f}{slow_mean:>8.0f}")
    return "\n".join(lines)
