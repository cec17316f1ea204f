"""A run's lifecycle as the task-run workflow drives it (tasks facade): idempotent steps, a true
history, runners that go quiet failed as lost, follow-ups by cursor, and the credits a run spent."""
from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from products.billing.facade import CheckedUsageEvent, record_usage_events
from products.tasks import facade
from products.tasks.facade import (
    AGENT_BACKEND_BUILTIN,
    AGENT_BACKEND_EXTERNAL,
    FollowUpItem,
    InvalidRunInput,
    RunNotFound,
    RunSnapshot,
    add_followup,
    agent_backend_for,
    create_task,
    fail_if_stale,
    finish_run,
    followups_since,
    get_run,
    record_progress,
    run_credits,
    start_run,
)
from products.tasks.models import AgentSettings, Task, TaskRun, TaskRunEvent
from products.tasks.runs import claim_next_run
from products.tasks.tasks import fail_stale_task_runs

pytestmark = pytest.mark.django_db

Status = TaskRun.Status


def make_task(project, **extra) -> Task:
    kwargs = dict(project=project, title="Fix the flaky login test", description="thread: it fails on CI",
                  repository="acme/web", origin_product="slack", idempotency_key=None)
    kwargs.update(extra)
    return create_task(**kwargs).task


def external(project) -> None:
    AgentSettings.objects.update_or_create(project=project, defaults={"backend": AGENT_BACKEND_EXTERNAL})


def history(run_id: int) -> list[tuple[str, str]]:
    return list(TaskRunEvent.objects.filter(run_id=run_id).order_by("created_at", "id").values_list("kind", "text"))


# --- The backend is the project's, decided when the run is created ------------------------


def test_a_project_without_settings_uses_the_builtin_agent_and_the_admin_can_switch_it(accounts):
    project = accounts.project()
    assert agent_backend_for(project.pk) == AGENT_BACKEND_BUILTIN == "builtin"
    builtin_run = make_task(project).runs.get()
    external(project)
    assert agent_backend_for(project.pk) == AGENT_BACKEND_EXTERNAL == "external"
    external_run = make_task(project).runs.get()
    assert (builtin_run.backend, external_run.backend) == ("builtin", "external")
    # Switching back later never moves a run that already exists.
    AgentSettings.objects.filter(project=project).update(backend=AGENT_BACKEND_BUILTIN)
    assert get_run(external_run.pk).backend == "external"


def test_a_run_resumed_by_a_follow_up_takes_the_backend_the_project_has_now(accounts):
    project = accounts.project()
    task = make_task(project)
    first = task.runs.get()
    finish_run(first.pk, status="completed", summary="done")
    external(project)
    resumed = add_followup(task=task, text="and the logout test", author_slack_user_id="U1", author_name="Ada",
                           idempotency_key=None).run
    assert resumed.resume_from_id == first.pk and resumed.backend == "external"
    assert history(resumed.pk) == [("status", f"queued (resumes run #{first.pk})")]


# --- Snapshots ------------------------------------------------------------------------------


def test_get_run_returns_plain_values_and_a_missing_run_raises_run_not_found(accounts):
    project = accounts.project()
    task = make_task(project)
    run = task.runs.get()
    snapshot = get_run(run.pk)
    assert snapshot == RunSnapshot(
        run_id=run.pk, task_id=task.pk, project_id=project.pk, status="queued", backend="builtin",
        description="thread: it fails on CI", repository="acme/web", progress="", summary="", pr_url="", error="",
        error_kind="", is_terminal=False,
    )
    task.delete()
    with pytest.raises(RunNotFound):
        get_run(run.pk)
    for call in (start_run, lambda r: record_progress(r, "x"), lambda r: finish_run(r, status="completed"),
                 fail_if_stale, followups_since, run_credits):
        with pytest.raises(RunNotFound):
            call(run.pk)


# --- start / progress / finish ------------------------------------------------------------------


def test_start_run_moves_a_queued_builtin_run_once_and_is_idempotent(accounts):
    run = make_task(accounts.project()).runs.get()
    assert start_run(run.pk).status == "in_progress"
    assert start_run(run.pk).status == "in_progress"  # a retried activity changes nothing
    assert [k for k, t in history(run.pk) if k == "status"] == ["status", "status"]
    finish_run(run.pk, status="completed", summary="ok")
    assert start_run(run.pk).status == "completed"  # never reopens a finished run


def test_start_run_leaves_an_external_run_for_a_runner_to_claim(accounts):
    project = accounts.project()
    external(project)
    run = make_task(project).runs.get()
    assert start_run(run.pk).status == "queued"
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


def test_progress_lines_are_trimmed_kept_in_history_and_a_repeat_is_recorded_once(accounts):
    run = make_task(accounts.project()).runs.get()
    start_run(run.pk)
    assert record_progress(run.pk, "  Reading\nthe   code  ").progress == "Reading the code"
    record_progress(run.pk, "Reading the code")  # retried: nothing new
    long = record_progress(run.pk, "x" * 500).progress
    assert len(long) == 200 and long.endswith("\u2026")
    record_progress(run.pk, "   ")  # blank: nothing
    assert [t for k, t in history(run.pk) if k == "progress"] == ["Reading the code", long]
    assert TaskRun.objects.get(pk=run.pk).heartbeat_at is not None


@pytest.mark.sqlite  # also on the database `make run` uses
def test_finish_run_stores_the_result_and_the_first_finish_wins(accounts):
    run = make_task(accounts.project()).runs.get()
    start_run(run.pk)
    done = finish_run(run.pk, status="completed", summary="Fixed it.", pr_url="https://github.com/acme/web/pull/7")
    assert (done.status, done.summary, done.pr_url, done.is_terminal) == ("completed", "Fixed it.",
                                                                         "https://github.com/acme/web/pull/7", True)
    again = finish_run(run.pk, status="failed", error="late failure")
    assert again == done
    stored = TaskRun.objects.get(pk=run.pk)
    assert stored.finished_at is not None and stored.error == ""
    assert history(run.pk)[-2:] == [("status", "completed"), ("result", "Fixed it.\nhttps://github.com/acme/web/pull/7")]
    # Progress after the end changes nothing either.
    assert record_progress(run.pk, "still going?").progress == ""


def test_a_finish_that_must_wait_for_follow_ups_leaves_the_run_going(accounts):
    """Invariant: the agent's answer never ends a run while a follow-up it has not seen waits for an answer."""
    task = make_task(accounts.project())
    run = task.runs.get()
    start_run(run.pk)
    followup = add_followup(task=task, text="also the signup test", author_slack_user_id="U1", author_name="Ada",
                            idempotency_key=None).followup
    waiting = finish_run(run.pk, status="completed", summary="First answer.", unless_followups_after=0)
    assert (waiting.status, waiting.is_terminal, waiting.summary) == ("in_progress", False, "")
    done = finish_run(run.pk, status="completed", summary="Both answered.", unless_followups_after=followup.pk)
    assert (done.status, done.summary) == ("completed", "Both answered.")
    # A finished run stays as it was, follow-ups or not (a retried finish).
    assert finish_run(run.pk, status="completed", summary="late", unless_followups_after=0) == done


@pytest.mark.parametrize(
    "status, given_kind, kind",
    [("quota_limited", "", "quota_limited"), ("cancelled", "", "cancelled"), ("failed", "", "agent_error"),
     ("failed", "runner_error", "runner_error")],
)
def test_finish_run_names_the_kind_of_ending(accounts, status, given_kind, kind):
    run = make_task(accounts.project()).runs.get()
    snapshot = finish_run(run.pk, status=status, error="it broke" if status == "failed" else "", error_kind=given_kind)
    assert snapshot.status == status and snapshot.error_kind == kind and snapshot.is_terminal
    assert TaskRun.objects.get(pk=run.pk).is_terminal


def test_quota_limited_is_terminal_and_a_follow_up_resumes_it(accounts):
    task = make_task(accounts.project())
    run = task.runs.get()
    finish_run(run.pk, status="quota_limited")
    assert Status.QUOTA_LIMITED in TaskRun.TERMINAL_STATUSES
    result = add_followup(task=task, text="try again", author_slack_user_id="U1", author_name="", idempotency_key=None)
    assert result.resumed and result.run.resume_from_id == run.pk


@pytest.mark.parametrize("status", ["in_progress", "queued", "done", ""])
def test_finish_run_refuses_a_status_that_does_not_end_a_run(accounts, status):
    run = make_task(accounts.project()).runs.get()
    with pytest.raises(InvalidRunInput) as refused:
        finish_run(run.pk, status=status)
    assert refused.value.code == "invalid_status"
    assert TaskRun.objects.get(pk=run.pk).status == Status.QUEUED


@pytest.mark.parametrize("pr_url", ["github.com/acme/web/pull/1", "ftp://example.com/x", "javascript:alert(1)",
                                    "https://", "https://exa mple.com/", "https://example.com/" + "a" * 2000])
def test_finish_run_refuses_a_pr_url_that_is_not_an_http_url(accounts, pr_url):
    run = make_task(accounts.project()).runs.get()
    with pytest.raises(InvalidRunInput) as refused:
        finish_run(run.pk, status="completed", pr_url=pr_url)
    assert refused.value.code == "invalid_pr_url"
    assert not TaskRun.objects.get(pk=run.pk).is_terminal


# --- Runners that go quiet ----------------------------------------------------------------------


def claimed_run(project, runner="r1") -> TaskRun:
    external(project)
    make_task(project)
    return claim_next_run(project.pk, runner).run


def age(run: TaskRun, seconds: float) -> None:
    """Make the run's last heartbeat `seconds` old."""
    TaskRun.objects.filter(pk=run.pk).update(heartbeat_at=timezone.now() - timedelta(seconds=seconds))


def test_fail_if_stale_fails_an_external_run_without_heartbeat_for_the_timeout(accounts, settings):
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 120
    run = claimed_run(accounts.project())
    age(run, 100)
    assert fail_if_stale(run.pk).status == "in_progress"  # quiet, but not for long enough
    age(run, 121)
    lost = fail_if_stale(run.pk)
    assert (lost.status, lost.error_kind, lost.is_terminal) == ("failed", "runner_lost", True)
    assert "'r1' stopped sending heartbeats" in lost.error and "120 s" in lost.error
    assert history(run.pk)[-2:] == [("status", "failed (runner_lost)"), ("error", lost.error)]
    assert fail_if_stale(run.pk) == lost  # idempotent


def test_the_timeout_is_a_setting(accounts, settings):
    run = claimed_run(accounts.project())
    age(run, 30)
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 60
    assert fail_if_stale(run.pk).status == "in_progress"
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 20
    assert fail_if_stale(run.pk).status == "failed"


def test_fail_if_stale_never_touches_builtin_queued_or_finished_runs(accounts):
    project = accounts.project()
    builtin = make_task(project).runs.get()
    start_run(builtin.pk)
    age(builtin, 10_000)
    done = claimed_run(project)
    finish_run(done.pk, status="completed", summary="ok")
    queued = make_task(project).runs.get()  # external, never claimed
    TaskRun.objects.filter(pk=queued.pk).update(created_at=timezone.now() - timedelta(days=1))
    age(done, 10_000)
    for run, status in ((builtin, "in_progress"), (queued, "queued"), (done, "completed")):
        assert fail_if_stale(run.pk).status == status


def test_the_minute_sweep_fails_every_quiet_external_run_and_only_those(accounts, settings):
    settings.TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = 120
    project = accounts.project()
    quiet = claimed_run(project, "quiet")
    alive = claimed_run(project, "alive")
    age(quiet, 500)
    age(alive, 5)
    builtin_project = accounts.project()
    builtin = make_task(builtin_project).runs.get()
    start_run(builtin.pk)
    age(builtin, 500)

    assert fail_stale_task_runs() == [quiet.pk]  # the Celery beat task, run in process

    assert TaskRun.objects.get(pk=quiet.pk).error_kind == "runner_lost"
    assert TaskRun.objects.get(pk=alive.pk).status == Status.IN_PROGRESS
    assert TaskRun.objects.get(pk=builtin.pk).status == Status.IN_PROGRESS
    assert fail_stale_task_runs() == []  # nothing left to fail


def test_the_sweep_is_registered_every_minute_with_celery_beat(settings):
    from posthog_app.celery import app

    entry = settings.CELERY_BEAT_SCHEDULE["fail-stale-task-runs"]
    assert entry["task"] == "products.tasks.tasks.fail_stale_task_runs"
    assert entry["schedule"].remaining_estimate(timezone.now()) <= timedelta(minutes=1)
    app.loader.import_default_modules()
    assert "products.tasks.tasks.fail_stale_task_runs" in app.tasks


# --- Follow-ups by cursor -----------------------------------------------------------------------


def test_followups_since_a_cursor_returns_only_later_ones_of_that_run(accounts):
    task = make_task(accounts.project())
    run = task.runs.get()
    first = add_followup(task=task, text="also the signup test", author_slack_user_id="U1", author_name="Ada",
                         idempotency_key=None).followup
    second = add_followup(task=task, text="and logout", author_slack_user_id="U2", author_name="",
                          idempotency_key=None).followup
    other_task = make_task(task.project)
    add_followup(task=other_task, text="not this one", author_slack_user_id="U3", author_name="",
                 idempotency_key=None)

    assert followups_since(run.pk) == [FollowUpItem(first.pk, "also the signup test", "Ada"),
                                       FollowUpItem(second.pk, "and logout", "U2")]
    assert followups_since(run.pk, cursor=first.pk) == [FollowUpItem(second.pk, "and logout", "U2")]
    assert followups_since(run.pk, cursor=second.pk) == []


# --- Credits a run spent --------------------------------------------------------------------------


def usage(project, credits_usd: str, run_id: int | None, billable: bool = True, product: str = "slack_app"):
    properties = {"$ai_product": product, "$ai_billable": billable}
    if run_id is not None:
        properties["$ai_run_id"] = run_id
    return CheckedUsageEvent(uuid=uuid.uuid4(), timestamp=timezone.now(), product=product, billable=billable,
                             cost_usd=Decimal(credits_usd), properties=properties)


@pytest.mark.sqlite  # also on the database `make run` uses
def test_run_credits_sums_the_billable_usage_events_carrying_the_runs_id(accounts, settings):
    settings.AI_CREDITS_MARKUP = "0"
    project = accounts.project()
    task = make_task(project)
    run = task.runs.get()
    other_run = make_task(project).runs.get()
    record_usage_events(project, [
        usage(project, "0.12", run.pk),       # 12 credits
        usage(project, "0.30", run.pk),       # 30 credits
        usage(project, "0.50", other_run.pk),  # another run's
        usage(project, "0.70", None),          # no run (e.g. the repository router)
        usage(project, "0.90", run.pk, billable=False, product="posthog_code"),  # not billable: not spent credits
    ])
    elsewhere = accounts.project()
    record_usage_events(elsewhere, [usage(elsewhere, "1.00", run.pk)])  # same id, another project's
    assert run_credits(run.pk) == Decimal(42)
    assert run_credits(other_run.pk) == Decimal(50)
    assert run_credits(make_task(project).runs.get().pk) == Decimal(0)
    assert isinstance(run_credits(run.pk), Decimal)


def test_run_credits_counts_what_the_real_gateway_metered_for_the_runs_token(gateway_server, fake_upstream, accounts):
    """The credits shown for a run are the ones the gateway recorded for calls made with that run's token."""
    import httpx

    from products.llm_gateway.facade import mint_server_token

    fake_upstream.defaults.input_tokens = 1_000_000  # large enough to cost whole credits
    project = accounts.project()
    run = make_task(project).runs.get()
    other = make_task(project).runs.get()

    def call(run_id: int) -> None:
        response = httpx.post(
            gateway_server.url("slack_app", "messages"), timeout=30,
            headers={"x-api-key": mint_server_token(project.pk, "slack_app", run_id=run_id)},
            json={"model": "claude-sonnet-4-5", "max_tokens": 64, "messages": [{"role": "user", "content": "Fix it"}]},
        )
        assert response.status_code == 200, response.text

    call(run.pk)
    call(run.pk)
    call(other.pk)
    gateway_server.wait_for_usage()

    from products.billing.models import UsageEvent

    per_call = UsageEvent.objects.filter(project=project).values_list("credits", flat=True)
    assert len(per_call) == 3 and all(c > 0 for c in per_call)
    one_call = per_call[0]
    assert run_credits(run.pk) == 2 * one_call
    assert run_credits(other.pk) == one_call


def test_the_facade_exports_the_contract():
    for name in ("get_run", "start_run", "record_progress", "finish_run", "fail_if_stale", "followups_since",
                 "run_credits", "agent_backend_for", "RunSnapshot", "FollowUpItem", "AGENT_BACKEND_BUILTIN",
                 "AGENT_BACKEND_EXTERNAL", "RunNotFound"):
        assert name in facade.__all__ and hasattr(facade, name), name
