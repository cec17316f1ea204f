"""GET /tasks/<id>/: the Slack "Follow along" link shows the task to its organization's members, and to no one else."""
from __future__ import annotations

import pytest
from django.test import Client

from products.tasks.models import TaskRun
from products.tasks.services import add_followup, create_task, update_run_status

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup(accounts):
    org = accounts.organization(name="Acme")
    project = accounts.project(org, name="Web app")
    member = accounts.user(org)
    task = create_task(
        project=project, title="Fix the flaky login test", description="It fails on CI\nabout once a day.",
        repository="acme/web", origin_product="slack", idempotency_key=None,
    ).task
    return project, member, task


def page(task_id) -> str:
    return f"/tasks/{task_id}/"


def logged_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_member_sees_the_task_its_runs_and_follow_ups(setup):
    project, member, task = setup
    first_run = task.runs.get()
    add_followup(task=task, text="Also check the signup test", author_slack_user_id="U1", author_name="Ada",
                 idempotency_key=None)
    update_run_status(first_run, TaskRun.Status.IN_PROGRESS)
    update_run_status(first_run, TaskRun.Status.COMPLETED)
    resumed = add_followup(task=task, text="Now the <b>logout</b> test too", author_slack_user_id="U2",
                           author_name="", idempotency_key=None).run

    response = logged_in(member).get(page(task.pk))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    html = response.content.decode()
    for expected in ["Fix the flaky login test", "acme/web", "Web app", "Acme", "slack", "It fails on CI",
                     task.created_at.strftime("%Y-%m-%d"), f"Run #{first_run.pk}", "completed",
                     f"Run #{resumed.pk}", "queued", f"resumes <a href=\"#run-{first_run.pk}\">run #{first_run.pk}</a>",
                     "Also check the signup test", "Ada", "U2"]:
        assert expected in html, expected
    # Follow-ups are shown under the run they were appended to, oldest run first.
    assert html.index(f"Run #{first_run.pk}") < html.index("Also check the signup test") < html.index(f"Run #{resumed.pk}")
    assert html.index(f"Run #{resumed.pk}") < html.index("logout")
    # Slack text is escaped, never rendered as markup.
    assert "Now the &lt;b&gt;logout&lt;/b&gt; test too" in html and "<b>logout</b>" not in html


def test_anonymous_visitor_is_sent_to_log_in_and_back(setup):
    _, _, task = setup
    response = Client().get(page(task.pk))
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/tasks/{task.pk}/"


def test_anonymous_visitor_of_a_missing_task_is_also_sent_to_log_in(setup):
    # Before logging in, nothing distinguishes a real task from a missing one.
    response = Client().get(page(999999))
    assert response.status_code == 302 and response["Location"] == "/login/?next=/tasks/999999/"


def test_non_member_gets_the_same_404_as_for_a_missing_task(setup, accounts):
    _, _, task = setup
    outsider = accounts.user(accounts.organization())
    client = logged_in(outsider)
    foreign = client.get(page(task.pk))
    missing = client.get(page(999999))
    assert foreign.status_code == missing.status_code == 404
    assert "Fix the flaky login test" not in foreign.content.decode()


def test_user_without_any_organization_gets_404(setup, accounts):
    _, _, task = setup
    assert logged_in(accounts.user()).get(page(task.pk)).status_code == 404


def test_member_of_another_project_in_the_same_organization_sees_it(setup, accounts):
    # Membership is per organization: every project of the organization is visible.
    project, _, task = setup
    colleague = accounts.user(project.organization)
    assert logged_in(colleague).get(page(task.pk)).status_code == 200


def test_head_is_allowed_and_writes_are_not(setup):
    _, member, task = setup
    client = logged_in(member)
    assert client.head(page(task.pk)).status_code == 200
    for method in ("post", "put", "patch", "delete"):
        assert getattr(client, method)(page(task.pk)).status_code == 405, method


def test_the_link_posted_to_slack_opens_this_page(setup):
    # The Slack reply and the API's `url` must point at the page that exists.
    from products.slack_app.messages import on_it_text
    from products.tasks.services import task_page_url

    _, member, task = setup
    link = on_it_text(task.pk).rsplit(" ", 1)[-1]
    assert link == task_page_url(task.pk) == f"http://testserver/tasks/{task.pk}/"
    response = logged_in(member).get(link.removeprefix("http://testserver"))
    assert response.status_code == 200 and "Fix the flaky login test" in response.content.decode()


def test_a_member_who_is_not_staff_signs_in_on_the_login_page_and_reaches_the_task(setup):
    """The "On it" link works for ordinary members: sign in through the product's page, not force_login."""
    from tests.posthog_app.signin import sign_in

    _, member, task = setup
    assert not member.is_staff
    client = Client(enforce_csrf_checks=True)
    to_login = client.get(page(task.pk))
    assert to_login.status_code == 302 and to_login["Location"] == f"/login/?next=/tasks/{task.pk}/"

    signed_in = sign_in(client, member.username, "pw", next_url=page(task.pk))
    assert signed_in.status_code == 302 and signed_in["Location"] == page(task.pk)
    response = client.get(signed_in["Location"])
    assert response.status_code == 200
    assert "Fix the flaky login test" in response.content.decode()


def test_a_wrong_password_on_the_login_page_says_so_and_opens_nothing(setup):
    from tests.posthog_app.signin import sign_in

    _, member, task = setup
    client = Client(enforce_csrf_checks=True)
    response = sign_in(client, member.username, "not-the-password", next_url=page(task.pk))
    assert response.status_code == 200
    assert "Please enter a correct username and password" in response.content.decode()
    assert client.get(page(task.pk)).status_code == 302  # still not signed in


@pytest.mark.sqlite  # also on the database `make run` uses
def test_the_page_shows_each_runs_history_progress_result_error_and_credits(setup, settings):
    """What a member opens from Slack tells the whole story of each run: when it moved, what it said, what it cost."""
    import re
    import uuid
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from products.billing.facade import CheckedUsageEvent, record_usage_events
    from products.tasks.facade import finish_run, record_progress, start_run
    from products.tasks.models import AgentSettings
    from products.tasks.runs import claim_next_run, fail_if_stale
    from tests.posthog_app.signin import sign_in

    settings.AI_CREDITS_MARKUP = "0"
    project, member, task = setup
    first = task.runs.get()
    start_run(first.pk)
    record_progress(first.pk, "Reading the login test")
    record_progress(first.pk, "Writing a <fix>")
    finish_run(first.pk, status="completed", summary="Fixed the race in the login test.",
               pr_url="https://github.com/acme/web/pull/42")
    record_usage_events(project, [
        CheckedUsageEvent(uuid=uuid.uuid4(), timestamp=timezone.now(), product="slack_app", billable=True,
                          cost_usd=Decimal(cost), properties={"$ai_run_id": first.pk})
        for cost in ("0.12", "0.25")
    ])
    AgentSettings.objects.create(project=project, backend="external")
    second = add_followup(task=task, text="Now the logout test", author_slack_user_id="U1", author_name="Ada",
                          idempotency_key=None).run
    claim_next_run(project.pk, "sandbox-7")
    TaskRun.objects.filter(pk=second.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    fail_if_stale(second.pk)

    client = Client(enforce_csrf_checks=True)
    assert sign_in(client, member.username, "pw", next_url=page(task.pk)).status_code == 302
    response = client.get(page(task.pk))

    assert response.status_code == 200
    html = response.content.decode()
    first_section = html[html.index(f'id="run-{first.pk}"'):html.index(f'id="run-{second.pk}"')]
    second_section = html[html.index(f'id="run-{second.pk}"'):]
    # Run 1: built-in, its history in order with times, its result with the PR link, 37 credits.
    assert "built-in agent" in first_section
    history = re.findall(r'<li class="event-(\w+)"><time datetime="([^"]+)">', first_section)
    assert [kind for kind, _ in history] == ["status", "status", "progress", "progress", "status", "result"]
    assert all(stamp.startswith(str(timezone.now().year)) for _, stamp in history)
    for text in ["queued", "in progress", "Reading the login test", "Writing a &lt;fix&gt;", "completed",
                 "Fixed the race in the login test.",
                 '<a href="https://github.com/acme/web/pull/42" rel="noopener noreferrer">']:
        assert text in first_section, text
    assert first_section.index("Reading the login test") < first_section.index("Writing a &lt;fix&gt;")
    assert "<strong>37</strong> AI credits" in first_section
    assert "<fix>" not in html  # runner text is escaped
    # Run 2: external, claimed by sandbox-7, failed because the runner went quiet, nothing spent.
    for text in ["external runner <code>sandbox-7</code>", "claimed by sandbox-7", "failed (runner_lost)",
                 "Error <span class=\"meta\">(runner_lost)</span>", "stopped sending heartbeats",
                 "<strong>0</strong> AI credits", "Now the logout test"]:
        assert text in second_section, text
    assert "Fixed the race" not in second_section
