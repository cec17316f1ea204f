"""'Add to Slack': an organization admin installs the bot into a workspace for one of their projects (OAuth v2).

`check_*` functions authorize and raise `InstallError`s (each with a status and a page),
`start_install` issues the single-use state and builds the authorize URL with
slack_sdk's `AuthorizeUrlGenerator`, and `complete_install` checks the state, exchanges
the code (`oauth.v2.access` through the real `WebClient`), checks every required scope
was granted and creates or updates the project's integration in one transaction.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.oauth import AuthorizeUrlGenerator

from products.accounts.facade import OrganizationMembership, Project

from .models import Integration, OAuthState
from .oauth_state import DatabaseOAuthStateStore, user_binding
from .slack_client import app_client

logger = logging.getLogger(__name__)

# Every Web API method the bot calls needs one of these (see posting.py, names.py, mentions.py):
# read mentions, post and update replies and pickers, react, read a thread's context and
# the names of people and channels, public and private.
REQUIRED_BOT_SCOPES: tuple[str, ...] = (
    "app_mentions:read",
    "channels:history",
    "channels:read",
    "chat:write",
    "groups:history",
    "groups:read",
    "reactions:write",
    "users:read",
)
CALLBACK_PATH = "/slack/oauth/callback"
ADMIN_LEVELS = (OrganizationMembership.Level.ADMIN, OrganizationMembership.Level.OWNER)


class InstallError(Exception):
    """Why an install cannot go on: an HTTP status, a short code, a title and a reason for the page."""

    status = 400
    code = "install_failed"
    title = "Slack was not connected"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NotConfigured(InstallError):
    status = 503
    code = "not_configured"
    title = "Slack install is not configured"


class NotAnAdmin(InstallError):
    status = 403
    code = "not_an_admin"
    title = "Only an organization admin can add the bot to Slack"


class BadProject(InstallError):
    status = 400
    code = "bad_project"
    title = "Which project?"


class SlackDeclined(InstallError):
    code = "declined"
    title = "Slack was not connected"


class CodeExchangeFailed(InstallError):
    status = 502
    code = "code_exchange_failed"
    title = "Slack did not complete the install"


class MissingScopes(InstallError):
    code = "missing_scopes"
    title = "The bot was not given every permission it needs"

    def __init__(self, missing: list[str]) -> None:
        super().__init__(
            "Slack granted the install without these permissions, so nothing was connected: "
            + ", ".join(missing)
            + ". Install again and approve every permission listed on Slack's page."
        )
        self.missing = missing


class WorkspaceOwnedElsewhere(InstallError):
    status = 409
    code = "workspace_owned_elsewhere"
    title = "This Slack workspace is already connected to another organization"


@dataclass(frozen=True)
class Installed:
    integration: Integration
    created: bool  # False: an existing integration was updated (a reinstall)


def check_configured() -> None:
    if not settings.SLACK_CLIENT_ID or not settings.SLACK_CLIENT_SECRET:
        raise NotConfigured("Set SLACK_CLIENT_ID and SLACK_CLIENT_SECRET (the Slack app's credentials), then try again.")


def admin_projects(user):
    """Projects of the organizations where `user` is an admin or owner."""
    return Project.objects.filter(
        organization__memberships__user=user, organization__memberships__level__in=ADMIN_LEVELS
    ).select_related("organization").order_by("organization__name", "name", "id")


def check_install_allowed(user, project_id: str | None) -> Project | None:
    """Return the project `user` may install the bot for (None when `project_id` is absent). Raises `InstallError`.

    A user who is an admin of no organization gets a 403, as does one asking for a
    project of an organization where they are not an admin (or not a member: the same
    answer, which says nothing about which projects exist).
    """
    projects = admin_projects(user)
    if not projects.exists():
        raise NotAnAdmin("Ask an admin of your organization to add the bot to your Slack workspace.")
    if project_id is None or project_id == "":
        return None
    if not project_id.isdigit() or len(project_id) > 18:
        raise BadProject("The project must be given as a number (?project=<id>).")
    project = projects.filter(pk=int(project_id)).first()
    if project is None:
        raise NotAnAdmin("You are not an admin of this project's organization.")
    return project


def redirect_uri() -> str:
    return f"{settings.SITE_URL}{CALLBACK_PATH}"


def start_install(user, project: Project) -> str:
    """Issue a state bound to `user` and `project`; return the URL of Slack's consent page."""
    check_configured()
    state = DatabaseOAuthStateStore(OAuthState.Purpose.INSTALL).issue(binding=user_binding(user), project=project)
    generator = AuthorizeUrlGenerator(
        client_id=settings.SLACK_CLIENT_ID,
        redirect_uri=redirect_uri(),
        scopes=list(REQUIRED_BOT_SCOPES),
        user_scopes=[],
        authorization_url=settings.SLACK_OAUTH_AUTHORIZE_URL,
    )
    return generator.generate(state)


@sensitive_variables("response", "token", "refresh_token")
def complete_install(user, *, state: str | None, code: str | None, error: str | None = None) -> Installed:
    """Finish the install Slack sent the browser back from. Raises `StateError` or `InstallError`: nothing is connected then
    (a state that was checked is spent all the same)."""
    check_configured()
    claimed = DatabaseOAuthStateStore(OAuthState.Purpose.INSTALL).claim(state, binding=user_binding(user))
    project = claimed.project
    if project is None or not admin_projects(user).filter(pk=project.pk).exists():
        raise NotAnAdmin("You are no longer an admin of this project's organization.")
    if error:
        raise SlackDeclined(f"Slack answered “{error[:100]}”: the install was cancelled, nothing was connected.")
    if not code:
        raise SlackDeclined("Slack sent no authorization code, so nothing was connected. Start again from the button.")
    try:
        response = app_client().oauth_v2_access(
            client_id=settings.SLACK_CLIENT_ID,
            client_secret=settings.SLACK_CLIENT_SECRET,
            code=code[:500],
            redirect_uri=redirect_uri(),
        )
    except SlackApiError as exc:
        reason = (exc.response or {}).get("error", "error") if exc.response is not None else "error"
        logger.warning("oauth.v2.access refused the code for project %s: %s", project.pk, reason)
        raise CodeExchangeFailed(f"Slack refused the authorization code ({reason}). Start again from the button.") from None
    except (SlackClientError, OSError) as exc:
        logger.error("oauth.v2.access unreachable: %r", exc)
        raise CodeExchangeFailed("Slack could not be reached to complete the install. Try again in a moment.") from None
    return _save_install(user, project, response.data if hasattr(response, "data") else dict(response))


@sensitive_variables("data", "token", "refresh_token")
def _save_install(user, project: Project, data: dict[str, Any]) -> Installed:
    team = data.get("team") or {}
    team_id, team_name = str(team.get("id") or ""), str(team.get("name") or "")
    token = str(data.get("access_token") or "")
    if not team_id or not token or data.get("token_type", "bot") != "bot":
        raise CodeExchangeFailed("Slack's answer had no bot token for a workspace. Start again from the button.")
    granted = {s.strip() for s in str(data.get("scope") or "").split(",") if s.strip()}
    missing = [s for s in REQUIRED_BOT_SCOPES if s not in granted]
    if missing:
        logger.warning("install of workspace %s for project %s refused: missing scopes %s", team_id, project.pk, missing)
        raise MissingScopes(missing)
    refresh_token = data.get("refresh_token") or None
    expires_in = data.get("expires_in")
    expires_at = timezone.now() + timedelta(seconds=int(expires_in)) if refresh_token and expires_in else None

    with transaction.atomic():
        _lock_workspace(team_id)
        elsewhere = (
            Integration.objects.select_for_update()
            .filter(kind=Integration.Kind.SLACK, integration_id=team_id)
            .exclude(project__organization_id=project.organization_id)
            .exclude(status=Integration.Status.DISABLED)
        )
        if elsewhere.exists():
            logger.warning("install of workspace %s for project %s refused: connected to another organization", team_id, project.pk)
            raise WorkspaceOwnedElsewhere(
                f"The Slack workspace “{team_name or team_id}” is connected to a project of another organization. "
                "One workspace talks to one organization: ask that organization's admin to uninstall the app first."
            )
        integration, created = Integration.objects.select_for_update().get_or_create(
            project=project, kind=Integration.Kind.SLACK, integration_id=team_id
        )
        integration.team_name = team_name
        integration.bot_user_id = str(data.get("bot_user_id") or "")
        integration.scopes = sorted(granted)
        integration.set_tokens(token, refresh_token, expires_at)
        integration.installed_by = user
        integration.installed_at = timezone.now()
        integration.status, integration.status_reason, integration.status_changed_at = (
            Integration.Status.ACTIVE, "", timezone.now()
        )
        integration.save()
    logger.info(
        "Slack workspace %s (%s) %s for project %s by user %s", team_id, team_name,
        "installed" if created else "reinstalled", project.pk, user.pk,
    )
    return Installed(integration=integration, created=created)


def _lock_workspace(team_id: str) -> None:
    """Serialize installs of one workspace until the transaction ends, so two organizations
    installing it at once cannot both pass the "connected elsewhere" check (SQLite, for
    `make run`, serializes writers anyway)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", [f"slack-install:{team_id}"])
