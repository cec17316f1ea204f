"""Workspace events other than mentions: uninstall, token revocation and the Home tab.

`events.handle_envelope` hands every verified non-mention event here first. Return a
short description when the event was acted on (the webhook answers 200 either way),
None when it is not one of ours (it is then ignored).

* `app_uninstalled`: every integration of the workspace is disabled; its mentions are
  then ignored (`workspaces.find_integration`) until an admin adds the app again.
* `tokens_revoked`: the same when a bot token is among the revoked ones (user tokens
  alone change nothing: the bot does not use any).
* `app_home_opened` (the Home tab): the viewer is recorded and the tab is published by
  a Celery task after this request's transaction commits (home.py).

Every save or deletion of an Integration (install, reinstall, token rotation, admin
edits) and every status change (`disable_workspace`, `mark_broken`) announces itself
(`workspaces.announce_workspace_change`), so the webhook's cached lookups are dropped in
every process before the next mention.

Also the billing page's notices: the organization's admins are told about a Slack app
that is disabled or broken, with the link that mends it (`billing_notices`).
"""
from __future__ import annotations

import logging
from typing import Any

from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from products.accounts.facade import OrganizationMembership
from products.billing.facade import BillingNotice

from . import tasks
from .models import HomeTabViewer, Integration
from .workspaces import announce_workspace_change, broken_integrations, disable_workspace, find_integration

logger = logging.getLogger(__name__)


def handle_workspace_event(envelope: dict[str, Any], event: dict[str, Any]) -> str | None:
    """Act on `app_uninstalled`, `tokens_revoked` and `app_home_opened`; None for anything else."""
    kind = event.get("type")
    team_id = envelope.get("team_id")
    if kind not in {"app_uninstalled", "tokens_revoked", "app_home_opened"}:
        return None
    if not isinstance(team_id, str) or not team_id or len(team_id) > 50:
        logger.warning("slack %s event without a usable team_id; ignoring", kind)
        return f"{kind} without a team id: ignored"
    if kind == "app_uninstalled":
        count = disable_workspace(team_id, "app_uninstalled: the app was removed from the workspace")
        return f"app_uninstalled: {count} integration(s) of {team_id} disabled"
    if kind == "tokens_revoked":
        tokens = event.get("tokens") if isinstance(event.get("tokens"), dict) else {}
        bots = [b for b in tokens.get("bot") or [] if isinstance(b, str)] if isinstance(tokens.get("bot"), list) else []
        if not bots:
            return f"tokens_revoked: only user tokens of {team_id}; nothing to do"
        count = disable_workspace(team_id, "tokens_revoked: the bot token was revoked", bot_user_ids=bots)
        return f"tokens_revoked: {count} integration(s) of {team_id} disabled"
    return _home_opened(team_id, event)


def _home_opened(team_id: str, event: dict[str, Any]) -> str:
    user = event.get("user")
    if event.get("tab", "home") != "home":
        return "app_home_opened on the messages tab: nothing to publish"
    if not isinstance(user, str) or not user or len(user) > 50:
        return "app_home_opened without a user: ignored"
    integration = find_integration(team_id)
    if integration is None:
        return f"app_home_opened from unknown or disabled workspace {team_id}: ignored"
    record_home_opened(integration, user)
    return f"app_home_opened: Home tab of {user} queued"


def record_home_opened(integration: Integration, slack_user_id: str) -> None:
    """Remember that `slack_user_id` opened the Home tab and publish it after this transaction commits."""
    HomeTabViewer.objects.update_or_create(
        integration=integration, slack_user_id=slack_user_id, defaults={"opened_at": timezone.now()}
    )
    transaction.on_commit(lambda: enqueue_publish(integration.pk, slack_user_id))


def enqueue_publish(integration_id: int, slack_user_id: str) -> None:
    """Queue `publish_home_tab` on Celery; a broker that is down is logged (the next open or recomputation publishes)."""
    try:
        tasks.publish_home_tab.delay(integration_id, slack_user_id)
    except Exception:  # noqa: BLE001 - the broker (Redis) is down: the webhook still answers Slack
        logger.exception("could not queue the Home tab of %s (integration #%s)", slack_user_id, integration_id)


def refresh_home_tabs_for(sender: Any = None, *, organization_ids: list[int], **kwargs: Any) -> int:
    """Receiver of billing's `quota_recomputed`: queue a Home tab refresh for every viewer in those organizations."""
    viewers = list(
        HomeTabViewer.objects.filter(
            integration__project__organization_id__in=organization_ids,
        )
        .exclude(integration__status=Integration.Status.DISABLED)
        .values_list("integration_id", "slack_user_id")
    )
    for integration_id, slack_user_id in viewers:
        transaction.on_commit(lambda i=integration_id, u=slack_user_id: enqueue_publish(i, u))
    if viewers:
        logger.info("queued %d Home tab refresh(es) after the quota recomputation", len(viewers))
    return len(viewers)


def _is_admin(user, organization_id: int) -> bool:
    if not user or not user.is_authenticated:
        return False
    return OrganizationMembership.objects.filter(
        organization_id=organization_id,
        user=user,
        level__in=(OrganizationMembership.Level.ADMIN, OrganizationMembership.Level.OWNER),
    ).exists()


def billing_notices(sender: Any = None, *, organization, user, **kwargs: Any) -> list[BillingNotice]:
    """Receiver of billing's `billing_page_notices`: a disabled or broken Slack app, for the organization's admins only."""
    if not _is_admin(user, organization.pk):
        return []
    notices = []
    for integration in broken_integrations(organization.pk):
        workspace = integration.team_name or integration.integration_id
        if integration.status == Integration.Status.BROKEN:
            text = (
                f"Slack app broken in workspace “{workspace}” (project {integration.project.name}): "
                f"{integration.status_reason or 'Slack refuses its token'}. The bot cannot answer there until you add it to Slack again."
            )
        else:
            text = (
                f"Slack app disabled in workspace “{workspace}” (project {integration.project.name}): "
                f"{integration.status_reason or 'uninstalled'}. Mentions there are ignored until you add it to Slack again."
            )
        link = f"{reverse('slack-install')}?project={integration.project_id}"
        notices.append(BillingNotice(text=text, link=link, link_text="Add to Slack again"))
    return notices


def announce_integration_change(sender: Any = None, **kwargs: Any) -> None:
    """Receiver of Integration's post_save and post_delete (install, reinstall, token rotation, admin edits,
    deletion with its project): the webhook's cached lookups of every process are dropped (workspaces.py)."""
    announce_workspace_change()


def connect_signals() -> None:
    """Connect the Home tab refresh and the billing page's notices to billing's signals, and the
    webhook cache's invalidation to Integration's saves and deletions."""
    from django.db.models.signals import post_delete, post_save

    from products.billing.facade import billing_page_notices, quota_recomputed

    post_save.connect(announce_integration_change, sender=Integration, dispatch_uid="slack_app.workspace_changed_save")
    post_delete.connect(announce_integration_change, sender=Integration, dispatch_uid="slack_app.workspace_changed_delete")

    quota_recomputed.connect(refresh_home_tabs_for, dispatch_uid="slack_app.refresh_home_tabs")
    billing_page_notices.connect(billing_notices, dispatch_uid="slack_app.billing_notices")
