"""The built-in agent's conversation: what it is told, the task, earlier turns and follow-ups.

The agent answers in ONE model call per turn (plus one per follow-up) and does not run
code, so everything it knows is in these messages: a system prompt saying what it is and
what it may answer with, the task (description with the Slack thread's context, and the
repository), the turns so far, and each follow-up from the thread as a user turn.
Messages are plain frozen dataclasses, so the task-run workflow can keep them in its
state and hand them to activities as they are.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the tasks product's snapshots, read by attribute only
    from products.tasks.facade import FollowUpItem, RunSnapshot

SYSTEM = "system"
USER = "user"
ASSISTANT = "assistant"

# One message longer than this is cut (a pasted log, a huge thread); the whole conversation
# is kept under MAX_CONVERSATION_CHARS by dropping the oldest turns after the task itself.
MAX_MESSAGE_CHARS = 24_000
MAX_CONVERSATION_CHARS = 120_000
TRUNCATED = "\n[… cut: too long]"

SYSTEM_PROMPT = (
    "You are PostHog Code's built-in coding assistant. A team asked you for help by mentioning "
    "the bot in a Slack thread; your reply is posted in that thread.\n"
    "You cannot run code, open files, browse, or push commits: you work only from what is in this "
    "conversation (the request, the thread's context and the repository's name). Never claim to "
    "have run, tested or changed anything.\n"
    "Answer with exactly one of:\n"
    "- a short plan (numbered steps) when the work needs a coding session;\n"
    "- a direct answer when the question can be answered from what you know;\n"
    "- a proposed patch as text (a unified diff in a code block) when the change is small and clear, "
    "saying it is untested.\n"
    "Be concise and write for Slack (short paragraphs, lists, code blocks). If the request is "
    "ambiguous, say what you would need to know. Later messages from the thread are follow-ups: "
    "answer the latest one, keeping the earlier answers in mind."
)


@dataclass(frozen=True)
class AgentMessage:
    """One turn of the conversation: `role` is "system", "user" or "assistant"."""

    role: str
    content: str


@dataclass(frozen=True)
class AgentReply:
    """The model's answer to one turn. `demo` is True when the offline demo model wrote it (not a real AI)."""

    text: str
    model: str
    demo: bool


def _cut(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    text = (text or "").strip()
    return text if len(text) <= limit else text[: limit - len(TRUNCATED)] + TRUNCATED


def task_message(run: "RunSnapshot") -> AgentMessage:
    """The first user turn: the repository and the task's description (with the thread's context)."""
    repository = (run.repository or "").strip() or "(none chosen: answer without a specific repository)"
    description = _cut(run.description, MAX_MESSAGE_CHARS - 200) or "(no description)"
    return AgentMessage(USER, f"Repository: {repository}\n\nRequest:\n{description}")


def followup_message(item: "FollowUpItem") -> AgentMessage:
    """A follow-up from the thread, as a user turn that says who wrote it."""
    author = (item.author_name or "").strip() or "someone in the thread"
    return AgentMessage(USER, _cut(f"Follow-up from {author}:\n{item.text}"))


def build_conversation(
    run: "RunSnapshot", followups: Sequence["FollowUpItem"], earlier: Sequence[AgentMessage]
) -> list[AgentMessage]:
    """Return the messages for the next model call: system prompt, task, `earlier` turns, then `followups`.

    `earlier` is what a previous call of this function returned plus the assistant's
    replies since (it then starts with the system prompt and is kept as it is), or only
    the turns after the task (the system prompt and the task are put in front), or empty
    for the first turn. Each follow-up becomes one user turn, oldest first. When the whole
    is longer than `MAX_CONVERSATION_CHARS`, the oldest turns after the task are dropped.
    """
    turns = [m if isinstance(m, AgentMessage) else AgentMessage(**m) for m in earlier]  # a workflow may hand back dicts
    if turns and turns[0].role == SYSTEM:
        conversation = turns
    else:
        conversation = [AgentMessage(SYSTEM, SYSTEM_PROMPT), task_message(run), *turns]
    conversation += [followup_message(item) for item in followups]
    conversation = [AgentMessage(m.role, _cut(m.content)) for m in conversation]
    while sum(len(m.content) for m in conversation) > MAX_CONVERSATION_CHARS and len(conversation) > 3:
        del conversation[2]  # keep the system prompt, the task and the latest turn
    return conversation
