"""`python manage.py quota_limits list|set|clear`: read and change quota limits from scripts.

    quota_limits list  [--project ID|TOKEN] [--resource R]
    quota_limits set   --project ID|TOKEN --resource R --until WHEN [--reason TEXT] [--suspended]
    quota_limits clear --project ID|TOKEN --resource R [--reason TEXT] [--suspended]

WHEN is ISO-8601 (a time without a zone is UTC), a Unix timestamp, or relative to now:
`+30m`, `+12h`, `+7d`. Changes go through `products.billing.services`, which writes Redis
and the audit log together under the actor label "manage.py quota_limits". A limit set
here holds until WHEN: the quota recomputation keeps it (it is recorded as the project's
time-bound "always limit" override); `clear` lifts it and removes that override.
Bad arguments end with a message on stderr and a non-zero exit.
"""
from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone as dt_timezone

import redis
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from products.accounts.facade import Project
from products.billing import quota_limiting as ql
from products.billing.models import QuotaLimitChange
from products.billing.services import (
    Actor,
    QuotaChangeError,
    clear_quota_limit,
    organization_override,
    set_quota_limit,
)

ACTOR_LABEL = "manage.py quota_limits"
_RELATIVE = re.compile(r"^\+(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_UNIX = re.compile(r"^\d+(\.\d+)?$")


def parse_until(value: str, now: datetime | None = None) -> datetime:
    """Return the aware time `value` names; raise CommandError saying which forms are accepted."""
    now = now or timezone.now()
    text = value.strip()
    relative = _RELATIVE.match(text)
    if relative:
        amount, unit = int(relative.group(1)), relative.group(2)
        return now + timedelta(**{_UNITS[unit]: amount})
    if _UNIX.match(text):
        try:
            return datetime.fromtimestamp(float(text), tz=dt_timezone.utc)
        except (OverflowError, OSError, ValueError) as exc:
            raise CommandError(f"--until {value!r} is not a usable Unix timestamp.") from exc
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(
            f"--until {value!r} is not a time. Use ISO-8601 (2030-01-31T12:00:00Z; no zone means UTC), "
            "a Unix timestamp (1924992000), or a relative time (+30m, +12h, +7d)."
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt_timezone.utc)


def find_project(value: str) -> Project:
    """Return the project with numeric id or `phc_` api token `value`."""
    text = value.strip()
    query = {"pk": int(text)} if text.isdigit() else {"api_token": text}
    try:
        return Project.objects.select_related("organization").get(**query)
    except Project.DoesNotExist:
        raise CommandError(f"No project with {'id' if text.isdigit() else 'api token'} {text!r}.") from None


def parse_resource(value: str) -> ql.QuotaResource:
    try:
        return ql.QuotaResource.parse(value)
    except ValueError as exc:
        raise CommandError(str(exc)) from None


def _time(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(dt_timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


class Command(BaseCommand):
    help = "List, set or clear per-project quota limits (Redis, with an audit-log entry for every change)."

    def add_arguments(self, parser) -> None:
        sub = parser.add_subparsers(dest="subcommand", metavar="{list,set,clear}", required=True)

        list_parser = sub.add_parser("list", help="Show the projects currently limited or suspended.")
        list_parser.add_argument("--project", help="Only this project (numeric id or phc_ api token).")
        list_parser.add_argument("--resource", help="Only this resource, e.g. ai_credits.")

        set_parser = sub.add_parser("set", help="Limit a project for a resource until a time.")
        clear_parser = sub.add_parser("clear", help="Lift a project's limit for a resource.")
        for p in (set_parser, clear_parser):
            p.add_argument("--project", required=True, help="Numeric project id or phc_ api token.")
            p.add_argument("--resource", required=True, help="Resource, e.g. ai_credits.")
            p.add_argument("--reason", default="", help="Why; recorded in the audit log.")
            p.add_argument(
                "--suspended",
                action="store_true",
                help="Change the grace-period (suspended) state instead of the limit.",
            )
        set_parser.add_argument(
            "--until",
            required=True,
            help="ISO-8601 (no zone = UTC), Unix timestamp, or relative: +30m, +12h, +7d. Must be in the future.",
        )

    def handle(self, *args, subcommand: str, **options) -> None:
        handler = {"list": self.handle_list, "set": self.handle_set, "clear": self.handle_clear}[subcommand]
        try:
            handler(**options)
        except (ql.QuotaStateUnavailable, redis.RedisError) as exc:
            raise CommandError(f"Redis is unreachable; nothing was changed: {exc}") from exc

    # --- subcommands -------------------------------------------------------------------------

    def handle_list(self, *, project: str | None = None, resource: str | None = None, **_) -> None:
        resources = [parse_resource(resource)] if resource else list(ql.QuotaResource)
        only_project = find_project(project) if project else None

        # (token, resource) -> [limited until, suspended until]
        found: dict[tuple[str, ql.QuotaResource], list[datetime | None]] = {}
        for res in resources:
            for index, cache in enumerate((ql.LIMITS, ql.SUSPENDED)):
                for token, score in ql.list_limited_tokens(res, cache).items():
                    if only_project is None or token == only_project.api_token:
                        found.setdefault((token, res), [None, None])[index] = ql.to_datetime(score)
        if not found:
            self.stdout.write("No projects are limited.")
            return

        projects = {p.api_token: p for p in Project.objects.filter(api_token__in={t for t, _ in found})}
        rows = []
        for (token, res), (limited, suspended) in found.items():
            p = projects.get(token)
            rows.append(
                (
                    str(p.pk) if p else "-",
                    p.name if p else "(no such project)",
                    token,
                    res.value,
                    _time(limited),
                    _time(suspended),
                )
            )
        rows.sort(key=lambda r: (int(r[0]) if r[0].isdigit() else 1 << 62, r[2], r[3]))
        header = ("PROJECT_ID", "NAME", "API_TOKEN", "RESOURCE", "LIMITED_UNTIL", "SUSPENDED_UNTIL")
        widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
        for row in [header, *rows]:
            self.stdout.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())

    def handle_set(self, *, project: str, resource: str, until: str, reason: str, suspended: bool, **_) -> None:
        # Arguments are checked before the database is touched.
        res, when = parse_resource(resource), parse_until(until)
        if when <= timezone.now():
            raise CommandError(f"--until {until!r} ({_time(when)}) is in the past; it must be in the future.")
        target = find_project(project)
        state = QuotaLimitChange.State.SUSPENDED if suspended else QuotaLimitChange.State.LIMITED
        try:
            change = set_quota_limit(target, res, when, reason=reason, actor=Actor(label=ACTOR_LABEL), state=state)
        except QuotaChangeError as exc:
            raise CommandError(f"--until {until!r} ({_time(when)}): {exc}") from exc
        verb = "Suspended" if suspended else "Limited"
        holds = (
            "" if suspended else " The quota recomputation keeps this limit until then; `clear` lifts it sooner."
        )
        self.stdout.write(
            f"{verb} project #{target.pk} ({target.name}) for {res.value} until {_time(when)} "
            f"(audit entry #{change.pk}).{holds}"
        )

    def handle_clear(self, *, project: str, resource: str, reason: str, suspended: bool, **_) -> None:
        res = parse_resource(resource)
        target = find_project(project)
        state = QuotaLimitChange.State.SUSPENDED if suspended else QuotaLimitChange.State.LIMITED
        change = clear_quota_limit(target, res, reason=reason, actor=Actor(label=ACTOR_LABEL), state=state)
        what = "suspension" if suspended else "limit"
        was = f"was until {_time(change.old_limited_until)}" if change.old_limited_until else "none was set"
        self.stdout.write(
            f"Cleared the {res.value} {what} of project #{target.pk} ({target.name}); {was} "
            f"(audit entry #{change.pk})."
        )
        override = None if suspended else organization_override(target, res)
        if override is not None and override.mode == override.Mode.ALWAYS_LIMIT:
            self.stdout.write(
                f"Note: the organization's override 'always limit' for {res.value} will limit it again at the next "
                "quota recomputation; remove it in the admin (Billing and quota limits > Quota overrides)."
            )
