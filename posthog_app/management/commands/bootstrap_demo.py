"""`python manage.py bootstrap_demo`: a demo organization, project, admin user and a fresh key.

Prints `KEY=VALUE` lines (nothing else on stdout) for scripts such as `make run`:

    ORGANIZATION_ID=1
    PROJECT_ID=1
    PROJECT_API_TOKEN=phc_...
    ADMIN_USERNAME=demo
    ADMIN_PASSWORD=...
    PERSONAL_API_KEY=phx_...

Idempotent: a second run reuses the organization, project and user (same ids and token),
resets the user's password to `--password`, and replaces the demo key: the previous
`bootstrap_demo` key of the demo user stops working and a new one is printed (a key's
value cannot be shown again, and a demo key printed in an old terminal should not live on).
Everything happens in one transaction.

It lives in the project, not in a product, because it spans two: accounts (through
`products.accounts.facade`) and the Slack app (`products.slack_app.facade.connect_workspace`).

With `--slack-team-id T... --slack-bot-token xoxb-... --repo owner/name [--repo ...]` it also
creates or updates the demo project's Slack integration (the token is stored encrypted and
never printed), so a real Slack app can be pointed at `make run`.

To add a step, add its option in `add_arguments`, a small
`ensure_*` function, and one call in `Command.bootstrap` that adds its lines to `values`.
"""
from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from products.accounts.facade import Organization, OrganizationMembership, PersonalAPIKey, Project
from products.slack_app.facade import InvalidWorkspaceSettings, connect_workspace

ORGANIZATION_NAME = "Demo Organization"
PROJECT_NAME = "Demo Project"
USERNAME = "demo"
EMAIL = "demo@example.com"
DEFAULT_PASSWORD = "demo-password-change-me"
KEY_LABEL = "bootstrap_demo"


def ensure_organization(name: str = ORGANIZATION_NAME) -> Organization:
    organization = Organization.objects.filter(name=name).order_by("id").first()
    return organization or Organization.objects.create(name=name)


def ensure_project(organization: Organization, name: str = PROJECT_NAME) -> Project:
    project = Project.objects.filter(organization=organization, name=name).order_by("id").first()
    return project or Project.objects.create(organization=organization, name=name)


def ensure_admin_user(organization: Organization, password: str):
    """Return the demo user: owner of the organization, and staff + superuser for /admin/."""
    user, _ = get_user_model().objects.get_or_create(username=USERNAME, defaults={"email": EMAIL})
    user.email = user.email or EMAIL
    user.is_staff = True
    user.is_superuser = True
    user.is_active = True
    user.set_password(password)
    user.save()
    OrganizationMembership.objects.update_or_create(
        organization=organization, user=user, defaults={"level": OrganizationMembership.Level.OWNER}
    )
    return user


def rotate_demo_key(user) -> str:
    """Replace `user`'s previous demo key(s) with a new all-scopes key; return its value (stored only hashed).

    Keys the user made for themselves (any other label) are left alone.
    """
    PersonalAPIKey.objects.filter(user=user, label=KEY_LABEL).delete()
    _, value = PersonalAPIKey.create_key(user=user, label=KEY_LABEL, scopes=["*"])
    return value


def ensure_slack_integration(project: Project, options: dict) -> dict[str, str]:
    """Create or update the project's Slack integration from --slack-* / --repo; return lines to print (never the token)."""
    team_id, token, repos = options.get("slack_team_id"), options.get("slack_bot_token"), options.get("repo") or []
    if not team_id:
        if token or repos:
            raise CommandError("--slack-bot-token and --repo need --slack-team-id")
        return {}
    try:
        integration = connect_workspace(project, team_id=team_id, bot_token=token, repositories=repos)
    except InvalidWorkspaceSettings as exc:
        raise CommandError(f"--repo/--slack-team-id: {exc}") from exc
    return {
        "SLACK_INTEGRATION_ID": str(integration.pk),
        "SLACK_TEAM_ID": team_id,
        "SLACK_REPOSITORIES": ",".join(integration.repositories),
        "SLACK_BOT_TOKEN_SET": "yes" if integration.has_bot_token else "no",
    }


class Command(BaseCommand):
    help = (
        "Create (or reuse) a demo organization, project and admin user, replace the demo personal "
        "API key with a new one, and print them as KEY=VALUE lines."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--password",
            default=DEFAULT_PASSWORD,
            help=f"Password for the '{USERNAME}' admin user (default: {DEFAULT_PASSWORD}).",
        )
        parser.add_argument("--slack-team-id", help="Create or update the demo project's Slack integration for this workspace (T...).")
        parser.add_argument("--slack-bot-token", help="The Slack app's bot token (xoxb-...); stored encrypted, never printed.")
        parser.add_argument(
            "--repo", action="append", default=[], metavar="OWNER/NAME",
            help="A repository the Slack bot may work in (repeatable); replaces the integration's list.",
        )

    def handle(self, *args, **options) -> None:
        with transaction.atomic():
            values = self.bootstrap(options)
        for name, value in values.items():
            self.stdout.write(f"{name}={value}")

    def bootstrap(self, options: dict) -> dict[str, str]:
        """Create or reuse everything and return the lines to print, in order."""
        organization = ensure_organization()
        project = ensure_project(organization)
        user = ensure_admin_user(organization, options["password"])
        values = {
            "ORGANIZATION_ID": str(organization.pk),
            "PROJECT_ID": str(project.pk),
            "PROJECT_API_TOKEN": project.api_token,
            "ADMIN_USERNAME": user.get_username(),
            "ADMIN_PASSWORD": options["password"],
        }
        values["PERSONAL_API_KEY"] = rotate_demo_key(user)
        values.update(ensure_slack_integration(project, options))
        return values
