"""Test settings: the real services, on databases of their own.

Tests flush their Redis database, so they never use the development one (db 0).
"""
import os

# The base settings refuse a missing or default SECRET_KEY when DEBUG is off (as it may be
# in the environment running the tests); the tests use a long, test-only one.
os.environ.setdefault("SECRET_KEY", "test-only-secret-key-" + "0123456789abcdef" * 4)

from .settings import *  # noqa: F401,F403,E402

# The suite runs on PostgreSQL (pytest-django creates test_<name>), never on the dev SQLite file.
DATABASES = {
    "default": database(  # noqa: F405
        os.environ.get("DATABASE_URL") or "postgres://postgres@127.0.0.1:5432/posthog_app", conn_max_age=60
    )
}
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
CELERY_BROKER_URL = REDIS_URL
SLACK_SIGNING_SECRET = "test-signing-secret"
SITE_URL = "http://testserver"
BILLING_URL = "http://testserver/billing"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
