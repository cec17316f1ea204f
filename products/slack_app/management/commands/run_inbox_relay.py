"""`python manage.py run_inbox_relay`: the Slack mention inbox's relay as a process of its own.

`run_temporal_worker` runs the relay on a thread next to the worker by default. On a
machine where the web, the worker and the Temporal server share a few CPUs, the worker
and the server run in the background CPU class (`make run`: scripts/background_cpu.py) so a
burst of mentions is acknowledged first and worked on a moment later; the relay must not share it
(a starved relay leaves the acknowledged mentions waiting in the inbox), so it runs here,
at the web's priority, and the worker runs with `--no-relay`. Same loop, same settings
(products/slack_app/relay.py); Ctrl-C or SIGTERM stops it after the pass under way (exit 0).
"""
from __future__ import annotations

import signal
import threading

from django.core.management.base import BaseCommand

from products.slack_app.relay import run_relay


class Command(BaseCommand):
    help = "Run the Slack mention inbox's relay (starts the workflows for the recorded mentions) until Ctrl-C or SIGTERM."

    def handle(self, *args, **options) -> None:
        stop = threading.Event()
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: stop.set())
        self.stdout.write("Slack mention inbox relay running (its own process)")
        self.stdout.flush()
        # On a thread, so the main thread stays free to take the signals while the relay waits for its next poll.
        thread = threading.Thread(target=run_relay, args=(stop,), name="relay", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(0.5)
        self.stdout.write("Slack mention inbox relay stopped")
