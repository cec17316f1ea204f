"""`python manage.py run_temporal_worker`: run the service's Temporal worker until Ctrl-C or SIGTERM.

Next to the worker runs the Slack mention inbox's relay (products/slack_app/relay.py, on a
thread of its own: the ORM is synchronous), which starts the workflows for the mentions
the webhook recorded; `--no-relay` leaves it out. Both ride through a Temporal restart
by themselves: the worker's pollers retry until the server answers again, the relay
backs off and starts the waiting mentions, oldest first, once it does.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import signal
import threading
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from temporalio.client import Client

from products.slack_app.facade import run_relay
from temporal.worker import build_worker

logger = logging.getLogger(__name__)


async def connect_with_retry(address: str, namespace: str, timeout: float) -> Client:
    """Connect to Temporal, retrying for up to `timeout` seconds (it may still be starting)."""
    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        try:
            return await Client.connect(address, namespace=namespace)
        except Exception as err:  # the SDK raises RuntimeError for a refused connection
            if time.monotonic() >= deadline:
                raise CommandError(f"Could not connect to Temporal at {address} after {timeout:.0f}s: {err}") from err
            if attempt == 1 or attempt % 10 == 0:
                logger.warning("Temporal at %s not reachable yet (%s); retrying", address, err)
            await asyncio.sleep(1)


def freeze_startup_heap() -> None:
    """Move every object alive now (Django, temporalio, the workflow sandbox's modules) out of the collector's reach.

    The worker is one process: its workflow tasks, its activity threads and the relay share
    one GIL, so a full (generation 2) collection stalls all of them. Those collections
    walked the whole startup heap, about 200,000 objects, for 180-300 ms each (three in
    a bench/task_loop.py run, each one in the path of every run in flight). Frozen, the
    heap that lives as long as the process is never walked again; what collections find is
    what runs leave behind.
    """
    gc.collect()
    gc.freeze()


class Command(BaseCommand):
    help = "Run the Temporal worker (address, namespace and task queue from settings)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--connect-timeout", type=float, default=60.0, help="Seconds to keep retrying the first connection (default 60)."
        )
        parser.add_argument(
            "--no-relay", action="store_true", help="Do not run the Slack mention inbox's relay in this process."
        )

    def handle(self, *args, **options) -> None:
        asyncio.run(self._run(options["connect_timeout"], relay=not options["no_relay"]))

    async def _run(self, connect_timeout: float, relay: bool = True) -> None:
        address, namespace, task_queue = settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE, settings.TEMPORAL_TASK_QUEUE
        client = await connect_with_retry(address, namespace, connect_timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker = build_worker(client, task_queue, max_activity_threads=settings.TEMPORAL_ACTIVITY_THREADS)
        freeze_startup_heap()
        relay_stop = threading.Event()
        relay_task = asyncio.create_task(asyncio.to_thread(run_relay, relay_stop)) if relay else None
        try:
            async with worker:
                self.stdout.write(f"Temporal worker polling task queue {task_queue!r} on {address} (namespace {namespace!r})")
                if relay_task is not None:
                    self.stdout.write("Slack mention inbox relay running")
                self.stdout.flush()
                await stop.wait()
                self.stdout.write("Shutting down: finishing running activities")
                self.stdout.flush()
                relay_stop.set()  # the relay finishes its pass while the worker drains
        finally:
            relay_stop.set()
            if relay_task is not None:
                await relay_task
        self.stdout.write("Temporal worker stopped")
