"""The built-in agent's conversation: what the model is told, in which order, within bounds.

Invariant: the model always learns what it is (a coding assistant answering in a Slack thread
that does not run code), what the task is (the description with the thread's context, and the
repository), what was said before, and every follow-up, oldest first, as a user turn.
"""
from __future__ import annotations

import dataclasses

import pytest

from products.agent.conversation import MAX_CONVERSATION_CHARS
from products.agent.facade import AgentMessage, build_conversation
from products.tasks.facade import FollowUpItem

from .agent_support import task_run  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db


def test_the_first_turn_says_what_the_agent_is_and_carries_the_task_thread_and_repository(task_run):
    conversation = build_conversation(task_run, [], [])
    assert [m.role for m in conversation] == ["system", "user"]
    system = conversation[0].content
    assert "coding assistant" in system and "Slack thread" in system
    assert "cannot run code" in system
    for kind in ("plan", "answer", "patch"):
        assert kind in system
    task = conversation[1].content
    assert "Repository: acme/web" in task
    assert "fix the flaky login test in acme/web" in task
    assert "bob: it started after the session-cookie change" in task  # the thread's context


def test_a_run_without_a_repository_says_so(task_run):
    run = dataclasses.replace(task_run, repository="")
    assert "Repository: (none chosen" in build_conversation(run, [], [])[1].content


def test_followups_become_user_turns_in_order_with_their_author(task_run):
    followups = [FollowUpItem(id=3, text="also check Safari", author_name="alice"), FollowUpItem(id=7, text="and Firefox", author_name="")]
    conversation = build_conversation(task_run, followups, [])
    assert [m.role for m in conversation] == ["system", "user", "user", "user"]
    assert conversation[2].content == "Follow-up from alice:\nalso check Safari"
    assert conversation[3].content == "Follow-up from someone in the thread:\nand Firefox"


def test_earlier_turns_are_kept_and_the_new_followup_appended(task_run):
    first = build_conversation(task_run, [], [])
    earlier = [*first, AgentMessage("assistant", "Plan: 1. reproduce")]
    conversation = build_conversation(task_run, [FollowUpItem(id=1, text="go ahead", author_name="bob")], earlier)
    assert conversation[: len(earlier)] == earlier  # no second system prompt or task
    assert conversation[-1] == AgentMessage("user", "Follow-up from bob:\ngo ahead")


def test_earlier_turns_without_the_prompt_get_the_prompt_and_task_in_front(task_run):
    conversation = build_conversation(task_run, [], [AgentMessage("assistant", "Plan A"), {"role": "user", "content": "more"}])
    assert [m.role for m in conversation] == ["system", "user", "assistant", "user"]
    assert conversation[3] == AgentMessage("user", "more")


def test_a_huge_conversation_is_cut_keeping_prompt_task_and_latest_turn(task_run):
    earlier = [AgentMessage("assistant" if i % 2 else "user", f"turn {i} " + "x" * 20_000) for i in range(12)]
    followup = FollowUpItem(id=99, text="the latest question", author_name="carol")
    conversation = build_conversation(task_run, [followup], earlier)
    assert sum(len(m.content) for m in conversation) <= MAX_CONVERSATION_CHARS
    assert conversation[0].role == "system" and "Repository: acme/web" in conversation[1].content
    assert conversation[-1].content.endswith("the latest question")
    assert "turn 0 " not in "".join(m.content for m in conversation)  # the oldest went first
