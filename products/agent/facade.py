"""The built-in agent's public module: the only one other products and `temporal/` import.

The task-run workflow's built-in backend builds the conversation for a run
(`build_conversation`: system prompt, task with the thread's context and repository,
earlier turns, follow-ups as user turns) and asks the model for one reply per turn
(`answer`, through our LLM gateway with a token minted for that run, so the call is billed
to the run's project and recorded with `$ai_run_id`). The agent answers with text (a plan,
an answer or a proposed patch); it does not run code.

Depends on products.llm_gateway (tokens, demo model name) and products.tasks (snapshot
types) through their facades only.
"""
from __future__ import annotations

from .client import agent_model, answer
from .conversation import AgentMessage, AgentReply, build_conversation
from .errors import AgentError, AgentQuotaExceeded, AgentRefused, AgentUnavailable

__all__ = [
    "AgentError",
    "AgentMessage",
    "AgentQuotaExceeded",
    "AgentRefused",
    "AgentReply",
    "AgentUnavailable",
    "agent_model",
    "answer",
    "build_conversation",
]
