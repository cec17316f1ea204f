"""docker-compose.yml cannot run here (no Docker engine), so check what can be checked:
it parses, every long-running service has a health check, and every command names a
real entry point of this project."""
import importlib
from pathlib import Path

import pytest
import yaml
from celery import Celery
from django.core.management import get_commands

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
SERVICES = COMPOSE["services"]
APP_SERVICES = {name: svc for name, svc in SERVICES.items() if svc.get("build") or svc.get("image", "").startswith("posthog-code-slack")}


def test_the_stack_has_every_part_of_the_design():
    assert {"postgres", "redis", "temporal", "temporal-ui", "web", "gateway", "temporal-worker", "celery-worker", "celery-beat"} <= set(SERVICES)


@pytest.mark.parametrize("name", sorted(set(SERVICES) - {"migrate"}))
def test_long_running_services_have_health_checks(name):
    assert SERVICES[name].get("healthcheck", {}).get("test"), f"{name} has no health check"


def check_entry_point(argv: list[str]) -> None:
    program = Path(argv[0]).name
    if program == "python" and argv[1] == "manage.py":
        assert argv[2] in get_commands(), f"no management command {argv[2]!r}"
    elif program in {"gunicorn", "uvicorn"}:
        module, _, attr = argv[1].partition(":")
        assert callable(getattr(importlib.import_module(module), attr))
    elif program == "celery":
        assert argv[1] == "-A"
        module = importlib.import_module(argv[2])
        assert isinstance(getattr(module, "celery_app"), Celery)
        assert argv[3] in {"worker", "beat"}
    else:
        raise AssertionError(f"unknown entry point {argv}")


@pytest.mark.parametrize("name", sorted(APP_SERVICES))
def test_each_app_service_command_is_a_real_entry_point(name):
    check_entry_point(APP_SERVICES[name]["command"])


def test_app_services_share_the_environment_contract():
    for name, svc in APP_SERVICES.items():
        env = svc["environment"]
        for var in ("DATABASE_URL", "REDIS_URL", "TEMPORAL_ADDRESS", "TEMPORAL_TASK_QUEUE", "SECRET_KEY", "SLACK_SIGNING_SECRET"):
            assert var in env, f"{name} lacks {var}"


def test_dockerfile_default_command_is_a_real_entry_point():
    cmd_line = next(line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD "))
    check_entry_point(yaml.safe_load(cmd_line.removeprefix("CMD ")))


def test_the_inbox_relay_runs_somewhere():
    """A worker started with --no-relay needs the relay's own service, or recorded mentions would wait for ever."""
    worker = SERVICES["temporal-worker"]["command"]
    if "--no-relay" in worker:
        assert SERVICES["inbox-relay"]["command"][-1] == "run_inbox_relay"
        assert "--no-relay" not in SERVICES["inbox-relay"]["command"]
    else:
        assert "inbox-relay" not in SERVICES  # one in the worker is enough; two would only race (harmlessly)
