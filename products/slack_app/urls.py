from django.urls import path

from . import install_views, views

urlpatterns = [
    path("slack/events", views.slack_events, name="slack-events"),
    path("slack/interactivity", views.slack_interactivity, name="slack-interactivity"),
    path("slack/install", install_views.slack_install, name="slack-install"),
    path("slack/oauth/callback", install_views.slack_oauth_callback, name="slack-oauth-callback"),
    path("slack/signin", install_views.slack_signin, name="slack-signin"),
    path("slack/signin/callback", install_views.slack_signin_callback, name="slack-signin-callback"),
]
