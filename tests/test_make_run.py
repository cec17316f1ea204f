"""`make run` (scripts/run.sh + scripts/supervise.py): Ctrl-C stops every process it started and exits 0.

With honcho, `make run | tee run.log` then Ctrl-C left web, worker, Celery and sometimes
Temporal running: honcho's SIGINT handler died printing to the pipe tee had just left,
before it signalled its children. These tests start the real script (Temporal dev
server, web, Temporal worker, Celery; the Redis that already answers on 6379 is reused) on
free ports with a temporary DEVDATA_DIR, press Ctrl-C the way a terminal does (SIGINT to
the foreground process group), and check that nothing is left and the status is 0.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest
from django.conf import settings

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent
# What `make run` starts (the Redis it reuses here is not its own).
EXPECTED = {
    "temporal server start-dev": "temporal",
    "runserver": "web",
    "uvicorn posthog_app.asgi:application": "gateway",
    "run_temporal_worker": "worker",
    "run_inbox_relay": "relay",
    "celery -A posthog_app": "celery",
}


def descendants(root: int) -> dict[int, str]:
    """Every live process below `root`, pid -> command line (children are in sessions of their own, not in our group)."""
    parent_of: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = {}, [root]
    while frontier:
        current = frontier.pop()
        for pid, ppid in parent_of.items():
            if ppid == current and pid not in found:
                try:
                    found[pid] = (Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
                except OSError:
                    continue
                frontier.append(pid)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in {"Z", "X"}  # a zombie has stopped; only its parent's reaping is left


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@pytest.fixture
def run_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "DJANGO_SETTINGS_MODULE", "SECRET_KEY", "DEBUG", "SITE_URL"}}
    env.update(
        WEB_PORT=str(free_port()),
        GATEWAY_PORT=str(free_port()),
        TEMPORAL_ADDRESS=f"127.0.0.1:{free_port()}",
        TEMPORAL_UI_PORT=str(free_port()),
        DEVDATA_DIR=str(tmp_path / "devdata"),
        REDIS_URL=settings.REDIS_URL,  # the tests' Redis database, never the development one
    )
    return env


def start_and_wait_until_up(env: dict[str, str], stdout, timeout: float = 120) -> tuple[subprocess.Popen, dict[int, str]]:
    run = subprocess.Popen(["scripts/run.sh"], cwd=ROOT, env=env, stdout=stdout, stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert run.poll() is None, f"run.sh exited early with {run.returncode}"
        children = descendants(run.pid)
        started = {name for needle, name in EXPECTED.items() if any(needle in cmd for cmd in children.values())}
        if started == set(EXPECTED.values()) and answers(f"http://127.0.0.1:{env['WEB_PORT']}/readyz"):
            time.sleep(3)  # let Celery fork its pool and beat, so they are counted too
            return run, descendants(run.pid)
        time.sleep(0.5)
    leftovers = descendants(run.pid)
    os.killpg(run.pid, signal.SIGKILL)
    for pid in leftovers:  # in sessions of their own: the group kill does not reach them
        if alive(pid):
            os.kill(pid, signal.SIGKILL)
    raise AssertionError("make run did not come up")


def cpu_classes(children: dict[int, str]) -> dict[str, str]:
    """Process name -> "idle" (SCHED_IDLE: scripts/background_cpu.py) or "normal", for each process make run starts."""
    classes: dict[str, set[str]] = {}
    for pid, cmd in children.items():
        for needle, name in EXPECTED.items():
            if needle in cmd:
                try:
                    policy = os.sched_getscheduler(pid)
                except OSError:
                    continue
                classes.setdefault(name, set()).add("idle" if policy == os.SCHED_IDLE else "normal")
    return {name: "/".join(sorted(found)) for name, found in classes.items()}


def press_ctrl_c_and_check_everything_stops(run: subprocess.Popen, children: dict[int, str]) -> None:
    os.killpg(run.pid, signal.SIGINT)  # what the terminal sends to the foreground job
    try:
        status = run.wait(timeout=90)
    finally:
        for pid in children:  # never leave anything behind, even when the test fails
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert status == 0, f"exit status {status} (make would print 'Error {status}')"
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.2)
    left = {pid: cmd for pid, cmd in children.items() if alive(pid)}
    assert not left, f"still running after Ctrl-C: {left}"


@pytest.mark.timeout(240)
def test_ctrl_c_with_output_in_a_file_stops_everything_quietly(run_env, tmp_path):
    log_path = tmp_path / "run.log"
    with open(log_path, "wb") as log:
        run, children = start_and_wait_until_up(run_env, log)
        assert len(children) >= 4
        web = f"http://127.0.0.1:{run_env['WEB_PORT']}"
        # DEBUG is off, yet the admin's static files, the login page and the home page are served.
        assert answers(f"{web}/static/admin/css/base.css") and answers(f"{web}/login/") and answers(f"{web}/")
        assert answers(f"http://127.0.0.1:{run_env['GATEWAY_PORT']}/healthz")  # the LLM gateway (uvicorn, ASGI)
        # The background (Temporal, the worker, Celery) gets only the CPU the web, the gateway and the relay leave.
        assert cpu_classes(children) == {
            "temporal": "idle", "worker": "idle", "celery": "idle", "web": "normal", "gateway": "normal", "relay": "normal",
        }
        # Temporal's SQLite file keeps a write-ahead log (one fsync per commit, not a rollback journal's two or three).
        assert (tmp_path / "devdata" / "temporal.sqlite-wal").exists()
        assert not (tmp_path / "devdata" / "temporal.sqlite-journal").exists()
        press_ctrl_c_and_check_everything_stops(run, children)
    log = log_path.read_text()
    assert "DEBUG=0" in log and "all stopped" in log
    stops = [line.split("stopping ", 1)[1].strip() for line in log.splitlines() if line.startswith("supervise") and "stopping " in line]
    # The stores last: no worker or relay outlives Temporal; the gateway outlives the worker, whose router calls it.
    assert stops == ["celery", "relay", "worker", "gateway", "web", "temporal"]
    for noise in ("Traceback", "SecurityWarning", "superuser privileges", "connection refused", "No directory at"):
        assert noise not in log, f"{noise!r} in the output of make run"


@pytest.mark.timeout(240)
def test_ctrl_c_with_output_piped_into_a_reader_that_already_exited(run_env):
    """`make run | head -n 5`: the reader leaves during setup; everything still starts, and Ctrl-C stops it all."""
    reader = subprocess.Popen(["head", "-n", "5"], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL)
    run, children = start_and_wait_until_up(run_env, reader.stdin)
    reader.stdin.close()
    assert reader.wait(timeout=10) == 0  # head left long ago; every later write meets a closed pipe
    press_ctrl_c_and_check_everything_stops(run, children)


# `make run | tee run.log` in a terminal: make's recipe and tee are one foreground job. The launcher
# stands for the shell: it ignores Ctrl-C (a handler, which exec resets, so run.sh and tee do get it)
# and reports run.sh's and tee's exit statuses.
TEE_LAUNCHER = """
import signal, subprocess, sys
signal.signal(signal.SIGINT, lambda *_: None)
run = subprocess.Popen(["scripts/run.sh"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
tee = subprocess.Popen(["tee", sys.argv[1]], stdin=run.stdout, stdout=subprocess.DEVNULL)
run.stdout.close()
print(run.wait(), tee.wait(), flush=True)
"""


@pytest.mark.timeout(240)
def test_ctrl_c_kills_tee_first_and_still_stops_everything(run_env, tmp_path):
    """Ctrl-C reaches tee too, so the supervisor's own messages meet a closed pipe while it stops the rest."""
    import sys

    job = subprocess.Popen([sys.executable, "-c", TEE_LAUNCHER, str(tmp_path / "run.log")], cwd=ROOT, env=run_env,
                           stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not answers(f"http://127.0.0.1:{run_env['WEB_PORT']}/readyz") and time.monotonic() < deadline:
            assert job.poll() is None
            time.sleep(0.5)
        time.sleep(3)
        children = descendants(job.pid)
        assert {name for needle, name in EXPECTED.items() if any(needle in cmd for cmd in children.values())} == set(EXPECTED.values())
        press_ctrl_c_and_check_everything_stops(job, children)
        run_status, tee_status = job.stdout.read().split()
        assert run_status == "0"  # make sees success: no "make: *** Error 130"
        assert tee_status == str(-signal.SIGINT)  # tee did leave at once, as in a terminal
    finally:
        if job.poll() is None:  # the test failed half way: leave nothing running (children have sessions of their own)
            leftovers = descendants(job.pid)
            os.killpg(job.pid, signal.SIGKILL)
            for pid in leftovers:
                if alive(pid):
                    os.kill(pid, signal.SIGKILL)
