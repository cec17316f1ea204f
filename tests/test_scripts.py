"""scripts/test.sh and scripts/supervise.py, checked without the services they normally drive."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sleeper(name: str) -> str:
    """A Procfile command that says when it starts and when SIGTERM stops it."""
    code = (
        "import signal, sys, time; "
        f"signal.signal(signal.SIGTERM, lambda *a: (print('{name} stopped', flush=True), sys.exit(0))); "
        f"print('{name} up', flush=True); time.sleep(120)"
    )
    return f'{sys.executable} -c "{code}"'


def supervise(tmp_path: Path, procfile: str) -> subprocess.Popen:
    (tmp_path / "Procfile").write_text(procfile)
    return subprocess.Popen([sys.executable, str(ROOT / "scripts" / "supervise.py"), str(tmp_path / "Procfile")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def wait_for(run: subprocess.Popen, texts: set[str], lines: list[str], timeout: float = 20) -> None:
    """Read output until every one of `texts` has appeared, in whatever order the processes start."""
    missing = set(texts)
    deadline = time.monotonic() + timeout
    while missing and time.monotonic() < deadline:
        line = run.stdout.readline()
        lines.append(line)
        missing = {text for text in missing if text not in line}
    if missing:
        raise AssertionError(f"{sorted(missing)} never appeared: {lines}")


def test_supervise_stops_in_reverse_order_on_sigint_and_exits_0(tmp_path):
    run = supervise(tmp_path, f"store: {sleeper('store')}\napp: {sleeper('app')}\n")
    lines: list[str] = []
    wait_for(run, {"store up", "app up"}, lines)
    os.killpg(run.pid, signal.SIGINT)
    rest, _ = run.communicate(timeout=30)
    output = "".join(lines) + rest
    assert run.returncode == 0, output
    assert output.index("app stopped") < output.index("stopping store") < output.index("store stopped")
    assert "all stopped" in output


def test_supervise_stops_the_others_and_exits_1_when_a_process_dies(tmp_path):
    run = supervise(tmp_path, f"store: {sleeper('store')}\ncrash: {sys.executable} -c 'import sys; sys.exit(3)'\n")
    output, _ = run.communicate(timeout=30)
    assert run.returncode == 1, output
    assert "crash exited with status 3; stopping the others" in output and "stopping store" in output


def test_test_sh_runs_the_import_contracts_and_a_sqlite_pass_and_fails_on_no_tests():
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert ".venv/bin/lint-imports" in script
    assert 'DATABASE_URL="sqlite:///' in script and "-m sqlite" in script
    assert '"$status" -eq 5' in script
    assert "sqlite:" in (ROOT / "pytest.ini").read_text()


def test_background_cpu_runs_the_command_in_sched_idle_and_refuses_a_missing_one():
    script = str(ROOT / "scripts" / "background_cpu.py")
    probe = "import os; print(os.sched_getscheduler(0) == os.SCHED_IDLE)"
    run = subprocess.run([sys.executable, script, sys.executable, "-c", probe], capture_output=True, text=True, timeout=30)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "True"
    # The command's own exit status comes back (the script becomes the command).
    assert subprocess.run([sys.executable, script, sys.executable, "-c", "raise SystemExit(7)"], timeout=30).returncode == 7
    missing = subprocess.run([sys.executable, script, "/no/such/command"], capture_output=True, text=True, timeout=30)
    assert missing.returncode == 127 and "cannot run '/no/such/command'" in missing.stderr
    usage = subprocess.run([sys.executable, script], capture_output=True, text=True, timeout=30)
    assert usage.returncode == 2 and "usage:" in usage.stderr
