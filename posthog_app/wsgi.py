"""WSGI entry point: `gunicorn posthog_app.wsgi:application`.

`POST /slack/events` and `POST /slack/interactivity` (Slack's webhooks) go through
`SlackWSGIHandler`, a Django handler trimmed to what those endpoints need; every other
path gets Django's own handler and the full middleware stack.
"""
import gc
import os

from django.conf import settings
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver
from django.utils.module_loading import import_string

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")

SLACK_PATHS = frozenset({"/slack/events", "/slack/interactivity"})
SLACK_URLCONF = "posthog_app.slack_urls"
# The middleware Slack's endpoints keep, in settings.MIDDLEWARE's order (one left out of the
# settings is left out here too): the security headers (nosniff, referrer and opener policies,
# X-Frame-Options; HTTPS redirect and HSTS when configured) and the Host check (ALLOWED_HOSTS).
SLACK_MIDDLEWARE = (
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
)


class SlackWSGIHandler(WSGIHandler):
    """Django's WSGI handler for Slack's webhooks, without the middleware they do not use.

    Measured per request (cProfile, in process), the full stack cost about as much CPU as
    the webhook's own work once its workspace lookup was cached. Slack's endpoints are
    authenticated by Slack's signature (views.py), exempt from CSRF, and use no session,
    user or messages; static files are not theirs. So they keep only SLACK_MIDDLEWARE and
    resolve against their own URLs (`SLACK_URLCONF`). The rest is Django's: the
    request_started / request_finished signals (database connections recycled as
    CONN_MAX_AGE says), exceptions turned into responses, the same views, statuses and bodies.
    """

    def load_middleware(self, is_async: bool = False) -> None:
        self._view_middleware = []
        self._template_response_middleware = []
        self._exception_middleware = []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed([path for path in settings.MIDDLEWARE if path in SLACK_MIDDLEWARE]):
            middleware = import_string(path)(handler)
            # None of these has view, template-response or exception hooks (checked in the tests).
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler

    def resolve_request(self, request):
        resolver_match = get_resolver(SLACK_URLCONF).resolve(request.path_info)
        request.resolver_match = resolver_match
        return resolver_match


django_application = get_wsgi_application()  # sets Django up first
slack_application = SlackWSGIHandler()
# Import the webhooks' modules now, not in the first request each worker process serves: that
# import (the views, the Redis and Temporal clients) held the GIL for about 180 ms, stalling every
# request of that process, and a worker that got no request before a burst paid it in the burst.
get_resolver(SLACK_URLCONF).url_patterns

# Everything loaded so far (Django, the apps, their modules) lives as long as the process: move it
# out of the collector's generations, so a full collection walks only what requests allocated.
gc.freeze()


def application(environ, start_response):
    if environ.get("PATH_INFO") in SLACK_PATHS:
        return slack_application(environ, start_response)
    return django_application(environ, start_response)
