#!/usr/bin/env python3
"""Run a command in the background CPU class: `scripts/background_cpu.py COMMAND [ARG...]`.

`make run` starts the Temporal dev server, the Temporal worker and Celery through this; the
web, the LLM gateway, the inbox relay and the stores keep the normal class. On a machine
they share, a burst of Slack mentions is then acknowledged first and worked on a moment
later, and the background still has every CPU cycle the web leaves.

Why not `nice`: a request's path wakes several threads and processes in turn (the server's
poller, a request thread, Redis, PostgreSQL, the thread again), and with the kernel's EEVDF
scheduler (Linux 6.6 and later) a niced process that holds a CPU when one of them wakes may
keep it for the rest of its time slice (milliseconds). Measured with bench/slack_webhook.py
while the worker drained: the worker, relay and Temporal at nice 10 or 19 left the webhook
at 520-720 acknowledgments/s, the same as at nice 0; with all three in SCHED_IDLE one run
answered 871/s, about its figure with nothing draining (later runs, on a slower and noisier
host, gave 0.33-0.44x Bolt either way: see bench/results). A SCHED_IDLE task gives its CPU
up at once to any normal task that wakes, and threads and children it starts later inherit the class.

Where SCHED_IDLE does not exist (macOS), nice 19 is the closest there is. Exit status: the
command's own (this process becomes it); 2 with no command; 127 if it cannot be run.
"""
from __future__ import annotations

import os
import sys


def enter_background() -> str:
    """Put the calling thread (and every thread and process it starts from now on) in the background class.

    Returns what was used: "SCHED_IDLE", or "nice 19" where the policy is missing or refused.
    """
    if hasattr(os, "SCHED_IDLE"):
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
            return "SCHED_IDLE"
        except OSError:
            pass
    os.nice(19 - os.nice(0))
    return "nice 19"


def main(argv: list[str]) -> int:
    if not argv or argv[0] in {"-h", "--help"}:
        print("usage: scripts/background_cpu.py COMMAND [ARG...]  (runs COMMAND in the background CPU class)", file=sys.stderr)
        return 2
    enter_background()
    try:
        os.execvp(argv[0], argv)
    except OSError as exc:
        print(f"background_cpu.py: cannot run {argv[0]!r}: {exc.strerror or exc}", file=sys.stderr)
        return 127
    return 0  # not reached: exec replaced this process


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
