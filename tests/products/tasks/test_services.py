"""Task services: retried callers never create a second task or append a follow-up twice; finished runs are resumed."""
from __future__ import annotations

import threading

import pytest
from django.db import connection

from products.tasks.models import Task, TaskFollowUp, TaskRun
from products.tasks.services import add_followup, create_task, current_run

pytestmark = pytest.mark.django_db


def make(project, key: str | None = "wf-1", **overrides):
    kwargs = dict(project=project, title="Fix the flaky login test", description="thread context", repository="acme/web",
                  origin_product="slack", idempotency_key=key)
    kwargs.update(overrides)
    return create_task(**kwargs)


def test_create_task_makes_a_task_with_one_queued_run(accounts):
    project = accounts.project()
    created = make(project)
    assert created.created
    assert created.task.repository == "acme/web" and created.task.origin_product == "slack"
    assert list(created.task.runs.all()) == [created.run]
    assert created.run.status == TaskRun.Status.QUEUED and not created.run.is_terminal


def test_create_task_is_idempotent_on_its_key(accounts):
    project = accounts.project()
    first = make(project)
    again = make(project, title="something else")
    assert not again.created
    assert again.task.pk == first.task.pk and again.run.pk == first.run.pk
    assert Task.objects.count() == 1 and TaskRun.objects.count() == 1


def test_create_task_without_key_always_creates_and_without_repository_is_blank(accounts):
    project = accounts.project()
    a = make(project, key=None, repository=None)
    b = make(project, key=None)
    assert a.task.pk != b.task.pk
    assert a.task.repository == ""


@pytest.mark.django_db(transaction=True)
def test_concurrent_create_task_with_one_key_makes_one_task(accounts):
    project = accounts.project()
    results = []
    barrier = threading.Barrier(6)

    def worker():
        barrier.wait()
        try:
            results.append(make(project, key="wf-race"))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(results) == 6
    assert len({r.task.pk for r in results}) == 1
    assert sum(r.created for r in results) == 1
    assert Task.objects.filter(idempotency_key="wf-race").count() == 1
    assert TaskRun.objects.count() == 1


def test_followup_appends_to_the_current_run(accounts):
    created = make(accounts.project())
    result = add_followup(task=created.task, text="also the signup test", author_slack_user_id="U2", author_name="bob", idempotency_key="wf-2")
    assert result.created and not result.resumed
    assert result.run.pk == created.run.pk
    assert list(created.run.followups.values_list("text", "author_name")) == [("also the signup test", "bob")]


def test_followup_is_idempotent_on_its_key(accounts):
    created = make(accounts.project())
    first = add_followup(task=created.task, text="more", author_slack_user_id="U2", author_name="", idempotency_key="wf-2")
    again = add_followup(task=created.task, text="more", author_slack_user_id="U2", author_name="", idempotency_key="wf-2")
    assert not again.created and again.followup.pk == first.followup.pk
    assert TaskFollowUp.objects.count() == 1


@pytest.mark.parametrize("status", [TaskRun.Status.COMPLETED, TaskRun.Status.FAILED, TaskRun.Status.CANCELLED])
def test_followup_to_a_finished_run_starts_a_new_run_resuming_it(accounts, status):
    created = make(accounts.project())
    created.run.status = status
    created.run.save()
    assert created.run.is_terminal
    result = add_followup(task=created.task, text="one more thing", author_slack_user_id="U1", author_name="", idempotency_key="wf-3")
    assert result.resumed and result.created
    assert result.run.pk != created.run.pk
    assert result.run.resume_from_id == created.run.pk
    assert result.run.status == TaskRun.Status.QUEUED
    assert current_run(created.task).pk == result.run.pk
    assert created.run.followups.count() == 0 and result.run.followups.count() == 1
    # A retry of the same follow-up neither appends again nor makes a third run.
    again = add_followup(task=created.task, text="one more thing", author_slack_user_id="U1", author_name="", idempotency_key="wf-3")
    assert not again.created and again.run.pk == result.run.pk
    assert TaskRun.objects.filter(task=created.task).count() == 2


def test_followup_to_a_running_run_does_not_resume(accounts):
    created = make(accounts.project())
    created.run.status = TaskRun.Status.IN_PROGRESS
    created.run.save()
    result = add_followup(task=created.task, text="x", author_slack_user_id="U1", author_name="", idempotency_key=None)
    assert not result.resumed and result.run.pk == created.run.pk
