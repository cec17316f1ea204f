"""Group commit (products/slack_app/group_commit.py): concurrent submitters share one write, each gets its own outcome.

Invariants: every item is written exactly once and its submitter gets that item's result
(never another's); a write that fails fails every submitter of its batch and no other; an
uncontended submit is written by its own thread; a submitter writes at most one batch.
"""
from __future__ import annotations

import threading
import time

import pytest

from products.slack_app.group_commit import GroupCommit


class Recorder:
    """A write function that records each batch and the thread that wrote it; it can be held or made to fail."""

    def __init__(self) -> None:
        self.batches: list[tuple[list[int], str]] = []
        self.release = threading.Event()
        self.release.set()
        self.entered = threading.Event()
        self.fail_when: set[int] = set()  # a batch containing one of these items raises

    def __call__(self, items):
        self.entered.set()
        self.release.wait(10)
        self.batches.append((list(items), threading.current_thread().name))
        if self.fail_when & set(items):
            raise ValueError(f"batch {sorted(items)} failed")
        return [item * 10 if item % 7 else KeyError(item) for item in items]


def submit_all(group: GroupCommit, items: list[int], recorder: Recorder, *, hold_first: bool = True):
    """Submit item 0 (its write held), then the others from threads of their own; return item -> result or error."""
    outcomes: dict[int, object] = {}

    def one(item: int) -> None:
        try:
            outcomes[item] = group.submit(item)
        except BaseException as exc:  # noqa: BLE001 - the outcome under test
            outcomes[item] = exc

    threads = [threading.Thread(target=one, args=(item,), name=f"submitter-{item}") for item in items]
    if hold_first:
        recorder.release.clear()
    threads[0].start()
    assert recorder.entered.wait(5)
    for t in threads[1:]:
        t.start()
    deadline = time.monotonic() + 5
    while len(group._queue) < len(items) - 1 and time.monotonic() < deadline:  # every other submitter is waiting
        time.sleep(0.005)
    recorder.release.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive()
    return outcomes


def test_an_uncontended_submit_is_written_by_its_own_thread_at_once():
    recorder = Recorder()
    group = GroupCommit(recorder)
    assert group.submit(3) == 30
    assert recorder.batches == [([3], threading.current_thread().name)]


def test_submitters_waiting_on_a_write_share_the_next_one_and_each_gets_its_own_result():
    recorder = Recorder()
    group = GroupCommit(recorder)
    items = [1, *range(2, 30)]
    outcomes = submit_all(group, items, recorder)

    written = [item for batch, _ in recorder.batches for item in batch]
    assert sorted(written) == sorted(items)  # each once: none lost, none twice
    assert [batch for batch, _ in recorder.batches][0] == [1]
    assert len(recorder.batches) == 2  # everything that waited went in one write
    assert recorder.batches[1][1] != "submitter-1"  # the first writer did not write a second batch
    for item in items:
        if item % 7:
            assert outcomes[item] == item * 10
        else:  # an item's own error goes to that item's submitter only
            assert isinstance(outcomes[item], KeyError) and outcomes[item].args == (item,)


def test_a_failed_write_fails_every_submitter_of_that_batch_and_no_other():
    recorder = Recorder()
    group = GroupCommit(recorder, max_batch=5)
    recorder.fail_when = {8}
    items = [1, *range(2, 14)]  # batches: [1], [2..6], [7..11], [12, 13]
    outcomes = submit_all(group, items, recorder)

    failed_batch = next(batch for batch, _ in recorder.batches if 8 in batch)
    assert [len(b) for b, _ in recorder.batches] == [1, 5, 5, 2]
    for item in items:
        if item in failed_batch:
            assert isinstance(outcomes[item], ValueError), outcomes[item]
            assert "failed" in str(outcomes[item])
        else:
            assert not isinstance(outcomes[item], ValueError), (item, outcomes[item])
    errors = [outcomes[item] for item in failed_batch]
    assert len({id(e) for e in errors}) == len(errors)  # one error object per thread, never shared


def test_the_group_is_usable_again_after_a_failed_write():
    recorder = Recorder()
    group = GroupCommit(recorder)
    recorder.fail_when = {5}
    with pytest.raises(ValueError):
        group.submit(5)
    assert group.submit(4) == 40
