"""Minimal Django settings for the Bolt peer: no database, no apps, no middleware beyond common."""
import os

SECRET_KEY = "bolt-peer-bench"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
ROOT_URLCONF = "bench.bolt_peer.urls"
WSGI_APPLICATION = "bench.bolt_peer.wsgi.application"
INSTALLED_APPS: list[str] = []
MIDDLEWARE = ["django.middleware.common.CommonMiddleware"]
DATABASES: dict = {}
USE_TZ = True
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "root": {"level": os.environ.get("LOG_LEVEL", "WARNING")},
}
