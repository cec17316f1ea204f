"""Quota recomputation at scale: `update_all_orgs_billing_quotas()` over 10,000 organizations.

Seeds its own PostgreSQL database (posthog_bench_recompute, migrated here) and Redis
db 13 with 10,000 organizations, 100,000 projects, their plans, allowances, overrides
and 1,000,000 usage rows (COPY), plus stale Redis state to lift and expired entries to
sweep. Then it times three runs:

* cold     - Redis empty of our decisions: every over-allowance project is written;
* steady   - nothing changed since: nothing is written;
* changed  - 1 % of organizations got new usage: only theirs is written.

For each run it counts database queries (connection.execute_wrapper), Redis round
trips (writes to the socket: a pipeline is one) and Redis commands (INFO
commandstats delta). The live AI-credit counters (`@posthog/ai-credits-live/<org>`)
ride in the same read and MULTI/EXEC: every organization's counter is written on the
cold run, none on the steady one, and, on the changed run, those of the organizations
with new usage plus those the LLM gateway counted calls for since (simulated: HINCRBY
on 1 % of the counters, as `record_spend` does). It repeats everything at a tenth of the size and prints the
growth ratios; the target is the full size in under 30 s with queries that do not
grow with the number of organizations.

Usage alerts are delivered through billing's `usage_alert_due` signal, one send per
organization alerted, and each receiver (the Slack app looks up the organization's
alerts channels) costs what it costs per organization. So the recomputation is
measured without them (`send_alerts=False`), and the alerts it found are then
delivered and measured on their own: queries per organization alerted.

    .venv/bin/python bench/recompute.py [--orgs 10000] [--projects-per-org 10] [--rows-per-project 10]

Writes bench/results/recompute.{json,txt}.
"""
from __future__ import annotations

import argparse
import io
import json
import logging
import os
import platform
import random
import secrets
import sys
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")
os.environ["DATABASE_URL"] = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/posthog_bench_recompute")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")
os.environ.setdefault("DEBUG", "0")
# DEBUG is off, as in production, so settings want a real key: a fresh one per run.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("LOG_LEVEL", "WARNING")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.utils import timezone  # noqa: E402

from posthog_app.redis_client import get_client  # noqa: E402
from products.accounts.models import Organization, Project  # noqa: E402
from products.billing import quota_limiting as ql  # noqa: E402
from products.billing.models import (  # noqa: E402
    BillingPlan,
    QuotaLimitChange,
    QuotaOverride,
    ResourceAllowance,
    UsageAlert,
    UsageEvent,
)
from products.billing.alerts import send_usage_alerts  # noqa: E402
from products.billing.plans import period_containing  # noqa: E402
from products.billing.recompute import update_all_orgs_billing_quotas  # noqa: E402

from bench.support import RoundTripCounter, ensure_postgres_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
ALLOWANCE = 10_000


# --- counting ----------------------------------------------------------------------------


class QueryCounter:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute, sql, params, many, context):
        self.count += 1
        return execute(sql, params, many, context)


def redis_commands(client) -> int:
    return sum(stats["calls"] for name, stats in client.info("commandstats").items() if name != "cmdstat_info")


def measure(label: str) -> dict:
    client = get_client()
    queries = QueryCounter()
    before = redis_commands(client)
    with RoundTripCounter() as trips, connection.execute_wrapper(queries):
        start = time.perf_counter()
        summary = update_all_orgs_billing_quotas(send_alerts=False)
        seconds = time.perf_counter() - start
    commands = redis_commands(client) - before - 0  # INFO itself is excluded

    alert_queries = QueryCounter()
    with connection.execute_wrapper(alert_queries):
        start = time.perf_counter()
        summary.alerts = send_usage_alerts(summary.terms, summary.usage, timezone.now())
        alert_seconds = time.perf_counter() - start
    orgs_alerted = len({a.organization_id for a in summary.alerts})
    return {
        "run": label,
        "seconds": round(seconds, 3),
        "db_queries": queries.count,
        "redis_round_trips": trips.count,
        "redis_commands": commands,
        "checked": summary.checked,
        "newly_limited": summary.newly_limited,
        "lifted": summary.lifted,
        "unchanged": summary.unchanged,
        "failed": summary.failed,
        "project_changes": len(summary.changes),
        "swept": summary.swept,
        "live_counters_written": summary.live_counters_written,
        "alerts": len(summary.alerts),
        "orgs_alerted": orgs_alerted,
        "alert_seconds": round(alert_seconds, 3),
        "alert_db_queries": alert_queries.count,
    }


# --- seeding -----------------------------------------------------------------------------


def ensure_database() -> None:
    ensure_postgres_database(os.environ["DATABASE_URL"])
    call_command("migrate", verbosity=0)


def copy_rows(table: str, columns: list[str], rows) -> None:
    raw = connection.connection
    with raw.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
        for row in rows:
            copy.write_row(row)


def org_profile(i: int) -> str:
    """Which situation organization i is in (deterministic, so both sizes have the same mix)."""
    if i % 40 == 5:
        return "never_limit"
    if i % 40 == 6:
        return "always_limit"
    if i % 50 == 7:
        return "unlimited"
    return {0: "over", 1: "over", 2: "over", 3: "near"}.get(i % 10, "under")


def seed(n_orgs: int, projects_per_org: int, rows_per_project: int) -> dict:
    rng = random.Random(42)
    tables = [m._meta.db_table for m in (UsageAlert, QuotaLimitChange, UsageEvent, ResourceAllowance, QuotaOverride, BillingPlan, Project, Organization)]
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    get_client().flushdb()
    now = timezone.now()
    started = time.perf_counter()

    created = [now - timedelta(days=400 + i % 365, seconds=i) for i in range(n_orgs)]
    copy_rows(Organization._meta.db_table, ["id", "name", "created_at"], ((i + 1, f"Bench org {i}", created[i]) for i in range(n_orgs)))

    def token(p: int) -> str:
        return f"phc_bench_{p:08d}_{'x' * 24}"

    n_projects = n_orgs * projects_per_org
    copy_rows(
        Project._meta.db_table,
        ["id", "organization_id", "name", "api_token", "created_at"],
        ((p + 1, p // projects_per_org + 1, f"Project {p}", token(p), now) for p in range(n_projects)),
    )

    periods = {}
    plan_rows = []
    for i in range(n_orgs):
        anchor = (now - timedelta(days=1 + i % 28, hours=i % 24)).replace(microsecond=0)
        start, end = period_containing(anchor, 1, now)
        periods[i] = (start, end)
        plan_rows.append((i + 1, i + 1, "bench", anchor, 1, start, end, now))
    copy_rows(
        BillingPlan._meta.db_table,
        ["id", "organization_id", "name", "period_anchor", "period_months", "period_start", "period_end", "updated_at"],
        plan_rows,
    )
    allowance_rows = []
    override_rows = []
    for i in range(n_orgs):
        profile = org_profile(i)
        allowance_rows.append((i + 1, "ai_credits", None if profile == "unlimited" else ALLOWANCE, 0, 0))
        if i % 5 == 0:
            allowance_rows.append((i + 1, "llm_events", 1_000_000, 1000, 3))
        if profile in ("never_limit", "always_limit"):
            override_rows.append((i + 1, "ai_credits", profile, "bench", now))
    copy_rows(ResourceAllowance._meta.db_table, ["plan_id", "resource", "allowance", "overage_buffer", "grace_period_days"], allowance_rows)
    copy_rows(QuotaOverride._meta.db_table, ["organization_id", "resource", "mode", "reason", "created_at"], override_rows)

    share = {"over": 1.2, "near": 0.9, "under": 0.4, "unlimited": 3.0, "never_limit": 2.0, "always_limit": 0.1}

    def usage_rows():
        n = 0
        for i in range(n_orgs):
            start, end = periods[i]
            span = (now - start).total_seconds()
            rows = projects_per_org * rows_per_project
            # 8 rows in 10 are billable and inside the period: they carry the target share.
            credits = max(1, round(ALLOWANCE * share[org_profile(i)] / (rows * 0.8)))
            for p in range(i * projects_per_org, (i + 1) * projects_per_org):
                for r in range(rows_per_project):
                    n += 1
                    kind = r % 10
                    billable = kind != 0  # 10 % non-billable PostHog Code use
                    ts = start - timedelta(days=2) if kind == 1 else start + timedelta(seconds=rng.random() * span * 0.99)
                    yield (
                        p + 1, i + 1, f"00000000-0000-4000-8000-{n:012d}", "$ai_generation", ts,
                        "slack_app" if billable else "posthog_code", "claude-sonnet-4-5", "anthropic",
                        1000, 200, credits / 100, credits, billable, False, "{}", now,
                    )

    copy_rows(
        UsageEvent._meta.db_table,
        ["project_id", "organization_id", "uuid", "event", "timestamp", "product", "model", "provider",
         "input_tokens", "output_tokens", "cost_usd", "credits", "billable", "is_error", "properties", "received_at"],
        usage_rows(),
    )

    # Stale Redis state: 3 % of projects limited by an earlier run that no longer applies,
    # and 1,000 expired entries of projects deleted long ago.
    client = get_client()
    key = ql.redis_key(ql.QuotaResource.AI_CREDITS)
    pipe = client.pipeline(transaction=False)
    stale = {token(p): int(now.timestamp()) + 86400 for p in range(n_projects) if org_profile(p // projects_per_org) == "under" and p % 13 == 0}
    pipe.zadd(key, stale)
    pipe.zadd(key, {f"phc_deleted_{k:06d}": int(now.timestamp()) - 3600 for k in range(1000)})
    pipe.execute()

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return {
        "organizations": n_orgs,
        "projects": n_projects,
        "usage_rows": n_projects * rows_per_project,
        "seed_seconds": round(time.perf_counter() - started, 1),
    }


def add_usage_for_one_percent(n_orgs: int, projects_per_org: int) -> None:
    """Push 1 % of the 'under' organizations over their allowance; the gateway counts live calls for another 1 %."""
    now = timezone.now()
    targets = [i for i in range(n_orgs) if org_profile(i) == "under"][: max(1, n_orgs // 100)]
    counted = [i for i in range(n_orgs) if org_profile(i) == "near"][: max(1, n_orgs // 100)]
    pipe = get_client().pipeline(transaction=False)
    for i in counted:
        pipe.hincrby(f"@posthog/ai-credits-live/{i + 1}", "used", 7)  # calls the database never got: reset away
    pipe.execute()
    copy_rows(
        UsageEvent._meta.db_table,
        ["project_id", "organization_id", "uuid", "event", "timestamp", "product", "credits", "cost_usd", "billable", "is_error", "properties", "received_at",
         "input_tokens", "output_tokens", "model", "provider"],
        (
            (i * projects_per_org + 1, i + 1, f"00000000-0000-4000-9000-{k:012d}", "$ai_generation", now - timedelta(minutes=1),
             "slack_app", ALLOWANCE, ALLOWANCE / 100, True, False, "{}", now, 0, 0, "", "")
            for k, i in enumerate(targets)
        ),
    )


def bench_size(n_orgs: int, projects_per_org: int, rows_per_project: int) -> dict:
    print(f"seeding {n_orgs:,} organizations, {n_orgs * projects_per_org:,} projects ...", flush=True)
    seeded = seed(n_orgs, projects_per_org, rows_per_project)
    print(f"  seeded in {seeded['seed_seconds']} s; running", flush=True)
    runs = [measure("cold"), measure("steady")]
    add_usage_for_one_percent(n_orgs, projects_per_org)
    runs.append(measure("changed"))
    return {**seeded, "runs": runs}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orgs", type=int, default=10_000)
    parser.add_argument("--projects-per-org", type=int, default=10)
    parser.add_argument("--rows-per-project", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("products.billing").setLevel(logging.ERROR)  # thousands of "alert logged" lines otherwise

    ensure_database()
    small = bench_size(max(1, args.orgs // 10), args.projects_per_org, args.rows_per_project)
    full = bench_size(args.orgs, args.projects_per_org, args.rows_per_project)

    out = io.StringIO()

    def say(line: str = "") -> None:
        print(line)
        out.write(line + "\n")

    say(f"Quota recomputation benchmark ({platform.node()}, {os.cpu_count()} CPUs, PostgreSQL + Redis on loopback)")
    for size in (small, full):
        say(f"  {size['organizations']:,} orgs / {size['projects']:,} projects / {size['usage_rows']:,} usage rows")
    say()
    header = f"{'run':<8} {'metric':<18} {'1/10 size':>12} {'full size':>12} {'ratio':>8}"
    say(header)
    say("-" * len(header))
    ratios = {}
    for s_run, f_run in zip(small["runs"], full["runs"]):
        for metric in ("seconds", "db_queries", "redis_round_trips", "redis_commands", "project_changes", "newly_limited", "lifted", "swept",
                       "live_counters_written"):
            a, b = s_run[metric], f_run[metric]
            ratio = (b / a) if a else float("nan") if b else 1.0
            ratios[f"{s_run['run']}.{metric}"] = round(ratio, 2) if ratio == ratio else None
            say(f"{s_run['run']:<8} {metric:<18} {a:>12,} {b:>12,} {ratio:>8.2f}" if isinstance(a, int) else
                f"{s_run['run']:<8} {metric:<18} {a:>12.3f} {b:>12.3f} {ratio:>8.2f}")
        say()
    cold = full["runs"][0]
    verdict_time = all(r["seconds"] < 30 for r in full["runs"])
    verdict_queries = all(s["db_queries"] == f["db_queries"] for s, f in zip(small["runs"], full["runs"]))
    say(f"full size under 30 s on every run: {'yes' if verdict_time else 'NO'} (cold {cold['seconds']} s)")
    say(f"database queries identical at 1/10 and full size: {'yes' if verdict_queries else 'NO'}")
    for size_name, size in (("1/10 size", small), ("full size", full)):
        for run in size["runs"]:
            say(
                f"alerts ({size_name}, {run['run']}): {run['orgs_alerted']:,} organizations alerted in "
                f"{run['alert_seconds']} s with {run['alert_db_queries']:,} queries (a few per run, plus what "
                "each receiver of usage_alert_due costs per organization)"
            )

    RESULTS.mkdir(parents=True, exist_ok=True)
    figures = {"small": small, "full": full, "ratios_full_over_small": ratios,
               "target_met": {"under_30s": verdict_time, "queries_constant": verdict_queries}}
    (RESULTS / "recompute.json").write_text(json.dumps(figures, indent=2, default=str) + "\n")
    (RESULTS / "recompute.txt").write_text(out.getvalue())
    return 0 if verdict_time and verdict_queries else 1


if __name__ == "__main__":
    sys.exit(main())
