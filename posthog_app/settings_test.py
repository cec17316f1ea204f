"""Test settings: the real services, on databases of their own.

Tests flush their Redis database, so they never use the development one (db 0).
"""
import os

from .settings import *  # noqa: F401,F403

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/9")
CELERY_BROKER_URL = REDIS_URL
SLACK_SIGNING_SECRET = "test-signing-secret"
SITE_URL = "http://testserver"
BILLING_URL = "http://testserver/billing"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEBUG = False
