"""`python manage.py run_temporal_worker`: run the service's Temporal worker until Ctrl-C or SIGTERM."""
from __future__ import annotations

import asyncio
import logging
import signal
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from temporalio.client import Client

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


class Command(BaseCommand):
    help = "Run the Temporal worker (address, namespace and task queue from settings)."

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--connect-timeout", type=float, default=60.0, help="Seconds to keep retrying the first connection (default 60)."
        )

    def handle(self, *args, **options) -> None:
        asyncio.run(self._run(options["connect_timeout"]))

    async def _run(self, connect_timeout: float) -> None:
        address, namespace, task_queue = settings.TEMPORAL_ADDRESS, settings.TEMPORAL_NAMESPACE, settings.TEMPORAL_TASK_QUEUE
        client = await connect_with_retry(address, namespace, connect_timeout)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker = build_worker(client, task_queue)
        async with worker:
            self.stdout.write(f"Temporal worker polling task queue {task_queue!r} on {address} (namespace {namespace!r})")
            self.stdout.flush()
            await stop.wait()
            self.stdout.write("Shutting down: finishing running activities")
            self.stdout.flush()
        self.stdout.write("Temporal worker stopped")
