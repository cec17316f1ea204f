"""`manage.py quota_limits list|set|clear`: scripts change limits; bad arguments fail loudly.

A change made here is seen by the very next `is_team_limited` call and leaves an audit
row under the label "manage.py quota_limits"; a bad argument changes nothing.
"""
from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timedelta, timezone as dt_timezone
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from products.billing.management.commands.quota_limits import ACTOR_LABEL, parse_until
from products.billing.models import QuotaLimitChange
from products.billing.quota_limiting import QuotaResource, get_quota_status, is_team_limited
from products.billing.services import Actor, set_quota_limit

pytestmark = [pytest.mark.django_db, pytest.mark.sqlite]  # also run on SQLite, the `make run` database

ROOT = Path(__file__).resolve().parents[3]


def run(*args) -> str:
    out = StringIO()
    call_command("quota_limits", *args, stdout=out)
    return out.getvalue()


def fails(*args) -> str:
    with pytest.raises(CommandError) as excinfo:
        run(*args)
    return str(excinfo.value)


@pytest.fixture
def project(accounts):
    return accounts.project(accounts.organization("Acme"), "Web")


# --- set / clear / list ---------------------------------------------------------------------


def test_set_by_id_limits_the_project_and_records_reason_and_actor(project):
    out = run("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", "+12h", "--reason", "unpaid")
    assert f"Limited project #{project.pk} (Web) for ai_credits until" in out
    assert is_team_limited(project.api_token, QuotaResource.AI_CREDITS)
    assert not is_team_limited(project.api_token, QuotaResource.EVENTS)

    change = QuotaLimitChange.objects.get()
    assert (change.project, change.resource, change.state) == (project, "ai_credits", "limited")
    assert (change.reason, change.actor_label, change.actor) == ("unpaid", ACTOR_LABEL, None)
    expected = timezone.now() + timedelta(hours=12)
    assert abs(change.new_limited_until - expected) < timedelta(seconds=5)
    assert change.old_limited_until is None
    assert f"audit entry #{change.pk}" in out


def test_set_by_api_token_with_an_iso_time(project):
    run("set", "--project", project.api_token, "--resource", "events", "--until", "2099-01-31T12:00:00+02:00")
    until = get_quota_status(project.api_token)[QuotaResource.EVENTS].limited_until
    assert until == datetime(2099, 1, 31, 10, 0, tzinfo=dt_timezone.utc)


def test_set_suspended_writes_the_grace_period_state(project):
    run("set", "--project", str(project.pk), "--resource", "events", "--until", "+1d", "--suspended")
    status = get_quota_status(project.api_token)[QuotaResource.EVENTS]
    assert status.suspended_until is not None and status.limited_until is None
    assert QuotaLimitChange.objects.get().state == "suspended"


def test_clear_lifts_the_limit_and_records_the_old_value(project):
    run("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", "+1d")
    out = run("clear", "--project", str(project.pk), "--resource", "ai_credits", "--reason", "paid")
    assert "Cleared the ai_credits limit" in out and "was until" in out
    assert not is_team_limited(project.api_token, QuotaResource.AI_CREDITS)
    lift = QuotaLimitChange.objects.first()
    assert (lift.new_limited_until, lift.reason, lift.actor_label) == (None, "paid", ACTOR_LABEL)
    assert lift.old_limited_until is not None


def test_list_shows_limited_and_suspended_projects(project, accounts):
    other = accounts.project(project.organization, "Mobile")
    quiet = accounts.project(project.organization, "Quiet")
    actor = Actor(label="test")
    until = timezone.now() + timedelta(days=1)
    set_quota_limit(project, QuotaResource.AI_CREDITS, until, reason="", actor=actor)
    set_quota_limit(project, QuotaResource.AI_CREDITS, until, reason="", actor=actor, state="suspended")
    set_quota_limit(other, QuotaResource.EVENTS, until, reason="", actor=actor)

    lines = run("list").splitlines()
    assert lines[0].split() == ["PROJECT_ID", "NAME", "API_TOKEN", "RESOURCE", "LIMITED_UNTIL", "SUSPENDED_UNTIL"]
    rows = [line.split() for line in lines[1:]]
    stamp = until.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert [str(project.pk), "Web", project.api_token, "ai_credits", stamp, stamp] in rows
    assert [str(other.pk), "Mobile", other.api_token, "events", stamp, "-"] in rows
    assert len(rows) == 2
    assert quiet.api_token not in "\n".join(lines)

    assert [r[1] for r in (line.split() for line in run("list", "--resource", "events").splitlines()[1:])] == ["Mobile"]
    by_project = run("list", "--project", project.api_token).splitlines()[1:]
    assert [r.split()[1] for r in by_project] == ["Web"]


def test_list_ignores_expired_limits_and_says_when_nothing_is_limited(project, redis_db):
    assert run("list").strip() == "No projects are limited."
    redis_db.zadd("@posthog/quota-limits/ai_credits", {project.api_token: int(timezone.now().timestamp()) - 60})
    assert run("list").strip() == "No projects are limited."


def test_a_change_is_seen_by_the_very_next_api_request(project, accounts):
    from rest_framework.test import APIClient

    user = accounts.user(project.organization)
    _, value = accounts.key(user, scopes=["llm_gateway:read"])
    url, auth = f"/api/projects/{project.pk}/quota_limits/", {"HTTP_AUTHORIZATION": f"Bearer {value}"}

    run("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", "+30m")
    assert APIClient().get(url, **auth).json()["limited"]["ai_credits"]["limited"] is True
    run("clear", "--project", str(project.pk), "--resource", "ai_credits")
    assert APIClient().get(url, **auth).json()["limited"]["ai_credits"]["limited"] is False


# --- --until forms --------------------------------------------------------------------------


NOW = datetime(2030, 1, 1, 12, 0, tzinfo=dt_timezone.utc)


@pytest.mark.parametrize(
    "text, expected",
    [
        ("+30m", NOW + timedelta(minutes=30)),
        ("+12h", NOW + timedelta(hours=12)),
        ("+7d", NOW + timedelta(days=7)),
        ("2030-02-01T00:00:00", datetime(2030, 2, 1, tzinfo=dt_timezone.utc)),
        ("2030-02-01 00:00", datetime(2030, 2, 1, tzinfo=dt_timezone.utc)),
        ("2030-02-01T00:00:00Z", datetime(2030, 2, 1, tzinfo=dt_timezone.utc)),
        ("2030-02-01T02:00:00+02:00", datetime(2030, 2, 1, tzinfo=dt_timezone.utc)),
        ("1896134400", datetime(2030, 2, 1, tzinfo=dt_timezone.utc)),
    ],
)
def test_until_accepts_iso_unix_and_relative_times(text, expected):
    assert parse_until(text, now=NOW) == expected


# --- errors: a message, a non-zero exit, and nothing changed ----------------------------------


def test_a_missing_subcommand_is_an_error():
    assert "required" in fails()


@pytest.mark.parametrize(
    "args, missing",
    [
        (["set", "--resource", "ai_credits", "--until", "+1d"], "--project"),
        (["set", "--project", "1", "--until", "+1d"], "--resource"),
        (["set", "--project", "1", "--resource", "ai_credits"], "--until"),
        (["clear", "--project", "1"], "--resource"),
    ],
)
def test_missing_arguments_are_named(args, missing):
    message = fails(*args)
    assert "required" in message and missing in message


def test_an_unknown_subcommand_is_an_error():
    assert "invalid choice" in fails("limit")


@pytest.mark.parametrize("sub", ["set", "clear", "list"])
def test_an_unknown_project_is_an_error(sub, project):
    extra = ["--until", "+1d"] if sub == "set" else []
    for ref, says in ((str(project.pk + 1000), "No project with id"), ("phc_nope", "No project with api token")):
        message = fails(sub, "--project", ref, "--resource", "ai_credits", *extra)
        assert says in message and ref in message
    assert not QuotaLimitChange.objects.exists()


@pytest.mark.parametrize("sub", ["set", "clear", "list"])
def test_an_unknown_resource_is_an_error_listing_the_valid_ones(sub, project):
    extra = ["--until", "+1d"] if sub == "set" else []
    message = fails(sub, "--project", str(project.pk), "--resource", "ai_credit", *extra)
    assert "Unknown resource 'ai_credit'" in message
    for resource in QuotaResource:
        assert resource.value in message
    assert not QuotaLimitChange.objects.exists()


@pytest.mark.parametrize("until", ["tomorrow", "+3x", "+d", "2030-13-01", "", "99999999999999999999"])
def test_an_unparsable_until_is_an_error(until, project):
    message = fails("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", until)
    assert "--until" in message
    assert not is_team_limited(project.api_token, QuotaResource.AI_CREDITS)
    assert not QuotaLimitChange.objects.exists()


@pytest.mark.parametrize("until", ["2001-01-01T00:00:00Z", "978307200", "+0m"])
def test_an_until_in_the_past_is_an_error(until, project):
    message = fails("set", "--project", str(project.pk), "--resource", "ai_credits", "--until", until)
    assert "in the past" in message
    assert not is_team_limited(project.api_token, QuotaResource.AI_CREDITS)
    assert not QuotaLimitChange.objects.exists()


def test_redis_down_is_an_error_and_records_nothing(project, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/3"
    assert "Redis is unreachable" in fails("set", "--project", str(project.pk), "--resource", "events", "--until", "+1d")
    assert "Redis is unreachable" in fails("list")
    assert not QuotaLimitChange.objects.exists()


# --- the real command line ------------------------------------------------------------------


def manage(*args) -> subprocess.CompletedProcess:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "posthog_app.settings_test"}
    return subprocess.run(
        [sys.executable, "manage.py", "quota_limits", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )


def test_the_cli_exits_non_zero_with_the_message_on_stderr():
    bad_resource = manage("set", "--project", "1", "--resource", "nope", "--until", "+1d")
    assert bad_resource.returncode == 1
    assert "Unknown resource 'nope'" in bad_resource.stderr and "ai_credits" in bad_resource.stderr
    assert bad_resource.stdout == ""

    bad_until = manage("set", "--project", "1", "--resource", "ai_credits", "--until", "soon")
    assert bad_until.returncode == 1 and "--until 'soon'" in bad_until.stderr

    no_subcommand = manage()
    assert no_subcommand.returncode == 2 and "required" in no_subcommand.stderr
