"""Slack webhook: our `/slack/events` (verify, quota check, record in the inbox) vs a slack_bolt peer, end to end.

Both apps are served by gunicorn with the same settings (2 workers x 8 threads by default)
and receive the same kind of signed `app_mention` events (distinct event ids) at the same
fixed concurrency, on the same machine, in the same run:

* ours alone (first, `--undrained-requests`): our app before the worker is started, so
  nothing drains: the webhook's own figure, for reference. Drained before anything else runs.
* bolt: `bench/bolt_peer`, slack_bolt's `App` + Django adapter that verifies the signature
  and only `ack()`s: the peer a team would otherwise pick. Measured while our worker idles.
* ours: `posthog_app.wsgi`, as in production: PostgreSQL (a bench database, migrated and
  seeded with one Slack integration), Redis (db 12), a Temporal dev server on its SQLite
  file (started here unless TEMPORAL_ADDRESS is given), and, as make run starts them,
  `manage.py run_temporal_worker --no-relay` and `manage.py run_inbox_relay`, the dev server and
  the worker in the background CPU class, the relay in the normal one (`--relay in-worker`,
  `--background-cpu`, `--relay-cpu` for the other layouts), draining the mentions while they arrive: each one
  becomes a workflow, a task and an "On it" in a loopback Slack. The project's runs use the
  external-runner backend, so no model is called after the task exists, and the bench
  terminates the task-run workflows as they appear (with no runner they would poll every
  3 s for ever and load Temporal more with every phase): the figures are about mentions
  becoming tasks, like the issue's baseline.

The measured bursts are interleaved, `--rounds` (3) of them per app: Bolt's burst, ours, then
the wait until ours has drained (so every Bolt burst meets an idle machine and every one of ours
a drain that starts with it). This machine's speed drifts by tens of percent within minutes (the
same code measured 0.37x-0.62x in single bursts of each app run minutes apart); interleaving puts
both apps in the same minutes, and pooling the rounds (percentiles over every ack, throughput
over the summed burst time) gives 1,800 acks per figure instead of 600. Each round is also listed.

Reports, for both: ack latency p50/p99 and throughput at the fixed concurrency (closed loop: a
burst as fast as each app answers), and the ratios ours/bolt; for ours: the time from the
acknowledgment to the workflow's start (Temporal's start time, p50/p99) for that burst and for
a paced phase (open loop, `--paced-rate` mentions/s, below what Temporal can start: a healthy
system's figure; a burst faster than Temporal starts workflows waits in the inbox, which is
its job), and the mentions turned into tasks per second (first ack to last task of each burst). Writes
bench/results/slack_webhook.{json,txt}. Targets (issue 10): ack p99 < 50 ms at concurrency
16, >= 0.5x the peer's throughput, ack-to-start p99 < 1 s, every mention one task.

    .venv/bin/python bench/slack_webhook.py [--requests 600] [--rounds 3] [--concurrency 16] [--workers 2] [--threads 8]
"""
from __future__ import annotations

import argparse
import hashlib
import hmac
import http.client
import itertools
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VENV_BIN = Path(sys.executable).parent
RESULTS = ROOT / "bench" / "results"
sys.path.insert(0, str(ROOT))

from bench.support import Figures, compile_bytecode, ensure_postgres_database, free_port, stop, wait_for_port  # noqa: E402

SIGNING_SECRET = "bench-signing-secret"
TEAM_ID = "TBENCH"
BOT_TOKEN = "xoxb-bench-token"
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/posthog_bench_slack")
REDIS_URL = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/12")
TASK_QUEUE = f"bench-slack-webhook-{uuid.uuid4().hex[:8]}"  # the bench's worker polls it

os.environ.update(
    DJANGO_SETTINGS_MODULE="posthog_app.settings",
    DATABASE_URL=DATABASE_URL,
    REDIS_URL=REDIS_URL,
    SLACK_SIGNING_SECRET=SIGNING_SECRET,
    DEBUG="0",
    SECRET_KEY=os.environ.get("SECRET_KEY") or secrets.token_urlsafe(50),  # DEBUG off wants a real key
    LOG_LEVEL="WARNING",
    ALLOWED_HOSTS="127.0.0.1,localhost",
    TEMPORAL_TASK_QUEUE=TASK_QUEUE,
)


# --- Services ---------------------------------------------------------------------------------


def cpu_class(background: bool):
    """A preexec_fn putting the child in the background CPU class, as make run's Procfile does
    (scripts/background_cpu.py), or None for the normal class."""
    if not background:
        return None
    from scripts.background_cpu import enter_background

    return enter_background


def start_temporal(tmpdir: str, db_file: bool, background: bool = False, journal: str = "wal") -> tuple[subprocess.Popen, str]:
    """Start `temporal server start-dev` (on a SQLite file, with fsyncs, unless db_file is False: in memory),
    its SQLite journal in `journal` mode (wal, as make run starts it; delete is SQLite's default)."""
    port = free_port()
    command = [str(VENV_BIN / "temporal"), "server", "start-dev", "--headless", "--ip", "127.0.0.1", "--port", str(port),
               "--log-level", "error"]
    if db_file:
        command += ["--db-filename", os.path.join(tmpdir, "temporal.db"), "--sqlite-pragma", f"journal_mode={journal}"]
    proc = subprocess.Popen(
        command,
        stdout=subprocess.DEVNULL, stderr=open(os.path.join(tmpdir, "temporal.log"), "wb"), start_new_session=True,
        preexec_fn=cpu_class(background),
    )
    address = f"127.0.0.1:{port}"
    wait_for_port(port, 60, proc)
    from temporal.client import check_temporal_health

    os.environ["TEMPORAL_ADDRESS"] = address
    from django.conf import settings

    settings.TEMPORAL_ADDRESS = address
    deadline = time.monotonic() + 60
    while True:
        try:
            check_temporal_health()
            return proc, address
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def serve_slack_stub(conn) -> None:
    """Serve tests/slack_stub.py (in a child process) until told to stop; send its base URL first."""
    sys.path.insert(0, str(ROOT))
    from tests.slack_stub import SlackStub

    stub = SlackStub()
    stub.respond("auth.test", body={"ok": True, "user_id": "UBOT", "bot_id": "BBOT", "team_id": TEAM_ID, "team": "bench"}, times=None)
    conn.send(stub.base_url)
    conn.recv()
    stub.close()


def seed() -> None:
    from django.core.management import call_command

    from posthog_app.redis_client import get_client
    from products.accounts.models import Organization, Project
    from products.slack_app.models import Integration

    call_command("migrate", verbosity=0, interactive=False)
    get_client().flushdb()  # no quota limits: every mention is in quota
    Integration.objects.filter(integration_id=TEAM_ID).delete()
    org = Organization.objects.create(name="Bench org")
    project = Project.objects.create(organization=org, name="Bench project")
    integration = Integration(project=project, integration_id=TEAM_ID, config={"repositories": ["acme/web"]})
    integration.set_bot_token(BOT_TOKEN)
    integration.save()
    try:  # the task's run waits for an external runner: no model is called in this benchmark
        from products.tasks.models import AgentSettings

        AgentSettings.objects.create(project=project, backend="external")
    except ImportError:
        pass


def start_worker(env: dict[str, str], log: str, *, relay_process: bool, background: bool,
                 background_relay: bool) -> list[tuple[subprocess.Popen, str]]:
    """`manage.py run_temporal_worker` on the bench's task queue, and the inbox relay: in the worker
    (`relay_process` False) or as `manage.py run_inbox_relay` next to it, each in the background CPU
    class or not (`background`, `background_relay`), as make run starts them."""
    env = {**env, "LOG_LEVEL": os.environ.get("BENCH_WORKER_LOG_LEVEL", "WARNING")}
    commands = [("temporal worker" + ("" if relay_process else " + inbox relay"),
                 ["run_temporal_worker", *(["--no-relay"] if relay_process else [])], background, "Temporal worker polling")]
    if relay_process:
        commands.append(("inbox relay", ["run_inbox_relay"], background_relay, "inbox relay running"))
    started = []
    for name, command, in_background, ready in commands:
        path = log.replace(".log", f"-{command[0]}.log")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env,
            stdout=open(path, "wb"), stderr=subprocess.STDOUT, start_new_session=True, preexec_fn=cpu_class(in_background),
        )
        started.append((proc, name))
        deadline = time.monotonic() + 60
        while ready.encode() not in Path(path).read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not start:\n{Path(path).read_text()[-3000:]}")
            time.sleep(0.2)
    return started


def start_gunicorn(wsgi: str, port: int, args: argparse.Namespace, env: dict[str, str], log: str) -> subprocess.Popen:
    proc = subprocess.Popen(
        [str(VENV_BIN / "gunicorn"), wsgi, "--bind", f"127.0.0.1:{port}", "--workers", str(args.workers),
         "--worker-class", "gthread", "--threads", str(args.threads), "--keep-alive", "5", "--log-level", "warning"],
        cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=open(log, "wb"), start_new_session=True,
    )
    wait_for_port(port, 30, proc)
    return proc


# --- Load -------------------------------------------------------------------------------------


_message_numbers = itertools.count(1)


def signed_mention(event_id: str) -> tuple[bytes, dict[str, str]]:
    """A signed top-level mention; each gets a message ts of its own (its own thread, so its own task)."""
    ts = str(int(time.time()))
    message_ts = f"{ts}.{next(_message_numbers):06d}"
    body = json.dumps({
        "token": "x", "team_id": TEAM_ID, "api_app_id": "ABENCH", "type": "event_callback", "event_id": event_id,
        "event_time": int(ts), "event": {"type": "app_mention", "user": "UBENCH", "text": "<@UBOT> fix the flaky test in acme/web",
                                         "ts": message_ts, "channel": "CBENCH", "event_ts": message_ts},
    }).encode()
    sig = "v0=" + hmac.new(SIGNING_SECRET.encode(), f"v0:{ts}:".encode() + body, hashlib.sha256).hexdigest()
    return body, {"Content-Type": "application/json", "X-Slack-Signature": sig, "X-Slack-Request-Timestamp": ts}


def fire(port: int, event_ids: list[str], concurrency: int, deadline: float, acks: dict[str, float] | None = None,
         rate: float | None = None, passes: list[Pass] | None = None) -> Figures:
    """Post one signed mention per event id; `acks` (if given) gets each 200's wall-clock answer time, `passes`
    (if given) the pass's raw outcome, to pool with other passes (`summarize`).

    Without `rate`, `concurrency` requests are always in flight (closed loop: as fast as the app
    answers). With `rate`, request i is sent at start + i / rate (open loop, paced)."""
    local = threading.local()
    paced_from = time.monotonic()
    slot = {e: i for i, e in enumerate(event_ids)}
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lock = threading.Lock()

    def one(event_id: str) -> None:
        if time.monotonic() > deadline:
            status = "skipped (time bound)"
            with lock:
                statuses[status] = statuses.get(status, 0) + 1
            return
        if rate:
            delay = paced_from + slot[event_id] / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        body, headers = signed_mention(event_id)
        for attempt in (1, 2):
            conn = getattr(local, "conn", None)
            if conn is None:
                conn = local.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            start = time.perf_counter()
            try:
                conn.request("POST", "/slack/events", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                elapsed = time.perf_counter() - start
                status = str(response.status)
                break
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                local.conn = None
                elapsed, status = time.perf_counter() - start, type(exc).__name__
                if attempt == 2:
                    break
        answered = time.time()
        with lock:
            statuses[status] = statuses.get(status, 0) + 1
            if status == "200":
                latencies.append(elapsed)
                if acks is not None:
                    acks[event_id] = answered

    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(one, event_ids))
    wall = time.perf_counter() - started
    this = Pass(len(event_ids), latencies, statuses, wall)
    if passes is not None:
        passes.append(this)
    return summarize([this], concurrency)


@dataclass
class Pass:
    """One load pass's raw outcome: the 200s' latencies (seconds), every status, the wall time."""

    requests: int
    latencies: list[float]
    statuses: dict[str, int]
    wall_s: float


def summarize(passes: list[Pass], concurrency: int) -> Figures:
    """The figures of one pass, or of several pooled: percentiles over every latency, throughput over the summed wall time."""
    latencies = [x for p in passes for x in p.latencies]
    wall = sum(p.wall_s for p in passes)
    statuses: dict[str, int] = {}
    for p in passes:
        for status, n in p.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    figures = Figures(requests=sum(p.requests for p in passes), concurrency=concurrency, ok=len(latencies),
                      statuses=statuses, wall_s=round(wall, 3))
    if latencies:
        ms = sorted(x * 1000 for x in latencies)
        q = statistics.quantiles(ms, n=100, method="inclusive") if len(ms) > 1 else [ms[0]] * 99
        figures.p50_ms, figures.p90_ms, figures.p99_ms = round(q[49], 2), round(q[89], 2), round(q[98], 2)
        figures.max_ms, figures.mean_ms = round(ms[-1], 2), round(statistics.fmean(ms), 2)
        figures.throughput_rps = round(len(latencies) / wall, 1)
    return figures


def percentile(values: list[float], q: int) -> float:
    return round(statistics.quantiles(sorted(values), n=100, method="inclusive")[q - 1], 1) if len(values) > 1 else round(values[0], 1)


def workflow_start_times() -> dict[str, float]:
    """Workflow id -> Temporal's start time (Unix seconds) of every workflow on the bench queue."""
    from temporal.client import get_client, run_sync

    async def collect() -> dict[str, float]:
        client = await get_client()
        return {wf.id: wf.start_time.timestamp() async for wf in client.list_workflows(
            f'TaskQueue="{TASK_QUEUE}" AND WorkflowType="posthog-code-slack-mention-processing"')}

    return run_sync(collect(), timeout=120)


def wait_for_tasks(workflow_ids: list[str], timeout: float) -> tuple[int, float | None]:
    """Wait until every mention has its task (or the timeout); return how many do and the last one's creation time."""
    from django.db.models import Max

    from products.tasks.models import Task

    deadline = time.monotonic() + timeout
    next_sweep = time.monotonic() + 5
    while True:
        made = Task.objects.filter(idempotency_key__in=workflow_ids)
        n = made.count()
        if n >= len(workflow_ids) or time.monotonic() > deadline:
            last = made.aggregate(last=Max("created_at"))["last"]
            terminate_bench_workflows(TASK_RUN_TYPE, "bench: task runs are not measured")
            return n, last.timestamp() if last else None
        if time.monotonic() >= next_sweep:
            terminate_bench_workflows(TASK_RUN_TYPE, "bench: task runs are not measured")
            next_sweep = time.monotonic() + 5
        time.sleep(0.5)


# The task-run workflow each new task starts (issue 9). With the external-runner backend and no runner it
# would poll every 3 s for ever; the bench terminates them as they appear, so the figures are about
# mentions becoming tasks (as the baseline was), not about runs piling up.
TASK_RUN_TYPE = "posthog-code-task-processing"


def terminate_bench_workflows(workflow_type: str | None = None, reason: str = "bench over") -> None:
    """Terminate the bench queue's running workflows (of `workflow_type`, if given)."""
    import asyncio

    from temporal.client import get_client, run_sync

    async def terminate_all() -> None:
        client = await get_client()
        query = f'TaskQueue="{TASK_QUEUE}" AND ExecutionStatus="Running"'
        if workflow_type:
            query += f' AND WorkflowType="{workflow_type}"'
        ids = [wf.id async for wf in client.list_workflows(query)]
        sem = asyncio.Semaphore(32)

        async def one(wid: str) -> None:
            async with sem:
                try:
                    await client.get_workflow_handle(wid).terminate(reason)
                except Exception:
                    pass

        await asyncio.gather(*(one(w) for w in ids))

    run_sync(terminate_all(), timeout=120)


# --- Main -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3, help="measured bursts per app, interleaved (pooled in the figures)")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn workers (gthread)")
    parser.add_argument("--threads", type=int, default=8, help="threads per gunicorn worker")
    parser.add_argument("--warmup", type=int, default=64)
    parser.add_argument("--max-seconds", type=float, default=240, help="bound on each measured phase")
    parser.add_argument("--undrained-requests", type=int, default=300,
                        help="first, ours alone (worker not started yet): the webhook's own figure (0: skip)")
    parser.add_argument("--paced-rate", type=float, default=20, help="mentions/s of the paced phase (0: none)")
    parser.add_argument("--paced-requests", type=int, default=200)
    parser.add_argument("--drain-seconds", type=float, default=600, help="bound on waiting for every mention's task")
    parser.add_argument("--temporal-in-memory", action="store_true", help="dev server in memory instead of on its SQLite file")
    parser.add_argument("--temporal-journal", choices=("wal", "delete"), default="wal",
                        help="the dev server's SQLite journal mode: wal as make run starts it, or delete (SQLite's default)")
    parser.add_argument("--relay", choices=("process", "in-worker"), default="process",
                        help="the inbox relay as its own process (make run's) or on a thread of the worker")
    parser.add_argument("--background-cpu", choices=("idle", "normal"), default="idle",
                        help="the Temporal dev server's and the worker's CPU class: idle as make run starts them "
                             "(scripts/background_cpu.py), or normal")
    parser.add_argument("--relay-cpu", choices=("idle", "normal"), default="normal",
                        help="the inbox relay's CPU class (normal, as make run starts it)")
    parser.add_argument("--note", default="", help="written with the figures (e.g. what else loaded the machine)")
    parser.add_argument("--keep-logs", default="", help="copy the servers' and the worker's logs to this directory")
    args = parser.parse_args()

    import django

    tmpdir = tempfile.mkdtemp(prefix="bench-slack-webhook-")
    procs: list[tuple[subprocess.Popen, str]] = []
    external_temporal = bool(os.environ.get("TEMPORAL_ADDRESS"))
    stub_pipe = stub = None
    try:
        # Loopback Slack (Bolt's one auth.test; the worker's reactions, names and "On it"s) in a process of its
        # own, so serving the worker does not take the load generator's GIL while ours is measured.
        import multiprocessing

        stub_pipe, child_end = multiprocessing.get_context("spawn").Pipe()
        stub = multiprocessing.get_context("spawn").Process(target=serve_slack_stub, args=(child_end,), daemon=True)
        stub.start()
        os.environ["SLACK_API_BASE_URL"] = stub_pipe.recv()
        ensure_postgres_database(DATABASE_URL)
        django.setup()
        if external_temporal:
            address = os.environ["TEMPORAL_ADDRESS"]
        else:
            temporal_proc, address = start_temporal(tmpdir, not args.temporal_in_memory, args.background_cpu == "idle",
                                                 args.temporal_journal)
            procs.append((temporal_proc, "temporal dev server"))
        compile_bytecode()  # as make run does: the worker's workflow sandbox imports .pyc, not source
        seed()
        env = {**os.environ, "TEMPORAL_ADDRESS": address, "PYTHONPATH": str(ROOT)}
        results: dict[str, Figures] = {}
        undrained_ids: list[str] = []
        if args.undrained_requests:
            # Ours alone: nothing drains yet (no worker, no relay), so the figure is the webhook's own.
            port = free_port()
            proc = start_gunicorn("posthog_app.wsgi:application", port, args, env, os.path.join(tmpdir, "gunicorn-alone.log"))
            procs.append((proc, "gunicorn (ours, alone)"))
            undrained_ids = [f"EvALONE{i:05d}{uuid.uuid4().hex[:8]}" for i in range(args.warmup + args.undrained_requests)]
            fire(port, undrained_ids[: args.warmup], args.concurrency, time.monotonic() + 60)
            results["ours_alone"] = fire(port, undrained_ids[args.warmup :], args.concurrency, time.monotonic() + args.max_seconds)
            stop(proc, "gunicorn (ours, alone)")
            print(f"ours alone: {results['ours_alone']}", file=sys.stderr)
        procs += start_worker(env, os.path.join(tmpdir, "worker.log"), relay_process=args.relay == "process",
                              background=args.background_cpu == "idle", background_relay=args.relay_cpu == "idle")
        if undrained_ids:  # drained before anything else is measured (the Bolt peer included)
            wait_for_tasks([f"posthog-code-mention-{TEAM_ID}:{e}" for e in undrained_ids], args.drain_seconds)

        acks: dict[str, float] = {}
        paced_acks: dict[str, float] = {}
        warm_ids: list[str] = []
        ports: dict[str, int] = {}
        for name, wsgi in (("bolt", "bench.bolt_peer.wsgi:application"), ("ours", "posthog_app.wsgi:application")):
            port = free_port()
            app_env = dict(env)
            if name == "bolt":
                app_env["DJANGO_SETTINGS_MODULE"] = "bench.bolt_peer.settings"
            proc = start_gunicorn(wsgi, port, args, app_env, os.path.join(tmpdir, f"gunicorn-{name}.log"))
            procs.append((proc, f"gunicorn ({name})"))
            warm = [f"EvWARM{name}{i}{uuid.uuid4().hex[:6]}" for i in range(args.warmup)]
            warmed = fire(port, warm, args.concurrency, time.monotonic() + 60)
            if warmed.ok != args.warmup:
                log = Path(tmpdir, f"gunicorn-{name}.log").read_text()[-3000:]
                raise RuntimeError(f"{name}: warm-up failed {warmed.statuses}\n{log}")
            if name == "ours":
                warm_ids = warm + undrained_ids
                wait_for_tasks([f"posthog-code-mention-{TEAM_ID}:{e}" for e in warm], 120)  # the warm-up drained first
                if args.paced_rate and args.paced_requests:
                    # Paced (open loop) below what Temporal can start: the ack-to-start of a healthy system.
                    paced_ids = [f"EvPACED{i:05d}{uuid.uuid4().hex[:8]}" for i in range(args.paced_requests)]
                    results["ours_paced"] = fire(port, paced_ids, 64, time.monotonic() + args.max_seconds, paced_acks,
                                                 rate=args.paced_rate)
                    wait_for_tasks([f"posthog-code-mention-{TEAM_ID}:{e}" for e in paced_ids], args.drain_seconds)
                    print(f"ours paced: {results['ours_paced']}", file=sys.stderr)
            ports[name] = port

        # The measured bursts, interleaved so both apps meet the machine as it is at that moment (its speed
        # drifts by tens of percent within minutes): `--rounds` times, Bolt's burst then ours. After each
        # round every mention of ours becomes its task before the next round, so every Bolt burst meets an
        # idle machine, and every one of ours a worker and relay that start draining with it, as the first did.
        passes: dict[str, list[Pass]] = {"bolt": [], "ours": []}
        round_spans: list[tuple[int, float]] = []  # per round: tasks made, first ack -> last task (s)
        for round_no in range(args.rounds):
            round_acks: dict[str, float] = {}
            for name in ("bolt", "ours"):
                ids = [f"Ev{name.upper()}{round_no}x{i:05d}{uuid.uuid4().hex[:8]}" for i in range(args.requests)]
                figures = fire(ports[name], ids, args.concurrency, time.monotonic() + args.max_seconds,
                               round_acks if name == "ours" else None, passes=passes[name])
                print(f"round {round_no + 1} {name}: {figures}", file=sys.stderr)
            acks.update(round_acks)
            made, last = wait_for_tasks([f"posthog-code-mention-{TEAM_ID}:{e}" for e in round_acks], args.drain_seconds)
            if last and round_acks:
                round_spans.append((made, last - min(round_acks.values())))
        for name in ("bolt", "ours"):
            results[name] = summarize(passes[name], args.concurrency)
        for proc, name in [(p, n) for p, n in procs if n.startswith("gunicorn (")]:
            stop(proc, name)
            procs.remove((proc, name))

        # Ours, end to end: every acknowledged mention -> one workflow -> one task and one "On it".
        measured = [f"posthog-code-mention-{TEAM_ID}:{e}" for e in acks]
        tasks, _ = wait_for_tasks(measured, args.drain_seconds)
        starts = workflow_start_times()

        def to_start(answered: dict[str, float]) -> list[float]:
            return [max(0.0, starts[f"posthog-code-mention-{TEAM_ID}:{e}"] - t) * 1000
                    for e, t in answered.items() if f"posthog-code-mention-{TEAM_ID}:{e}" in starts]

        ack_to_start, paced_to_start = to_start(acks), to_start(paced_acks)
        from products.slack_app.models import BotMessage

        everything = [f"posthog-code-mention-{TEAM_ID}:{e}" for e in [*acks, *paced_acks, *warm_ids]]
        on_its = list(BotMessage.objects.filter(step="on_it", key__in=everything).exclude(ts=""))
        from products.slack_app.inbox import backlog

        left = backlog()
        if external_temporal:
            terminate_bench_workflows()
        ours, bolt = results["ours"], results["bolt"]

        def ratio(a: float, b: float) -> float | None:
            return round(a / b, 2) if b else None

        e2e = {
            "mentions_acknowledged": len(acks),
            "workflows_started": len(ack_to_start),
            "tasks_created": tasks,
            "on_it_posts_incl_warmup": len(on_its),
            "expected_on_it_incl_warmup": len(acks) + len(warm_ids) + len(paced_acks),
            "ack_to_start_p50_ms": percentile(ack_to_start, 50) if ack_to_start else None,
            "ack_to_start_p99_ms": percentile(ack_to_start, 99) if ack_to_start else None,
            "ack_to_start_max_ms": round(max(ack_to_start), 1) if ack_to_start else None,
            # Per round: its mentions' tasks over the time from its first ack to its last task; pooled over the rounds.
            "tasks_per_second": round(sum(n for n, _ in round_spans) / sum(t for _, t in round_spans), 2)
            if round_spans and sum(t for _, t in round_spans) > 0 else None,
            "paced": {
                "rate_per_s": args.paced_rate, "requests": len(paced_acks),
                "ack": asdict(results["ours_paced"]) if "ours_paced" in results else None,
                "ack_to_start_p50_ms": percentile(paced_to_start, 50) if paced_to_start else None,
                "ack_to_start_p99_ms": percentile(paced_to_start, 99) if paced_to_start else None,
                "ack_to_start_max_ms": round(max(paced_to_start), 1) if paced_to_start else None,
            },
            "inbox_left_pending": left.pending,
            "inbox_failed": left.failed,
        }
        targets = {
            "ack_p99_under_50ms": ours.p99_ms < 50,
            "throughput_at_least_half_of_bolt": bool(bolt.throughput_rps) and ours.throughput_rps >= 0.5 * bolt.throughput_rps,
            "ack_to_start_p99_under_1s_burst": e2e["ack_to_start_p99_ms"] is not None and e2e["ack_to_start_p99_ms"] < 1000,
            "ack_to_start_p99_under_1s_paced": e2e["paced"]["ack_to_start_p99_ms"] is not None
            and e2e["paced"]["ack_to_start_p99_ms"] < 1000,
            "every_mention_one_task": tasks == len(acks) == ours.ok == args.requests * args.rounds,
        }
        report = {
            "benchmark": "slack_webhook",
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "config": {"requests": args.requests, "rounds": args.rounds, "concurrency": args.concurrency, "gunicorn_workers": args.workers,
                       "gunicorn_threads": args.threads, "warmup": args.warmup, "cpus": os.cpu_count(),
                       "temporal": "external " + address if external_temporal else
                       f"dev server started by the bench ({'in memory' if args.temporal_in_memory else 'SQLite file'})",
                       "worker": (f"manage.py run_temporal_worker --no-relay (CPU class {args.background_cpu}) + "
                                  f"manage.py run_inbox_relay (CPU class {args.relay_cpu})"
                                  if args.relay == "process" else
                                  f"manage.py run_temporal_worker (worker + inbox relay, CPU class {args.background_cpu})")
                       + f", draining during our phase; Temporal dev server CPU class {args.background_cpu}",
                       "note": args.note},
            "ours": asdict(ours),
            "bolt": asdict(bolt),
            "rounds": [{name: asdict(summarize([passes[name][r]], args.concurrency)) for name in ("bolt", "ours")}
                       for r in range(len(passes["ours"]))],
            "ours_alone_nothing_draining": asdict(results["ours_alone"]) if "ours_alone" in results else None,
            "ratios_ours_over_bolt": {"p50": ratio(ours.p50_ms, bolt.p50_ms), "p99": ratio(ours.p99_ms, bolt.p99_ms),
                                      "throughput": ratio(ours.throughput_rps, bolt.throughput_rps)},
            "end_to_end": e2e,
            "targets_met": targets,
        }
        lines = [
            f"Slack webhook ack: {args.rounds} rounds of {args.requests} signed app_mention events per app (interleaved: "
            f"bolt, ours, drain; figures pooled over the rounds), concurrency {args.concurrency}, "
            f"gunicorn {args.workers} workers x {args.threads} threads (gthread), {os.cpu_count()} CPUs",
            f"Temporal: {report['config']['temporal']}; our worker + relay draining while ours is measured",
            *( [f"Note: {args.note}"] if args.note else [] ),
            "",
            f"{'':24}{'ours':>12}{'bolt':>12}{'ours/bolt':>12}",
        ]
        for label, key in (("ack p50 (ms)", "p50_ms"), ("ack p90 (ms)", "p90_ms"), ("ack p99 (ms)", "p99_ms"),
                           ("ack max (ms)", "max_ms"), ("throughput (req/s)", "throughput_rps")):
            a, b = getattr(ours, key), getattr(bolt, key)
            lines.append(f"{label:24}{a:>12}{b:>12}{ratio(a, b) or '-':>12}")
        for r, both in enumerate(report["rounds"], 1):
            b, o = both["bolt"], both["ours"]
            lines.append(f"{f'  round {r} (req/s, p99)':24}{o['throughput_rps']:>7} {o['p99_ms']:>4.0f}{b['throughput_rps']:>7} {b['p99_ms']:>4.0f}"
                         f"{ratio(o['throughput_rps'], b['throughput_rps']) or '-':>12}")
        lines += [
            f"{'200 responses':24}{ours.ok:>12}{bolt.ok:>12}",
            *([f"ours alone (nothing draining, {results['ours_alone'].ok} requests): ack p50 {results['ours_alone'].p50_ms} ms, "
               f"p99 {results['ours_alone'].p99_ms} ms, {results['ours_alone'].throughput_rps} req/s "
               f"({ratio(results['ours_alone'].throughput_rps, bolt.throughput_rps)}x bolt)"] if "ours_alone" in results else []),
            "",
            f"ours end to end: {len(acks)} acknowledged -> {e2e['workflows_started']} workflows -> {tasks} tasks; "
            f"{len(on_its)} 'On it' (expected {e2e['expected_on_it_incl_warmup']} incl. warm-up)",
            f"ack -> workflow start (the bursts above): p50 {e2e['ack_to_start_p50_ms']} ms, "
            f"p99 {e2e['ack_to_start_p99_ms']} ms, max {e2e['ack_to_start_max_ms']} ms",
            *([f"paced {args.paced_rate:g}/s x {len(paced_acks)}: ack p50 {results['ours_paced'].p50_ms} ms, "
               f"p99 {results['ours_paced'].p99_ms} ms; ack -> workflow start p50 {e2e['paced']['ack_to_start_p50_ms']} ms, "
               f"p99 {e2e['paced']['ack_to_start_p99_ms']} ms, max {e2e['paced']['ack_to_start_max_ms']} ms"]
              if "ours_paced" in results else []),
            f"mentions turned into tasks: {e2e['tasks_per_second']} /s (first ack to last task)",
            f"inbox after the run: {left.pending} pending, {left.failed} failed",
            "",
            "targets: " + ", ".join(f"{k} {'met' if v else 'NOT met'}" for k, v in targets.items()),
        ]
        text = "\n".join(lines)
        print(text)
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / "slack_webhook.json").write_text(json.dumps(report, indent=2) + "\n")
        (RESULTS / "slack_webhook.txt").write_text(text + "\n")
        return 0
    finally:
        for proc, name in reversed(procs):
            stop(proc, name)
        try:
            stub_pipe.send("stop")
            stub.join(10)
        except Exception:
            pass
        if args.keep_logs:
            shutil.copytree(tmpdir, args.keep_logs, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.db*"))
        shutil.rmtree(tmpdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
