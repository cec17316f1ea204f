"""The relay: turns inbox rows into mention workflows (and recorded denials into Slack replies).

It runs as a process of its own (`manage.py run_inbox_relay`, as `make run` and
docker-compose start it, in the web's CPU class while the worker and Temporal run in the
background one: scripts/background_cpu.py), or on a thread of the Temporal worker's process
(`run_temporal_worker` without `--no-relay`); on a thread in either case, because the ORM
and `temporal.client` are synchronous:

* It looks for due rows every `SLACK_INBOX_RELAY_POLL_SECONDS` (0.1 s by default), and at
  once again after a pass that claimed a full batch. The webhook sends no NOTIFY (inbox.py
  says why); a poll that finds nothing writes nothing.
* Each pass claims the oldest due rows (`inbox.claim`: `FOR UPDATE SKIP LOCKED` and a
  lease), starts their workflows through `temporal.client.start_mention_workflow` (the
  same id, type and id policies as the webhook used to: USE_EXISTING / REJECT_DUPLICATE,
  so a row started twice, by two relays or after a relay died between the start and
  marking the row, is still one workflow), up to `SLACK_INBOX_RELAY_CONCURRENCY` at once,
  issued oldest first.
* Temporal unreachable: the rows are given back untouched and the relay waits
  `SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS`, doubling up to `..._MAX_SECONDS`, then tries
  the oldest again; nothing is dropped however long the outage.
* Denials (over quota; "try again shortly" when the quota is unknown and the failure mode
  is closed) are posted with `posting.post_once` under the same ledger steps the webhook
  and the workflow use, so each goes out once.
* Every `SLACK_INBOX_BACKLOG_LOG_SECONDS` it logs the backlog (`inbox.Backlog.log_line`),
  and every `SLACK_INBOX_PRUNE_EVERY_SECONDS` it prunes processed rows.
"""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

# temporal.client is the only temporal/ module products/ may import.
from temporal.client import SlackMentionWorkflowInput, TemporalUnavailable, start_mention_workflow

from . import inbox, messages
from .errors import SlackPostError, SlackRateLimited, SlackRefused
from .inbox_models import MentionInbox
from .mentions import QUOTA_DENIAL_STEP, TRY_AGAIN_STEP
from .posting import Step, post_once

logger = logging.getLogger(__name__)

Action = MentionInbox.Action


@dataclass
class PassResult:
    claimed: int = 0
    started: int = 0
    already_started: int = 0
    posted: int = 0
    retried: int = 0
    temporal_down: bool = False
    errors: list[str] = field(default_factory=list)


class MentionRelay:
    """One relay. `run(stop)` loops until `stop` is set; `relay_once()` is one pass (tests call it too)."""

    def __init__(self, *, name: str = "relay") -> None:
        self.name = name
        self._pool = ThreadPoolExecutor(max_workers=max(1, settings.SLACK_INBOX_RELAY_CONCURRENCY), thread_name_prefix=f"{name}-start")
        self._next_backlog_log = 0.0
        self._next_prune = 0.0

    # --- one pass ----------------------------------------------------------------------------

    def relay_once(self) -> PassResult:
        """Claim the oldest due rows and act on them; returns what happened."""
        result = PassResult()
        rows = inbox.claim(settings.SLACK_INBOX_RELAY_BATCH_SIZE, settings.SLACK_INBOX_RELAY_LEASE_SECONDS)
        result.claimed = len(rows)
        if not rows:
            return result
        starts = [r for r in rows if r.action == Action.START]
        replies = [r for r in rows if r.action != Action.START]
        if starts:
            self._start(starts, result)
        for row in replies:
            self._post_reply(row, result)
        return result

    def _start(self, rows: list[MentionInbox], result: PassResult) -> None:
        # Submitted oldest first; SLACK_INBOX_RELAY_CONCURRENCY run at once (a sliding window). The first
        # "Temporal unavailable" cancels every start not yet begun (in the pool thread, before it takes
        # the next one): those rows are given back untried, so an outage costs a pass about one start deadline.
        started, already, unavailable = [], [], []
        futures: list[tuple[MentionInbox, Future]] = []
        down = threading.Event()

        def cancel_the_rest(future: Future) -> None:
            if not future.cancelled() and isinstance(future.exception(), TemporalUnavailable):
                down.set()
                for _, other in list(futures):
                    other.cancel()

        for row in rows:
            if down.is_set():
                unavailable.append(row)
                continue
            future = self._pool.submit(start_mention_workflow, _workflow_input(row))
            futures.append((row, future))
            future.add_done_callback(cancel_the_rest)
        for row, future in futures:
            if future.cancelled():
                unavailable.append(row)
                continue
            try:
                (started if future.result() else already).append(row)
            except TemporalUnavailable as exc:
                unavailable.append(row)
                result.errors.append(str(exc))
            except Exception as exc:  # noqa: BLE001 - e.g. a refused request: retried with backoff, then failed
                logger.warning("slack inbox: starting %s failed: %r", row.workflow_id, exc)
                result.retried += 1
                inbox.retry_later(row, repr(exc), self._row_backoff(row.attempts + 1))
        result.temporal_down = result.temporal_down or bool(unavailable)
        inbox.settle(started, "started")
        inbox.settle(already, "already_started")
        inbox.release(unavailable)
        result.started += len(started)
        result.already_started += len(already)
        for row in started:
            logger.info("slack inbox: started %s (%.0f ms after it was received)", row.workflow_id, _age_ms(row))
        for row in already:
            logger.info("slack inbox: %s was already started; nothing more to do", row.workflow_id)

    def _post_reply(self, row: MentionInbox, result: PassResult) -> None:
        if row.action == Action.DENY_OVER_QUOTA:
            step, text = QUOTA_DENIAL_STEP, messages.quota_denial_text()
        else:
            step, text = TRY_AGAIN_STEP, messages.TRY_AGAIN_SHORTLY_TEXT
        try:
            # A ledger claim without a ts means an earlier relay died mid-post: look in the thread first.
            post_once(
                row.integration,
                Step(row.workflow_id, step),
                channel=row.channel,
                thread_ts=row.thread_ts,
                text=text,
                fallback_user=row.user or None,
                after_crash="look_in_thread",
            )
        except SlackRateLimited as exc:
            result.retried += 1
            inbox.retry_later(row, str(exc), exc.retry_after)
            return
        except SlackRefused as exc:
            # Neither the thread nor the user (ephemerally) can be told; the mention is refused all the same.
            logger.warning("slack inbox: could not post %s for %s: %s", step, row.workflow_id, exc)
            inbox.settle([row], "not_posted")
            return
        except SlackPostError as exc:  # Slack unavailable: try again later
            result.retried += 1
            inbox.retry_later(row, str(exc), self._row_backoff(row.attempts + 1))
            return
        inbox.settle([row], "posted")
        result.posted += 1
        logger.info("slack inbox: posted %s for %s", step, row.workflow_id)

    @staticmethod
    def _row_backoff(attempt: int) -> float:
        initial = settings.SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS
        return min(settings.SLACK_INBOX_RELAY_BACKOFF_MAX_SECONDS, initial * 2 ** max(0, attempt - 1))

    # --- the loop ----------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Relay until `stop` is set. Database and Temporal outages are waited out, never raised."""
        logger.info("slack inbox relay %s running (polling every %gs)", self.name, settings.SLACK_INBOX_RELAY_POLL_SECONDS)
        backoff = 0.0
        try:
            while not stop.is_set():
                close_old_connections()
                try:
                    result = self.relay_once()
                    self._housekeeping()
                except DatabaseError as exc:
                    logger.error("slack inbox relay: database unavailable (%s); retrying", exc)
                    connection.close()
                    result = PassResult(temporal_down=True)
                except Exception:  # noqa: BLE001 - a relay that dies silently would leave every mention waiting
                    logger.exception("slack inbox relay: pass failed; retrying")
                    result = PassResult(temporal_down=True)
                if result.temporal_down:  # (or the database, or a failed pass): wait, then the oldest again
                    initial = settings.SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS
                    backoff = min(settings.SLACK_INBOX_RELAY_BACKOFF_MAX_SECONDS, backoff * 2 if backoff else initial)
                    if result.errors:
                        logger.warning(
                            "slack inbox relay: Temporal unavailable (%s); %d mentions wait, retrying in %.1fs",
                            result.errors[0], result.claimed, backoff,
                        )
                    stop.wait(backoff)
                    continue
                backoff = 0.0
                if result.claimed >= settings.SLACK_INBOX_RELAY_BATCH_SIZE:
                    continue  # more may be waiting
                stop.wait(settings.SLACK_INBOX_RELAY_POLL_SECONDS)
        finally:
            self.close()
            connection.close()  # this thread's: it ends with the loop
            logger.info("slack inbox relay %s stopped", self.name)

    def close(self) -> None:
        """Release the relay's start threads."""
        self._pool.shutdown(wait=True)

    def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_backlog_log:
            self._next_backlog_log = now + settings.SLACK_INBOX_BACKLOG_LOG_SECONDS
            logger.info(inbox.backlog().log_line())
        if now >= self._next_prune:
            self._next_prune = now + settings.SLACK_INBOX_PRUNE_EVERY_SECONDS
            inbox.prune()


def run_relay(stop: threading.Event, *, name: str = "relay") -> None:
    """Run one relay on the calling thread until `stop` is set (the worker command's entry point)."""
    MentionRelay(name=name).run(stop)


def _workflow_input(row: MentionInbox) -> SlackMentionWorkflowInput:
    return SlackMentionWorkflowInput(
        event=row.event, integration_id=row.integration_id, slack_team_id=row.slack_team_id, event_id=row.event_id
    )


def _age_ms(row: MentionInbox) -> float:
    from django.utils import timezone

    return (timezone.now() - row.received_at).total_seconds() * 1000
