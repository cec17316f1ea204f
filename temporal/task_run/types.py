"""Task-run workflow inputs and outputs. New fields get defaults so old callers and histories keep working."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TaskRunWorkflowInput:
    run_id: int
    integration_id: int  # the Slack integration whose thread the run reports to
    channel: str
    thread_ts: str  # the thread tied to the task
    mention_ts: str  # the mention that started (or resumed) the run: its 👀 is swapped at the end
    # Carried across continue-as-new (a long external run); a fresh start leaves them empty.
    status_ts: str = ""  # the status message, once posted
    shown: str = ""  # what the status message shows now ("<status>|<progress>")
    stopped: bool = False  # True: Slack said the thread or message is gone; post nothing more


@dataclass
class TaskRunWorkflowResult:
    run_id: int
    status: str  # the run's final status ("" if the run was deleted)
    reported: bool  # True: the outcome reached the thread
    stopped: bool = False  # True: reporting stopped (the thread or message was deleted)


# --- Activity inputs and outputs ---------------------------------------------------------
# Ids and plain values only, never ORM objects, so an activity can run on any worker.


@dataclass
class RunRef:
    run_id: int
    check_stale: bool = False  # external runs: fail the run if its runner stopped heartbeating


@dataclass
class RunState:
    """What the workflow needs of `products.tasks.facade.RunSnapshot`."""

    run_id: int
    status: str
    backend: str
    progress: str = ""
    summary: str = ""
    pr_url: str = ""
    error: str = ""
    error_kind: str = ""
    is_terminal: bool = False


@dataclass
class ConversationMessage:
    role: str  # "system" | "user" | "assistant"
    content: str


@dataclass
class AnswerInput:
    run_id: int
    cursor: int = 0  # id of the last follow-up already in `earlier`
    earlier: list[ConversationMessage] = field(default_factory=list)  # the conversation so far, answers included
    # Since ANSWER_CONCLUDES_PATCH: also finish the run with the answer (unless follow-ups wait) and
    # report it, as `conclude_task_run_activity` would (its `finish` is filled in with the answer).
    # None: the workflow concludes with that step.
    conclude: ConcludeInput | None = None


@dataclass
class AnswerResult:
    quota_limited: bool  # True: the gateway refused for quota (`message` says why); nothing was answered
    text: str = ""
    model: str = ""
    demo: bool = False
    cursor: int = 0  # id of the last follow-up now answered
    conversation: list[ConversationMessage] = field(default_factory=list)  # `earlier` + this turn + the answer
    message: str = ""
    # With `AnswerInput.conclude`: what concluding did. None: not concluded here (not asked, or it
    # failed: Slack unavailable...); the workflow concludes with its own step, which retries.
    concluded: ConcludeResult | None = None


@dataclass
class FinishInput:
    run_id: int
    status: str
    summary: str = ""
    pr_url: str = ""
    error: str = ""
    error_kind: str = ""
    # Built-in runs: do not finish if follow-ups newer than this cursor are waiting (they get answered first).
    unless_followups_after: int | None = None


@dataclass
class FinishResult:
    finished: bool  # False: follow-ups are waiting; the run was left as it was
    state: RunState


@dataclass
class SlackTarget:
    """Where a run reports: the integration, the thread, the mention and the status message."""

    integration_id: int
    run_id: int
    channel: str
    thread_ts: str
    mention_ts: str = ""
    status_ts: str = ""


@dataclass
class ShowStatusInput:
    target: SlackTarget


@dataclass
class PostReplyInput:
    target: SlackTarget
    step: str  # the post-once step name ("answer-1", ...)
    text: str


@dataclass
class SyncInput:
    """Bring the run forward (start it, or fail it if its runner went quiet) and show it in the status message."""

    target: SlackTarget
    start: bool = False  # move a queued built-in run to in_progress (an external run is left to its runner)
    check_stale: bool = False  # external runs: fail the run if its runner stopped heartbeating
    shown: str = ""  # what the status message shows now: it is posted or edited only if the run's differs
    report: bool = True  # False: the database step only (Slack kept failing, or the thread is gone)


@dataclass
class SyncResult:
    state: RunState
    shown: str = ""  # what the status message shows after this step
    status_ts: str = ""  # the status message, once posted
    stopped: bool = False  # True: the thread or message is gone; post nothing more


@dataclass
class ConcludeInput:
    """End the run (unless `finish` is None: it has ended already) and tell the thread how it ended."""

    target: SlackTarget
    finish: FinishInput | None = None
    report: bool = True  # False: the database step only


@dataclass
class ConcludeResult:
    finished: bool  # False: follow-ups wait for an answer; the run was left as it was and nothing reported
    state: RunState
    reported: bool = False  # True: the outcome reached the thread
    stopped: bool = False


def shown_of(state: RunState) -> str:
    """What the status message shows for `state` (a new value means the message must be edited)."""
    return f"{state.status}|{state.progress}"


@dataclass
class Reported:
    ts: str = ""  # the message posted or edited ("" if none)
    stopped: bool = False  # True: the thread or message is gone; post nothing more for this run
