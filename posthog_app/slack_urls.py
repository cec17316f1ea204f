"""The URLs `SlackWSGIHandler` (posthog_app/wsgi.py) resolves Slack's webhook paths against.

The Slack app's own URLs, not the whole site's; the names are the same as in the root URLconf.
"""
from django.urls import include, path

urlpatterns = [
    path("", include("products.slack_app.urls")),
]
