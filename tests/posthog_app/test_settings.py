"""Settings refuse to run without DEBUG on a guessable SECRET_KEY, and work behind a tunnel.

SECRET_KEY signs sessions and derives the Slack token encryption key when
SLACK_TOKEN_ENCRYPTION_KEY is unset: with a published default (docker-compose used to
default it to `change-me`) anyone could forge a session. Each case runs in a fresh
process, because settings are read once, at import.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GOOD_KEY = "k3y-" + "aZ9_" * 15  # 64 characters, not all alike

PRINT = (
    "import json; from posthog_app import settings as s; "
    "print(json.dumps({'DEBUG': s.DEBUG, 'SECRET_KEY': s.SECRET_KEY, 'ALLOWED_HOSTS': s.ALLOWED_HOSTS, "
    "'CSRF_TRUSTED_ORIGINS': s.CSRF_TRUSTED_ORIGINS, 'LOGIN_URL': s.LOGIN_URL, 'BILLING_URL': s.BILLING_URL, "
    "'DATABASE': str(s.DATABASES['default']['NAME'])}))"
)


def load_settings(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "posthog_app.settings", "DEVDATA_DIR": str(tmp_path / "devdata")}
    if "DATABASE_URL" not in env:
        base["DATABASE_URL"] = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    base.update({k: v for k, v in env.items() if v is not None})  # None: leave the variable unset
    return subprocess.run([sys.executable, "-c", PRINT], env=base, cwd=ROOT, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(
    "secret_key",
    [None, "", "change-me", "dev-insecure-secret-key-change-me-in-production", "django-insecure-abc", "short-but-random-9f8e7d", "a" * 64],
    ids=["unset", "empty", "compose-default", "settings-default", "django-insecure", "too-short", "one-character"],
)
def test_without_debug_a_missing_default_or_weak_secret_key_stops_the_process(tmp_path, secret_key):
    run = load_settings(tmp_path, DEBUG="0", SECRET_KEY=secret_key)
    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and "SECRET_KEY" in run.stderr
    if secret_key:
        assert secret_key not in run.stderr  # the error never echoes the key


def test_without_debug_a_long_random_secret_key_is_used(tmp_path):
    run = load_settings(tmp_path, DEBUG="0", SECRET_KEY=GOOD_KEY)
    assert run.returncode == 0, run.stderr
    values = json.loads(run.stdout)
    assert values["DEBUG"] is False and values["SECRET_KEY"] == GOOD_KEY


def test_with_debug_the_development_default_still_works(tmp_path):
    run = load_settings(tmp_path, DEBUG="1")
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout)["SECRET_KEY"] == "dev-insecure-secret-key-change-me-in-production"


def test_the_key_make_run_generated_is_used_by_manage_py_in_another_terminal(tmp_path):
    """DATABASE_URL and SECRET_KEY unset: make run's SQLite file and its generated key, DEBUG or not."""
    devdata = tmp_path / "devdata"
    devdata.mkdir()
    (devdata / "secret_key").write_text(GOOD_KEY + "\n")
    run = load_settings(tmp_path, DEBUG="0", DATABASE_URL=None)
    assert run.returncode == 0, run.stderr
    values = json.loads(run.stdout)
    assert values["SECRET_KEY"] == GOOD_KEY and values["DATABASE"] == str(devdata / "db.sqlite3")
    # With a database of its own (production, tests) the file is never read.
    assert load_settings(tmp_path, DEBUG="0").returncode != 0


def test_behind_a_tunnel_site_urls_host_is_allowed_and_its_origin_trusted(tmp_path):
    run = load_settings(tmp_path, DEBUG="0", SECRET_KEY=GOOD_KEY, SITE_URL="https://abc123.tunnel.example/")
    values = json.loads(run.stdout)
    assert {"abc123.tunnel.example", "127.0.0.1", "localhost"} <= set(values["ALLOWED_HOSTS"])
    assert values["CSRF_TRUSTED_ORIGINS"] == ["https://abc123.tunnel.example"]
    assert values["BILLING_URL"] == "https://abc123.tunnel.example/billing/"
    assert values["LOGIN_URL"] == "login"
    run = load_settings(tmp_path, DEBUG="0", SECRET_KEY=GOOD_KEY, ALLOWED_HOSTS="code.example.com")
    assert "code.example.com" in json.loads(run.stdout)["ALLOWED_HOSTS"]


def test_docker_compose_requires_a_secret_key_and_has_no_default():
    compose = (ROOT / "docker-compose.yml").read_text()
    assert "change-me" not in compose
    services = yaml.safe_load(compose)["services"]
    for name in ("web", "temporal-worker", "celery-worker", "celery-beat", "migrate"):
        value = services[name]["environment"]["SECRET_KEY"]
        assert value.startswith("${SECRET_KEY:?"), f"{name}: SECRET_KEY must be required, not {value!r}"
        assert services[name]["environment"]["DEBUG"] == "0"


PRINT_PREPARE = (
    "import json; from posthog_app import settings as s; "
    "print(json.dumps(s.DATABASES['default'].get('OPTIONS', {}).get('prepare_threshold', 'unset')))"
)


@pytest.mark.parametrize(("value", "expected"), [(None, 5), ("0", 0), ("12", 12), ("", "unset"), ("off", "unset")])
def test_database_prepare_threshold_reaches_postgresql_connections(tmp_path, value, expected):
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "posthog_app.settings", "DEBUG": "1",
           "DEVDATA_DIR": str(tmp_path), "DATABASE_URL": "postgres://postgres@127.0.0.1:5432/postgres"}
    if value is not None:
        env["DATABASE_PREPARE_THRESHOLD"] = value
    run = subprocess.run([sys.executable, "-c", PRINT_PREPARE], env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout) == expected


@pytest.mark.parametrize("value", ["five", "-1", "2.5"])
def test_a_database_prepare_threshold_that_is_not_a_count_stops_the_process(tmp_path, value):
    run = load_settings(tmp_path, DEBUG="1", DATABASE_PREPARE_THRESHOLD=value)
    assert run.returncode != 0
    assert "ImproperlyConfigured" in run.stderr and "DATABASE_PREPARE_THRESHOLD" in run.stderr
