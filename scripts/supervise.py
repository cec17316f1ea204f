#!/usr/bin/env python3
"""Run the processes of a Procfile in the foreground; Ctrl-C stops them all, in order, and exits 0.

    supervise.py PROCFILE

`make run` uses it instead of honcho, whose SIGINT handler died printing to a closed pipe
(`make run | tee run.log`, then Ctrl-C) before it signalled its children, leaving web,
worker, Celery and sometimes Temporal running. Here:

- Each process runs in a process group of its own, so the terminal's Ctrl-C reaches only
  this supervisor, which then stops the processes itself, in the reverse order of the
  Procfile: the app processes (listed last) first, Temporal and Redis (listed first) last, so
  no worker outlives the server it talks to. A process that has not stopped after
  STOP_TIMEOUT seconds is killed, with its whole group (Celery's pool, say).
- Output lines are prefixed with the process name. Output is best effort: when stdout is
  closed (the reader of the pipe exited), lines are dropped and the processes keep running
  until Ctrl-C or SIGTERM; the pipes from the processes are always drained.
- SIGINT, SIGTERM and SIGHUP all mean "stop everything"; the exit status is then 0. If a
  process exits on its own, the others are stopped and the status is 1.

Procfile lines are `name: command` (no shell: the command is split like a shell would).
"""
from __future__ import annotations

import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

STOP_TIMEOUT = 15.0


class Output:
    """Serialised, prefixed writes to stdout that never raise: a closed pipe drops the text."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.lock = threading.Lock()
        self.closed = False

    def line(self, name: str, text: str) -> None:
        if self.closed:
            return
        with self.lock:
            try:
                sys.stdout.write(f"{name:<{self.width}} | {text.rstrip()}\n")
                sys.stdout.flush()
            except (BrokenPipeError, OSError, ValueError):
                self.closed = True  # the reader went away: keep supervising, stop printing


@dataclass
class Process:
    name: str
    command: str
    popen: subprocess.Popen | None = None
    reader: threading.Thread | None = field(default=None, repr=False)

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None


def read_procfile(path: Path) -> list[Process]:
    processes = []
    for number, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, command = line.partition(":")
        if not sep or not name.strip() or not command.strip():
            raise SystemExit(f"{path}:{number}: expected 'name: command', got {raw!r}")
        processes.append(Process(name.strip(), command.strip()))
    return processes


class Supervisor:
    def __init__(self, processes: list[Process]) -> None:
        self.processes = processes
        self.out = Output(max([len(p.name) for p in processes] + [len("supervise")]))
        self.stop_requested = threading.Event()
        self.wake = threading.Event()

    def say(self, text: str) -> None:
        self.out.line("supervise", text)

    def start(self) -> None:
        for process in self.processes:
            process.popen = subprocess.Popen(
                shlex.split(process.command),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: Ctrl-C reaches us, not it; we stop it in order
                bufsize=0,
            )
            process.reader = threading.Thread(target=self._pump, args=(process,), daemon=True)
            process.reader.start()
            self.say(f"started {process.name} (pid {process.popen.pid})")

    def _pump(self, process: Process) -> None:
        assert process.popen is not None and process.popen.stdout is not None
        for raw in iter(process.popen.stdout.readline, b""):
            self.out.line(process.name, raw.decode("utf-8", "replace"))
        process.popen.stdout.close()
        self.wake.set()  # its output ended: it has probably exited

    def on_signal(self, signum: int, frame) -> None:
        self.stop_requested.set()
        self.wake.set()

    def wait(self) -> Process | None:
        """Block until a stop is requested (None) or a process exits by itself (that process)."""
        while not self.stop_requested.is_set():
            for process in self.processes:
                if not process.running:
                    return process
            self.wake.wait(0.5)
            self.wake.clear()
        return None

    def stop_all(self) -> None:
        for process in reversed(self.processes):
            self._stop(process)
        for process in self.processes:
            if process.reader is not None:
                process.reader.join(timeout=2)

    def _stop(self, process: Process) -> None:
        popen = process.popen
        if popen is None:
            return
        if popen.poll() is None:
            self.say(f"stopping {process.name}")
            self._signal_group(popen.pid, signal.SIGTERM)
            try:
                popen.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.say(f"{process.name} did not stop within {STOP_TIMEOUT:.0f}s; killing it")
        # Whatever it left behind in its group (Celery's pool, say) goes too.
        self._signal_group(popen.pid, signal.SIGKILL)
        popen.wait()

    @staticmethod
    def _signal_group(pgid: int, signum: int) -> None:
        try:
            os.killpg(pgid, signum)
        except (ProcessLookupError, PermissionError):
            pass


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    supervisor = Supervisor(read_procfile(Path(argv[1])))
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, supervisor.on_signal)
    try:
        supervisor.start()
        exited = supervisor.wait()
    except BaseException:
        supervisor.stop_all()
        raise
    if exited is not None:
        assert exited.popen is not None
        supervisor.say(f"{exited.name} exited with status {exited.popen.returncode}; stopping the others")
    # A second Ctrl-C while stopping changes nothing: the order is kept, each stop is bounded.
    supervisor.stop_all()
    supervisor.say("all stopped")
    return 0 if exited is None else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
