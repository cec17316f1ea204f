"""Group commit: the request threads of one process that write at the same moment share one write.

Why: every inbox row is its own transaction, and with fsync and synchronous_commit on (an
acknowledgment must mean the row is durable) each commit waits for a WAL flush, and
each row costs its own round trip, statement and commit in PostgreSQL. Written
together, N rows cost one statement and one flush. (When the insert also sent a NOTIFY,
whose database-wide lock is held until the commit is flushed, this was what kept the
webhook's commits from going one after the other; inbox.py says why it no longer does.)

How (leader/follower, no thread of its own): a thread that submits while nothing is
being written becomes the writer at once: it takes every item queued so far (its own
included) and writes them with one call of `write`, on its own database connection.
Items submitted meanwhile wait in the queue; when the batch is written, each of its
submitters gets its own outcome, and the oldest waiter, if any, is woken to write the
next batch (everything queued by then). So an uncontended submit is written by its own
thread with no hand-off, a submitter writes at most one batch, and waits at most for the
batch before its own.

Outcomes: `write` returns one result per item, in order; an item's result may be an
exception, raised in that item's submitter only. If `write` itself raises, every
submitter of that batch raises it (a copy each, so threads never share one traceback):
nothing of that batch may be acknowledged.
"""
from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")

_NO_RESULT = object()


class _Waiter(Generic[T]):
    __slots__ = ("item", "turn", "done", "result")

    def __init__(self, item: T) -> None:
        self.item = item
        self.turn = threading.Event()  # set when `result` is in, or when this waiter is to write the next batch
        self.done = False
        self.result: object = _NO_RESULT


class GroupCommit(Generic[T, R]):
    """Batches concurrent `submit(item)` calls into calls of `write(items)`; see the module docstring.

    `write` runs in one of the submitting threads (so it uses that thread's database
    connection) and must return one result per item, in order. `max_batch` bounds one
    write (the rest waits for the next).
    """

    def __init__(self, write: Callable[[Sequence[T]], Sequence[R | BaseException]], *, max_batch: int = 100) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self._write = write
        self._max_batch = max_batch
        self._lock = threading.Lock()
        self._queue: list[_Waiter[T]] = []
        self._writing = False  # invariant: the queue is empty, or someone is writing or has been woken to write

    def submit(self, item: T) -> R:
        """Write `item` with whatever else is waiting; return its result once its batch is written, or raise its error."""
        waiter: _Waiter[T] = _Waiter(item)
        with self._lock:
            self._queue.append(waiter)
            lead = not self._writing
            self._writing = True
        if not lead:
            waiter.turn.wait()
        if not waiter.done:  # this thread writes: nothing was being written, or the previous writer handed over
            self._write_batch(waiter)
        if isinstance(waiter.result, BaseException):
            raise waiter.result
        return waiter.result  # type: ignore[return-value]

    def _write_batch(self, own: _Waiter[T]) -> None:
        with self._lock:
            batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
        try:
            try:
                results = list(self._write([w.item for w in batch]))
                if len(results) != len(batch):
                    raise RuntimeError(f"group commit: {len(results)} results for {len(batch)} items")
            except BaseException as exc:  # the whole batch failed: every submitter raises it
                results = [exc if w is own else _copy_for_another_thread(exc) for w in batch]
            for waiter, result in zip(batch, results):
                waiter.result = result
                waiter.done = True
        finally:
            with self._lock:
                next_writer = self._queue[0] if self._queue else None
                if next_writer is None:
                    self._writing = False
            for waiter in batch:
                if waiter.result is _NO_RESULT:  # only if handing out the results itself failed
                    waiter.result = RuntimeError("group commit: the batch's outcome was lost")
                waiter.done = True  # no submitter writes twice
                waiter.turn.set()
            if next_writer is not None:
                next_writer.turn.set()


def _copy_for_another_thread(exc: BaseException) -> BaseException:
    """The same error (type and arguments) without the writer's traceback, to raise in another submitter."""
    try:
        clone = copy.copy(exc)
    except Exception:
        clone = RuntimeError(f"group commit failed: {exc!r}")
    clone.__traceback__ = None
    clone.__cause__ = clone.__context__ = None
    return clone
