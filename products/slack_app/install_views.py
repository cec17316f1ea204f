"""Pages of 'Add to Slack' and 'Sign in with Slack'. Thin: validate, one call into oauth.py / signin.py, render.

Every refusal is a typed error (oauth.InstallError, oauth_state.StateError) rendered by
`_refused`, the one place they become pages with their status.
"""
from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_safe

from . import oauth, signin
from .oauth_state import StateError

logger = logging.getLogger(__name__)


def _refused(request: HttpRequest, error: oauth.InstallError | StateError, *, flow: str) -> HttpResponse:
    return render(
        request,
        "slack_app/oauth_result.html",
        {"ok": False, "title": error.title, "reason": error.reason, "code": error.code, "flow": flow,
         "missing": getattr(error, "missing", None)},
        status=error.status,
    )


@require_safe
@login_required
def slack_install(request: HttpRequest) -> HttpResponse:
    """`GET /slack/install[?project=<id>]`: with a project, go to Slack's consent page; without, pick a project.

    Only an admin (or owner) of the project's organization may install; anyone else gets a 403.
    """
    try:
        project = oauth.check_install_allowed(request.user, request.GET.get("project"))
        if project is None:
            return render(
                request,
                "slack_app/install.html",
                {"projects": oauth.admin_projects(request.user), "configured": bool(settings.SLACK_CLIENT_ID and settings.SLACK_CLIENT_SECRET)},
            )
        return HttpResponseRedirect(oauth.start_install(request.user, project))
    except oauth.InstallError as error:
        return _refused(request, error, flow="install")


@require_safe
@login_required
def slack_oauth_callback(request: HttpRequest) -> HttpResponse:
    """`GET /slack/oauth/callback?code=...&state=...`: where Slack sends the admin back after the consent page."""
    try:
        installed = oauth.complete_install(
            request.user, state=request.GET.get("state"), code=request.GET.get("code"), error=request.GET.get("error")
        )
    except (oauth.InstallError, StateError) as error:
        return _refused(request, error, flow="install")
    integration = installed.integration
    return render(
        request,
        "slack_app/oauth_result.html",
        {"ok": True, "flow": "install", "integration": integration, "created": installed.created,
         "project": integration.project, "title": "Slack connected"},
    )


def _safe_next(request: HttpRequest, url: str | None) -> str:
    if url and url_has_allowed_host_and_scheme(url, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return url
    return ""


@require_safe
def slack_signin(request: HttpRequest) -> HttpResponse:
    """`GET /slack/signin[?next=...]`: go to Slack's 'Sign in with Slack' page."""
    try:
        return HttpResponseRedirect(signin.start_signin(request.session, _safe_next(request, request.GET.get("next"))))
    except oauth.InstallError as error:
        return _refused(request, error, flow="signin")


@require_safe
def slack_signin_callback(request: HttpRequest) -> HttpResponse:
    """`GET /slack/signin/callback?code=...&state=...`: sign the member in, then on to `next` or the billing page."""
    try:
        signed_in = signin.complete_signin(
            request.session, state=request.GET.get("state"), code=request.GET.get("code"), error=request.GET.get("error"),
            current_user=request.user,
        )
    except (oauth.InstallError, StateError) as error:
        return _refused(request, error, flow="signin")
    login(request, signed_in.user, backend="django.contrib.auth.backends.ModelBackend")
    target = _safe_next(request, signed_in.next_url) or f"/billing/?organization={signed_in.organization.pk}"
    return HttpResponseRedirect(target)
