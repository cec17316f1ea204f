"""Settings, read from the environment (12-factor) with safe development defaults.

Every variable named in DESIGN.md is read here and nowhere else; the rest of the
code reads `django.conf.settings`.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    return value.strip().lower() in {"1", "true", "yes", "on"}


def env_list(name: str, default: str) -> list[str]:
    return [item.strip() for item in os.environ.get(name, default).split(",") if item.strip()]


DEBUG = env_bool("DEBUG", True)
# Where `make run` keeps its state (SQLite database, Temporal's database, generated secret key).
DEVDATA_DIR = Path(os.environ.get("DEVDATA_DIR") or BASE_DIR / ".devdata")

# SECRET_KEY signs sessions and CSRF tokens, and (when SLACK_TOKEN_ENCRYPTION_KEY is unset)
# derives the key that encrypts Slack bot tokens: a guessable one lets anyone forge both.
# Unset, it is the key `make run` generated in DEVDATA_DIR/secret_key (when DATABASE_URL is unset
# too, i.e. the embedded default, so `manage.py` in another terminal shares make run's key),
# else a development default that only DEBUG accepts.
DEV_SECRET_KEY_PATH = DEVDATA_DIR / "secret_key"
DEV_SECRET_KEY = "dev-insecure-secret-key-change-me-in-production"
# Values that have been published (here, in docker-compose.yml, in examples): never accepted without DEBUG.
KNOWN_DEFAULT_SECRET_KEYS = frozenset({DEV_SECRET_KEY, "change-me", "changeme", "secret", "django-insecure"})
MIN_SECRET_KEY_LENGTH = 50  # what Django's own deployment check (security.W009) asks for


def _secret_key() -> str:
    value = os.environ.get("SECRET_KEY", "").strip()
    if not value and not os.environ.get("DATABASE_URL") and DEV_SECRET_KEY_PATH.is_file():
        value = DEV_SECRET_KEY_PATH.read_text().strip()
    if DEBUG:
        return value or DEV_SECRET_KEY
    if not value:
        problem = "SECRET_KEY is not set"
    elif value in KNOWN_DEFAULT_SECRET_KEYS or value.startswith("django-insecure"):
        problem = "SECRET_KEY is a published default"
    elif len(value) < MIN_SECRET_KEY_LENGTH or len(set(value)) < 5:
        problem = f"SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters (or nearly all one character)"
    else:
        return value
    raise ImproperlyConfigured(
        f"{problem}, and DEBUG is off: sessions, CSRF tokens and the Slack token encryption key would be "
        "forgeable. Set SECRET_KEY to a long random value, e.g. the output of "
        "`python -c 'import secrets; print(secrets.token_urlsafe(50))'`."
    )


SECRET_KEY = _secret_key()

# Links posted to Slack point here; behind a tunnel (ngrok, cloudflared...) set it to the tunnel's URL.
SITE_URL = os.environ.get("SITE_URL", "http://127.0.0.1:8000").rstrip("/")
_SITE = urlsplit(SITE_URL)
# The host of SITE_URL is always allowed, so `SITE_URL=https://x.example.app make run` works behind
# a tunnel with DEBUG off; ALLOWED_HOSTS adds more (comma-separated).
ALLOWED_HOSTS = sorted({*env_list("ALLOWED_HOSTS", "127.0.0.1,localhost,testserver"), *([_SITE.hostname] if _SITE.hostname else [])})
# A tunnel ends TLS before runserver, so a form posted from https://<tunnel> must be trusted by origin.
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", f"{_SITE.scheme}://{_SITE.netloc}" if _SITE.netloc else "")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "products.accounts",
    "products.billing",
    "products.slack_app",
    "products.tasks",
    "products.llm_gateway",
    "products.agent",
    "temporal",
    # Last: the project's own pages (home, login) and commands that span products (bootstrap_demo).
    "posthog_app",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "posthog_app.urls"
WSGI_APPLICATION = "posthog_app.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Production, docker-compose and the tests set DATABASE_URL to PostgreSQL. Unset, it is
# the embedded default of `make run` (a SQLite file under DEVDATA_DIR, default .devdata/), so that
# `.venv/bin/python manage.py ...` in another terminal sees the same data as `make run`.
DEV_SQLITE_PATH = DEVDATA_DIR / "db.sqlite3"
DATABASE_URL = os.environ.get("DATABASE_URL") or f"sqlite:///{DEV_SQLITE_PATH}"
if DATABASE_URL.startswith("sqlite:") and "DATABASE_URL" not in os.environ:
    DEV_SQLITE_PATH.parent.mkdir(exist_ok=True)
# PostgreSQL: give up connecting after this many seconds (libpq's connect_timeout; 2 is its
# smallest), so a database that does not answer makes the Slack webhook answer 503 well inside
# Slack's 3 seconds (Slack delivers again) instead of hanging a server thread. A
# connect_timeout given in DATABASE_URL's query string wins.
DATABASE_CONNECT_TIMEOUT = int(os.environ.get("DATABASE_CONNECT_TIMEOUT", "2"))
# PostgreSQL prepared statements, for the statements sent apart from their parameters (server-side
# binding): only the Slack inbox's insert (products/slack_app/inbox.py), the webhook's one statement;
# Django's own queries are bound client-side and never prepared. psycopg prepares a statement on its
# connection once it has run this many times there. Measured (backend CPU per recorded mention):
# planning was about half of it, 0.42 -> 0.22 ms for a lone row. Empty or "off": never prepare
# (behind a pooler that cannot keep prepared statements: PgBouncer in transaction mode before 1.21).
DATABASE_PREPARE_THRESHOLD: int | None = None
_prepare_threshold = os.environ.get("DATABASE_PREPARE_THRESHOLD", "5").strip()
if _prepare_threshold.isascii() and _prepare_threshold.isdigit():
    DATABASE_PREPARE_THRESHOLD = int(_prepare_threshold)
elif _prepare_threshold.lower() not in {"", "off"}:
    raise ImproperlyConfigured(
        f"DATABASE_PREPARE_THRESHOLD must be a whole number of executions, or empty / 'off', not {_prepare_threshold!r}"
    )


def database(url: str, conn_max_age: int) -> dict:
    """Django's settings for the database at `url`, with the connection options above (settings_test uses it too)."""
    config = dj_database_url.parse(url, conn_max_age=conn_max_age)
    if config["ENGINE"] == "django.db.backends.postgresql":
        options = config.setdefault("OPTIONS", {})
        options.setdefault("connect_timeout", DATABASE_CONNECT_TIMEOUT)
        if DATABASE_PREPARE_THRESHOLD is not None:
            options.setdefault("prepare_threshold", DATABASE_PREPARE_THRESHOLD)
    return config


DATABASES = {"default": database(DATABASE_URL, conn_max_age=int(os.environ.get("DATABASE_CONN_MAX_AGE", "60")))}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# SQLite (make run only) ignores covering-index columns; that is fine for development.
SILENCED_SYSTEM_CHECKS = ["models.W040"] if DATABASES["default"]["ENGINE"].endswith("sqlite3") else []

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

TEMPORAL_ADDRESS = os.environ.get("TEMPORAL_ADDRESS", "127.0.0.1:7233")
TEMPORAL_NAMESPACE = os.environ.get("TEMPORAL_NAMESPACE", "default")
TEMPORAL_TASK_QUEUE = os.environ.get("TEMPORAL_TASK_QUEUE", "slack-app")
# Threads (= activities at once) of one worker. The built-in agent's turn holds one for the
# whole model call (seconds to minutes) but no database connection meanwhile, so this bounds
# how many tasks one worker works at once, not the database sessions it holds.
TEMPORAL_ACTIVITY_THREADS = int(os.environ.get("TEMPORAL_ACTIVITY_THREADS", "64"))

SLACK_SIGNING_SECRET = os.environ.get("SLACK_SIGNING_SECRET", "")
# "Add to Slack" (OAuth v2) and "Sign in with Slack" (OpenID Connect): the Slack app's credentials
# (Basic Information page). Unset, /slack/install and /slack/signin say they are not configured.
# Redirect URIs: SITE_URL/slack/oauth/callback and SITE_URL/slack/signin/callback.
SLACK_CLIENT_ID = os.environ.get("SLACK_CLIENT_ID", "")
SLACK_CLIENT_SECRET = os.environ.get("SLACK_CLIENT_SECRET", "")
# Where browsers are sent to authorize; tests point them at the Slack stand-in.
SLACK_OAUTH_AUTHORIZE_URL = os.environ.get("SLACK_OAUTH_AUTHORIZE_URL", "https://slack.com/oauth/v2/authorize")
SLACK_OPENID_AUTHORIZE_URL = os.environ.get("SLACK_OPENID_AUTHORIZE_URL", "https://slack.com/openid/connect/authorize")
SLACK_API_BASE_URL = os.environ.get("SLACK_API_BASE_URL", "https://slack.com/api/")
# Fernet key(s) encrypting Slack bot tokens at rest (comma-separated to rotate: the first
# encrypts, all decrypt). The development default is derived from SECRET_KEY; production sets it.
SLACK_TOKEN_ENCRYPTION_KEY = os.environ.get("SLACK_TOKEN_ENCRYPTION_KEY") or base64.urlsafe_b64encode(
    hashlib.sha256(f"slack-token-encryption:{SECRET_KEY}".encode()).digest()
).decode()
# What the Slack webhook does when Redis cannot answer the quota check: "open" starts the
# workflow anyway (its own quota gate retries until Redis is back) and logs an error;
# "closed" refuses the mention with a "try again shortly" reply.
QUOTA_CHECK_FAILURE_MODE = os.environ.get("QUOTA_CHECK_FAILURE_MODE", "open").strip().lower()
if QUOTA_CHECK_FAILURE_MODE not in {"open", "closed"}:
    raise ValueError(f"QUOTA_CHECK_FAILURE_MODE must be 'open' or 'closed', not {QUOTA_CHECK_FAILURE_MODE!r}")

# The Slack mention inbox (products/slack_app/inbox.py, relay.py): the webhook records each mention
# in PostgreSQL and answers; the relay in the Temporal worker process starts the workflows (or posts
# the recorded denials), woken by NOTIFY, polling every POLL seconds as a fallback, oldest first.
SLACK_INBOX_RELAY_BATCH_SIZE = int(os.environ.get("SLACK_INBOX_RELAY_BATCH_SIZE", "64"))  # rows claimed at once
SLACK_INBOX_RELAY_CONCURRENCY = int(os.environ.get("SLACK_INBOX_RELAY_CONCURRENCY", "16"))  # starts in flight
SLACK_INBOX_RELAY_POLL_SECONDS = float(os.environ.get("SLACK_INBOX_RELAY_POLL_SECONDS", "0.1"))  # no NOTIFY: see inbox.py
SLACK_INBOX_RELAY_LEASE_SECONDS = float(os.environ.get("SLACK_INBOX_RELAY_LEASE_SECONDS", "60"))  # a dead relay's rows wait this long
# While Temporal (or Slack, for a denial) is down: wait BACKOFF_INITIAL, doubling up to BACKOFF_MAX, then retry.
SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS = float(os.environ.get("SLACK_INBOX_RELAY_BACKOFF_INITIAL_SECONDS", "1"))
SLACK_INBOX_RELAY_BACKOFF_MAX_SECONDS = float(os.environ.get("SLACK_INBOX_RELAY_BACKOFF_MAX_SECONDS", "30"))
SLACK_INBOX_MAX_ATTEMPTS = int(os.environ.get("SLACK_INBOX_MAX_ATTEMPTS", "20"))  # errors other than an outage, then "failed"
SLACK_INBOX_KEEP_PROCESSED_SECONDS = float(os.environ.get("SLACK_INBOX_KEEP_PROCESSED_SECONDS", str(7 * 86400)))
SLACK_INBOX_PRUNE_EVERY_SECONDS = float(os.environ.get("SLACK_INBOX_PRUNE_EVERY_SECONDS", "600"))
SLACK_INBOX_BACKLOG_LOG_SECONDS = float(os.environ.get("SLACK_INBOX_BACKLOG_LOG_SECONDS", "60"))

# The LLM gateway's throttles (products/llm_gateway/throttles.py, quota.py, cost_limits.py).
# Where the ai_credits quota is read: "redis" (this deployment's Redis, through billing's
# is_team_limited; unreachable Redis refuses billable calls) or "http" (GET
# {LLM_GATEWAY_QUOTA_URL}/api/projects/{id}/quota_limits/ of a remote deployment, with the
# caller's credential; answers cached, 5xx and timeouts retried, open for at most
# LLM_GATEWAY_QUOTA_FAIL_OPEN_SECONDS of continuous failure, then closed).
LLM_GATEWAY_QUOTA_SOURCE = os.environ.get("LLM_GATEWAY_QUOTA_SOURCE", "redis").strip().lower()
if LLM_GATEWAY_QUOTA_SOURCE not in {"redis", "http"}:
    raise ImproperlyConfigured(f"LLM_GATEWAY_QUOTA_SOURCE must be 'redis' or 'http', not {LLM_GATEWAY_QUOTA_SOURCE!r}")
LLM_GATEWAY_QUOTA_URL = os.environ.get("LLM_GATEWAY_QUOTA_URL", "").strip().rstrip("/")
if LLM_GATEWAY_QUOTA_SOURCE == "http" and not LLM_GATEWAY_QUOTA_URL:
    raise ImproperlyConfigured("LLM_GATEWAY_QUOTA_SOURCE=http needs LLM_GATEWAY_QUOTA_URL (the remote deployment's base URL)")
LLM_GATEWAY_QUOTA_CACHE_SECONDS = float(os.environ.get("LLM_GATEWAY_QUOTA_CACHE_SECONDS", "30"))  # "not limited" answers
LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS = float(os.environ.get("LLM_GATEWAY_QUOTA_TIMEOUT_SECONDS", "0.5"))  # per attempt / Redis read
LLM_GATEWAY_QUOTA_RETRIES = int(os.environ.get("LLM_GATEWAY_QUOTA_RETRIES", "2"))  # after the first attempt (http)
LLM_GATEWAY_QUOTA_FAIL_OPEN_SECONDS = float(os.environ.get("LLM_GATEWAY_QUOTA_FAIL_OPEN_SECONDS", "60"))
# Cost throttles in USD (per product, shared by all its callers; per user of a product), each
# over a sliding window in seconds. LLM_GATEWAY_PRODUCT_COST_LIMITS (JSON) overrides them per
# product, e.g. {"slack_app_routing": {"product_usd": 50, "user_burst_usd": 5}}.
LLM_GATEWAY_PRODUCT_COST_USD = float(os.environ.get("LLM_GATEWAY_PRODUCT_COST_USD", "1000"))
LLM_GATEWAY_PRODUCT_COST_WINDOW_SECONDS = int(os.environ.get("LLM_GATEWAY_PRODUCT_COST_WINDOW_SECONDS", str(24 * 3600)))
LLM_GATEWAY_USER_BURST_USD = float(os.environ.get("LLM_GATEWAY_USER_BURST_USD", "100"))
LLM_GATEWAY_USER_BURST_WINDOW_SECONDS = int(os.environ.get("LLM_GATEWAY_USER_BURST_WINDOW_SECONDS", str(24 * 3600)))
LLM_GATEWAY_USER_SUSTAINED_USD = float(os.environ.get("LLM_GATEWAY_USER_SUSTAINED_USD", "1000"))
LLM_GATEWAY_USER_SUSTAINED_WINDOW_SECONDS = int(os.environ.get("LLM_GATEWAY_USER_SUSTAINED_WINDOW_SECONDS", str(30 * 86400)))
LLM_GATEWAY_PRODUCT_COST_LIMITS = json.loads(os.environ.get("LLM_GATEWAY_PRODUCT_COST_LIMITS") or "{}")

# The "Top up at ..." link of the quota denial and usage alerts: the billing page by default.
BILLING_URL = os.environ.get("BILLING_URL") or f"{SITE_URL}/billing/"

# Members sign in on the product's own page (the admin's refuses non-staff users).
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

CELERY_BROKER_URL = os.environ.get("CELERY_BROKER_URL", REDIS_URL)
CELERY_TASK_IGNORE_RESULT = True
CELERY_TIMEZONE = "UTC"
CELERY_BEAT_SCHEDULE: dict = {
    # Metered usage -> quota limits (products/billing/recompute.py), at :10, :25, :40 and :55.
    "update-quota-limits": {
        "task": "products.billing.tasks.update_quota_limits",
        "schedule": crontab(minute="10,25,40,55"),
    },
    # The Slack app's "post once" ledger and recorded pickers older than 30 days (products/slack_app/tasks.py).
    "prune-slack-bot-messages": {
        "task": "products.slack_app.tasks.prune_bot_messages",
        "schedule": crontab(minute=35, hour=3),
    },
    # Spent and expired "Add to Slack" / "Sign in with Slack" states (products/slack_app/oauth_state.py).
    "prune-slack-oauth-states": {
        "task": "products.slack_app.tasks.prune_oauth_states",
        "schedule": crontab(minute=45, hour=3),
    },
    # External task runs whose runner stopped sending heartbeats -> failed, thread told (products/tasks/tasks.py).
    "fail-stale-task-runs": {
        "task": "products.tasks.tasks.fail_stale_task_runs",
        "schedule": crontab(),  # every minute
    },
}
# An external runner that sends no heartbeat (nor progress) for this long has its run failed as lost.
TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS = int(os.environ.get("TASK_RUNNER_HEARTBEAT_TIMEOUT_SECONDS", "120"))

# The LLM gateway (products/llm_gateway): where each provider is reached, with the service's own key
# (a provider without a key answers 503), and where the worker and agents reach the gateway.
LLM_OPENAI_BASE_URL = os.environ.get("LLM_OPENAI_BASE_URL", "https://api.openai.com").rstrip("/")
LLM_OPENAI_API_KEY = os.environ.get("LLM_OPENAI_API_KEY", "")
LLM_ANTHROPIC_BASE_URL = os.environ.get("LLM_ANTHROPIC_BASE_URL", "https://api.anthropic.com").rstrip("/")
LLM_ANTHROPIC_API_KEY = os.environ.get("LLM_ANTHROPIC_API_KEY", "")
LLM_GATEWAY_URL = os.environ.get("LLM_GATEWAY_URL", "http://127.0.0.1:8001").rstrip("/")
# The small model the repository router asks through the gateway (product slack_app_routing).
# Empty: gpt-4o-mini when an OpenAI key is configured, else claude-haiku-4-5.
LLM_ROUTING_MODEL = os.environ.get("LLM_ROUTING_MODEL", "").strip()
# The built-in agent's model through the gateway (product slack_app, products/agent). Empty: gpt-4o-mini
# with an OpenAI key, claude-sonnet-4-5 with only an Anthropic key, else the gateway's offline demo
# model "posthog-demo" (says in every answer that it is not a real AI). Set it on the worker when
# only the gateway holds the provider keys. Each read from the gateway may take up to the timeout.
LLM_AGENT_MODEL = os.environ.get("LLM_AGENT_MODEL", "").strip()
LLM_AGENT_TIMEOUT_SECONDS = float(os.environ.get("LLM_AGENT_TIMEOUT_SECONDS", "120"))

# Credits charged per event = round(cost_usd * 100 * (1 + AI_CREDITS_MARKUP)); 0.2 adds 20 %.
AI_CREDITS_MARKUP = os.environ.get("AI_CREDITS_MARKUP", "0")

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# Serve app static files straight from their packages when collectstatic has not run.
WHITENOISE_USE_FINDERS = True

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "products.accounts.authentication.PersonalAPIKeyAuthentication",
        "products.accounts.authentication.ServerTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    # DRF's JSON parser with a depth limit and no lone surrogates or NULs (posthog_app/json_input.py).
    "DEFAULT_PARSER_CLASSES": ["posthog_app.parsers.StrictJSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "posthog_app.exceptions.api_exception_handler",
    "UNAUTHENTICATED_USER": "django.contrib.auth.models.AnonymousUser",
}

SPECTACULAR_SETTINGS = {
    "TITLE": "PostHog Code Slack service API",
    "DESCRIPTION": "Quota limits, usage and tasks for the Slack coding bot.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "COMPONENT_SPLIT_REQUEST": True,
    # `<id:...>` (posthog_app/converters.py): an integer id; negative or out of the 64-bit range, a 404.
    "PATH_CONVERTER_OVERRIDES": {"id": {"type": "integer"}},
    "ENUM_NAME_OVERRIDES": {
        "TaskRunStatusEnum": "products.tasks.models.TaskRun.Status",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": os.environ.get("LOG_LEVEL", "INFO")},
}
