"""Helpers every benchmark shares: a database of its own, stopping the servers it started, counting Redis round trips."""
from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psycopg


def ensure_postgres_database(database_url: str) -> None:
    """Create the benchmark's PostgreSQL database named in `database_url` if it does not exist."""
    base, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone():
            conn.execute(f'CREATE DATABASE "{name}"')


@dataclass
class Figures:
    """One load pass: what came back and how fast (printed and written to bench/results/)."""

    requests: int
    concurrency: int
    ok: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    p50_ms: float = 0.0
    p90_ms: float = 0.0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    mean_ms: float = 0.0
    throughput_rps: float = 0.0
    wall_s: float = 0.0


def stop(proc: subprocess.Popen | None, name: str) -> None:
    """Stop a process we started (its own process group), politely then firmly."""
    if proc is None or proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(15)
    except (subprocess.TimeoutExpired, ProcessLookupError):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(5)
    print(f"stopped {name}", file=sys.stderr)


class RoundTripCounter:
    """Counts writes to Redis sockets: a pipeline's commands go out in one write, one round trip."""

    def __init__(self) -> None:
        import redis.connection

        self.count = 0
        self._cls = redis.connection.AbstractConnection
        self._original = self._cls.send_packed_command

    def __enter__(self) -> "RoundTripCounter":
        counter, original = self, self._original

        def counting(conn, command, check_health=True):
            counter.count += 1
            return original(conn, command, check_health)

        self._cls.send_packed_command = counting
        return self

    def __exit__(self, *exc) -> None:
        self._cls.send_packed_command = self._original


def free_port() -> int:
    """A port nothing listens on now, for a server the benchmark starts."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float, proc: subprocess.Popen | None = None) -> None:
    """Wait until something accepts connections on `port` (or `proc` dies, or `timeout` passes)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited early with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on {port} after {timeout}s")


def compile_bytecode() -> None:
    """Write .pyc files for our modules, as `make run` does before starting the processes."""
    subprocess.run([sys.executable, "-m", "compileall", "-q", "products", "temporal", "posthog_app"],
                   cwd=Path(__file__).resolve().parent.parent, check=True, stdout=subprocess.DEVNULL)


class Turns:
    """Hands out a fixed number of calls to concurrent client threads, each paced like an independent user.

    With `pace_s` > 0, client i starts i/concurrency of `pace_s` in and waits a random 0-10%
    of it before each call: without that, clients facing a fixed answer time move in lock-step.
    """

    def __init__(self, total: int, concurrency: int, pace_s: float = 0.0) -> None:
        self.remaining = total
        self.concurrency = concurrency
        self.pace_s = pace_s
        self._lock = threading.Lock()

    def of(self, index: int) -> Iterator[None]:
        """Yield once per call client `index` makes, until every call is handed out."""
        if self.pace_s:
            time.sleep(self.pace_s * index / self.concurrency)
        while True:
            if self.pace_s:
                time.sleep(random.uniform(0, self.pace_s / 10))
            with self._lock:
                if self.remaining <= 0:
                    return
                self.remaining -= 1
            yield
