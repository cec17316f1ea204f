"""Patch ids for the task-run workflow, one constant each.

How this workflow is versioned: its command sequence (which activities it runs, in
which order, its timers and `continue_as_new`) is what Temporal replays. Any change to
that sequence for executions that may already be open goes behind
`workflow.patched(<ID>)`, with the id a named constant here whose comment says which
histories it protects (and a recorded history under tests/temporal/histories/ that
must keep replaying). The lifecycle is the mention workflow's (see
temporal/slack_mention/patches.py): `patched(id)` -> once no execution started before
the change can be open, `workflow.deprecate_patch(id)` -> once those have closed too,
delete the branch and the constant. A task run is open as long as its run is (an
external runner may work for hours; a stale heartbeat ends it after
TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS), and long executions `continue_as_new`, so
"closed" means: no execution of that version is RUNNING in the namespace.

Timeouts, retry policies and activity implementations are not part of the replayed
command sequence and change without a patch; activity names and signal names
(constants.py) never change.
"""

# Guards the built-in agent's turn concluding the run itself: `answer_task_run_activity` is given
# `conclude` and, once the model answered, finishes the run and reports it in the same activity
# (the result reaches the thread without a workflow task and a local step in between); the
# workflow runs `conclude_task_run_activity` only when the turn did not conclude (it failed to
# report, or the gateway said quota). Protects: built-in histories of the first version (a local
# conclude after every answer; tests/temporal/histories/task_run_builtin_with_followup.json).
# (A replayed first-version turn gets its recorded result, without `concluded`, so it would take
# the conclude step even unguarded; the guard keeps the rule that a changed sequence is patched,
# and records which executions conclude in the turn.) Lifecycle: as the mention workflow's.
ANSWER_CONCLUDES_PATCH = "posthog-code-task-run-answer-concludes"
