"""'Sign in with Slack' (OpenID Connect): a member of a connected workspace signs in with their Slack identity.

The flow: `start_signin` keeps a nonce in the browser's session, issues a single-use
state bound to it and builds Slack's authorize URL with slack_sdk's
`OpenIDConnectAuthorizeUrlGenerator`; `complete_signin` checks the state, exchanges the
code (`openid.connect.token`), reads who signed in (`openid.connect.userInfo`) and
finds the workspace's enabled integration. The user is the one linked to that Slack
identity (`SlackIdentity`); else the user already signed in in this browser (who links
their Slack identity that way); else a new one without a password. Either way they are
made a member of that integration's organization, and of no other one through this
flow, so a new user reaches its task pages and billing page only.
"""
from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.oauth import OpenIDConnectAuthorizeUrlGenerator

from products.accounts.facade import Organization, OrganizationMembership

from .models import OAuthState, SlackIdentity
from .oauth import InstallError, NotConfigured, check_configured
from .oauth_state import DatabaseOAuthStateStore, session_binding
from .slack_client import app_client
from .workspaces import find_integration

logger = logging.getLogger(__name__)

OIDC_SCOPES = ("openid", "profile", "email")
CALLBACK_PATH = "/slack/signin/callback"
SESSION_NONCE_KEY = "slack_signin_nonce"


class SigninError(InstallError):
    title = "Could not sign you in with Slack"
    code = "signin_failed"


class UnknownWorkspace(SigninError):
    status = 403
    code = "unknown_workspace"
    title = "Your Slack workspace is not connected"


class IdentityExchangeFailed(SigninError):
    status = 502
    code = "identity_exchange_failed"


@dataclass(frozen=True)
class SignedIn:
    user: object
    organization: Organization
    created: bool
    next_url: str


def redirect_uri() -> str:
    return f"{settings.SITE_URL}{CALLBACK_PATH}"


def start_signin(session, next_url: str = "") -> str:
    """Bind a new state to this browser's session; return the URL of Slack's sign-in page."""
    check_configured()
    nonce = secrets.token_urlsafe(32)
    session[SESSION_NONCE_KEY] = nonce
    state = DatabaseOAuthStateStore(OAuthState.Purpose.SIGNIN).issue(binding=session_binding(nonce), next_url=next_url)
    generator = OpenIDConnectAuthorizeUrlGenerator(
        client_id=settings.SLACK_CLIENT_ID,
        redirect_uri=redirect_uri(),
        scopes=list(OIDC_SCOPES),
        authorization_url=settings.SLACK_OPENID_AUTHORIZE_URL,
    )
    # No nonce: the identity is read from Slack's userInfo endpoint with the access token the code
    # bought (server to server), never from an id_token the browser could replay.
    return generator.generate(state)


@sensitive_variables("token_response", "access_token")
def complete_signin(
    session, *, state: str | None, code: str | None, error: str | None = None, current_user=None
) -> SignedIn:
    """Check the state, learn who signed in and return the user to log in. Raises `StateError` / `SigninError`."""
    check_configured()
    nonce = session.get(SESSION_NONCE_KEY) or ""
    claimed = DatabaseOAuthStateStore(OAuthState.Purpose.SIGNIN).claim(state, binding=session_binding(nonce) if nonce else "-")
    session.pop(SESSION_NONCE_KEY, None)
    if error:
        raise SigninError(f"Slack answered “{error[:100]}”: you were not signed in.")
    if not code:
        raise SigninError("Slack sent no authorization code, so you were not signed in. Start again from the button.")
    try:
        token_response = app_client().openid_connect_token(
            client_id=settings.SLACK_CLIENT_ID, client_secret=settings.SLACK_CLIENT_SECRET,
            code=code[:500], redirect_uri=redirect_uri(),
        )
        access_token = token_response.get("access_token")
        if not access_token:
            raise IdentityExchangeFailed("Slack's answer had no access token. Start again from the button.")
        info = app_client(access_token).openid_connect_userInfo()
    except SlackApiError as exc:
        reason = exc.response.get("error", "error") if exc.response is not None else "error"
        logger.warning("Sign in with Slack: Slack refused the exchange: %s", reason)
        raise IdentityExchangeFailed(f"Slack refused the sign-in ({reason}). Start again from the button.") from None
    except (SlackClientError, OSError) as exc:
        logger.error("Sign in with Slack: Slack unreachable: %r", exc)
        raise IdentityExchangeFailed("Slack could not be reached. Try again in a moment.") from None

    team_id = str(info.get("https://slack.com/team_id") or "")
    slack_user_id = str(info.get("https://slack.com/user_id") or info.get("sub") or "")
    if not team_id or not slack_user_id:
        raise IdentityExchangeFailed("Slack did not say which workspace and member you are. Start again from the button.")
    integration = find_integration(team_id)
    if integration is None:
        team_name = str(info.get("https://slack.com/team_name") or team_id)
        raise UnknownWorkspace(
            f"The Slack workspace “{team_name}” is not connected to any organization here. "
            "Ask an admin of your organization to add the bot to Slack, or sign in with your password."
        )
    organization = integration.project.organization
    user, created = _user_for(
        team_id, slack_user_id, organization, current_user=current_user,
        email=str(info.get("email") or "")[:254], name=str(info.get("name") or info.get("given_name") or "")[:150],
    )
    logger.info("Slack member %s of %s signed in as user %s (%s)", slack_user_id, team_id, user.pk, "new" if created else "linked")
    return SignedIn(user=user, organization=organization, created=created, next_url=claimed.next_url)


def _user_for(team_id: str, slack_user_id: str, organization: Organization, *, email: str, name: str, current_user=None):
    """The user linked to this Slack identity (else `current_user`, else a new one without a password), a member of `organization`."""
    User = get_user_model()
    with transaction.atomic():
        identity = SlackIdentity.objects.select_related("user").filter(slack_team_id=team_id, slack_user_id=slack_user_id).first()
        created = identity is None
        if identity is None and current_user is not None and current_user.is_authenticated:
            identity = SlackIdentity.objects.create(
                slack_team_id=team_id, slack_user_id=slack_user_id, user=current_user, email=email
            )
            created = False
        if identity is None:
            # Never linked by email: an email address in Slack proves nothing about an account here.
            user = User(username=_free_username(User, f"slack-{team_id}-{slack_user_id}".lower()), email=email, first_name=name[:150])
            user.set_unusable_password()
            user.save()
            try:
                with transaction.atomic():
                    identity = SlackIdentity.objects.create(slack_team_id=team_id, slack_user_id=slack_user_id, user=user, email=email)
            except IntegrityError:  # the same member signing in twice at once: use the first one's user
                user.delete()
                identity = SlackIdentity.objects.select_related("user").get(slack_team_id=team_id, slack_user_id=slack_user_id)
                created = False
        identity.last_signed_in_at = timezone.now()
        identity.save(update_fields=["last_signed_in_at"])
        OrganizationMembership.objects.get_or_create(
            organization=organization, user=identity.user, defaults={"level": OrganizationMembership.Level.MEMBER}
        )
    return identity.user, created


def _free_username(User, base: str) -> str:
    base = base[:140]
    candidate, n = base, 1
    while User.objects.filter(username=candidate).exists():
        n += 1
        candidate = f"{base}-{n}"
    return candidate


__all__ = ["NotConfigured", "SignedIn", "SigninError", "UnknownWorkspace", "complete_signin", "start_signin"]
