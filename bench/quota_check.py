"""Quota check: our one-ZSCORE `is_team_limited` against PostHog's cached approach.

PostHog reads a resource's whole limited set with ZRANGEBYSCORE and caches it in
process for 30 s, then tests membership. We ask Redis one ZSCORE per check and
cache nothing. Both run here, in one process, against the same real Redis seeded
with 100,000 limited tokens, and the endpoint is timed both ways through the same
Django view (auth, project lookup, rendering) so only the quota read differs.

Prints a table of figures and ratios and writes them to bench/results/quota_check.{json,txt}.

    .venv/bin/python bench/quota_check.py [--tokens 100000] [--checks 20000] [--requests 500]
"""
from __future__ import annotations

import argparse
import gc
import json
import os
import secrets
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "posthog_app.settings")
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/posthog_bench_quota")
os.environ["REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
os.environ.setdefault("DEBUG", "0")
# DEBUG is off, as in production, so settings want a real key: a fresh one per run.
os.environ.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
os.environ.setdefault("ALLOWED_HOSTS", "testserver")

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import override_settings  # noqa: E402
from django.urls import path  # noqa: E402

from posthog_app.redis_client import get_client  # noqa: E402
from products.billing import quota_limiting as ql  # noqa: E402
from products.billing.api import QuotaLimitsView  # noqa: E402

from bench.support import RoundTripCounter, ensure_postgres_database  # noqa: E402

RESULTS = ROOT / "bench" / "results"
TTL_SECONDS = 30


class PostHogStyleQuotaReader:
    """PostHog's approach, re-implemented: whole set per resource, cached 30 s in process."""

    def __init__(self, client, ttl: float = TTL_SECONDS) -> None:
        self.client = client
        self.ttl = ttl
        self.cache: dict[ql.QuotaResource, tuple[float, set[str]]] = {}
        self.refreshes = 0

    def limited_tokens(self, resource: ql.QuotaResource, cache=ql.LIMITS) -> set[str]:
        now = time.time()
        entry = self.cache.get((resource, cache))
        if entry and now - entry[0] < self.ttl:
            return entry[1]
        rows = self.client.zrangebyscore(ql.redis_key(resource, cache), now, "+inf")
        tokens = {row.decode() for row in rows}
        self.cache[(resource, cache)] = (now, tokens)
        self.refreshes += 1
        return tokens

    def is_team_limited(self, api_token: str, resource: ql.QuotaResource) -> bool:
        return api_token in self.limited_tokens(resource)

    def status(self, api_token: str) -> dict[ql.QuotaResource, ql.ResourceQuotaStatus]:
        # PostHog's cache holds membership only, so "until" needs another read; report presence.
        return {
            r: ql.ResourceQuotaStatus(
                resource=r,
                limited_until=ql.to_datetime(time.time() + 1) if api_token in self.limited_tokens(r) else None,
                suspended_until=ql.to_datetime(time.time() + 1) if api_token in self.limited_tokens(r, ql.SUSPENDED) else None,
            )
            for r in ql.QuotaResource
        }


READER: PostHogStyleQuotaReader | None = None


class PostHogStyleQuotaLimitsView(QuotaLimitsView):
    def read_status(self, api_token):
        return READER.status(api_token)


urlpatterns = [
    path("ours/<int:project_id>/", QuotaLimitsView.as_view()),
    path("posthog/<int:project_id>/", PostHogStyleQuotaLimitsView.as_view()),
]


def commands_delta(client, before: dict) -> int:
    after = client.info("commandstats")
    total = 0
    for name, stats in after.items():
        if name in ("cmdstat_info",):
            continue
        total += stats["calls"] - before.get(name, {"calls": 0})["calls"]
    return total


def timed(fn, n: int) -> list[float]:
    samples = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return samples


def us(seconds: float) -> float:
    return round(seconds * 1e6, 2)


def ensure_database() -> None:
    if connection.vendor == "postgresql":
        ensure_postgres_database(os.environ["DATABASE_URL"])
    call_command("migrate", verbosity=0)


def seed(client, n_tokens: int) -> None:
    client.flushdb()
    until = int(time.time()) + 30 * 86400
    key = ql.redis_key(ql.QuotaResource.AI_CREDITS)
    pipe = client.pipeline(transaction=False)
    for start in range(0, n_tokens, 10_000):
        pipe.zadd(key, {f"phc_bench_{i:08d}_{'x' * 24}": until for i in range(start, min(start + 10_000, n_tokens))})
    pipe.execute()


def main() -> int:
    global READER
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=100_000)
    parser.add_argument("--checks", type=int, default=20_000)
    parser.add_argument("--requests", type=int, default=500)
    args = parser.parse_args()

    client = get_client()
    db_index = client.connection_pool.connection_kwargs.get("db", 0)
    if db_index == 0:
        print("error: the benchmark flushes its Redis database; use one other than 0 (BENCH_REDIS_URL)", file=sys.stderr)
        return 2
    ensure_database()
    seed(client, args.tokens)
    resource = ql.QuotaResource.AI_CREDITS
    limited_token = "phc_bench_00050000_" + "x" * 24
    free_token = "phc_not_limited_token"

    # --- per-check cost -------------------------------------------------------------
    ql.is_team_limited(free_token, resource)  # warm the connection
    before = client.info("commandstats")
    ours = timed(lambda: ql.is_team_limited(limited_token, resource), args.checks)
    ours_cmds = commands_delta(client, before) / args.checks
    with RoundTripCounter() as trips:
        for _ in range(1000):
            ql.is_team_limited(limited_token, resource)
    ours_trips = trips.count / 1000

    READER = PostHogStyleQuotaReader(client)
    refresh = []
    for _ in range(5):
        READER.cache.clear()
        start = time.perf_counter()
        READER.limited_tokens(resource)
        refresh.append(time.perf_counter() - start)
    before = client.info("commandstats")
    hits = timed(lambda: READER.is_team_limited(limited_token, resource), args.checks)
    hit_cmds = commands_delta(client, before) / args.checks

    # --- memory ---------------------------------------------------------------------
    gc.collect()
    tracemalloc.start()
    reader_for_memory = PostHogStyleQuotaReader(client)
    reader_for_memory.limited_tokens(resource)
    posthog_cache_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    del reader_for_memory
    gc.collect()
    tracemalloc.start()
    for _ in range(1000):
        ql.is_team_limited(limited_token, resource)
    ours_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    # --- staleness ------------------------------------------------------------------
    newly_limited = "phc_newly_limited_token"
    READER.limited_tokens(resource)  # warm cache, as a busy process would have it
    ql.add_limited_tokens(resource, {newly_limited: time.time() + 3600})
    ours_sees_it = ql.is_team_limited(newly_limited, resource)
    posthog_sees_it = READER.is_team_limited(newly_limited, resource)
    ql.remove_limited_tokens(resource, [newly_limited])

    # --- the endpoint, both ways through the same view --------------------------------
    from products.accounts.models import Organization, OrganizationMembership, PersonalAPIKey, Project
    from django.contrib.auth import get_user_model

    org, _ = Organization.objects.get_or_create(name="Bench Org")
    project, _ = Project.objects.get_or_create(organization=org, name="Bench Project")
    user, _ = get_user_model().objects.get_or_create(username="bench")
    OrganizationMembership.objects.get_or_create(organization=org, user=user)
    PersonalAPIKey.objects.filter(user=user).delete()
    _, key = PersonalAPIKey.create_key(user=user, label="bench", scopes=["*"])
    http = Client(HTTP_AUTHORIZATION=f"Bearer {key}")
    with override_settings(ROOT_URLCONF=__name__):
        assert http.get(f"/ours/{project.id}/").status_code == 200
        before = client.info("commandstats")
        ours_endpoint = timed(lambda: http.get(f"/ours/{project.id}/"), args.requests)
        ours_endpoint_cmds = commands_delta(client, before) / args.requests
        with RoundTripCounter() as trips:
            for _ in range(100):
                http.get(f"/ours/{project.id}/")
        ours_endpoint_trips = trips.count / 100
        READER = PostHogStyleQuotaReader(client)
        cold_start = time.perf_counter()
        http.get(f"/posthog/{project.id}/")
        posthog_cold = time.perf_counter() - cold_start
        posthog_endpoint = timed(lambda: http.get(f"/posthog/{project.id}/"), args.requests)

    ours_mean = statistics.mean(ours)
    hit_mean = statistics.mean(hits)
    refresh_mean = statistics.mean(refresh)
    figures = {
        "tokens_seeded": args.tokens,
        "checks": args.checks,
        "ours_check_mean_us": us(ours_mean),
        "ours_check_p99_us": us(sorted(ours)[int(len(ours) * 0.99)]),
        "ours_redis_commands_per_check": round(ours_cmds, 3),
        "ours_redis_round_trips_per_check": round(ours_trips, 3),
        "ours_refresh_needed": False,
        "posthog_cache_hit_mean_us": us(hit_mean),
        "posthog_redis_commands_per_cache_hit": round(hit_cmds, 3),
        "posthog_refresh_mean_ms": round(refresh_mean * 1e3, 2),
        "posthog_cache_memory_bytes": posthog_cache_bytes,
        "ours_memory_bytes_after_1000_checks": ours_bytes,
        "ours_sees_change_on_next_check": ours_sees_it,
        "posthog_sees_change_on_next_check": posthog_sees_it,
        "ours_max_staleness_s": 0,
        "posthog_max_staleness_s": TTL_SECONDS,
        "endpoint_requests": args.requests,
        "ours_endpoint_mean_ms": round(statistics.mean(ours_endpoint) * 1e3, 3),
        "ours_endpoint_redis_commands_per_request": round(ours_endpoint_cmds, 2),
        "ours_endpoint_redis_round_trips_per_request": round(ours_endpoint_trips, 2),
        "posthog_endpoint_cold_ms": round(posthog_cold * 1e3, 2),
        "posthog_endpoint_warm_mean_ms": round(statistics.mean(posthog_endpoint) * 1e3, 3),
    }
    # Amortized per-check cost of PostHog's approach in one process at a steady rate:
    # one refresh every 30 s spread over the checks made in those 30 s.
    for rate in (10, 100, 1000):
        amortized = hit_mean + refresh_mean / (rate * TTL_SECONDS)
        figures[f"posthog_amortized_us_at_{rate}_checks_per_s"] = us(amortized)
        figures[f"ratio_ours_to_posthog_amortized_at_{rate}_per_s"] = round(ours_mean / amortized, 2)
    figures["ratio_ours_check_to_posthog_refresh"] = round(ours_mean / refresh_mean, 5)
    figures["ratio_ours_check_to_posthog_hit"] = round(ours_mean / hit_mean, 1)
    figures["ratio_ours_memory_to_posthog_memory"] = round(ours_bytes / max(posthog_cache_bytes, 1), 5)
    figures["ratio_ours_endpoint_to_posthog_warm"] = round(figures["ours_endpoint_mean_ms"] / figures["posthog_endpoint_warm_mean_ms"], 3)
    figures["ratio_ours_endpoint_to_posthog_cold"] = round(figures["ours_endpoint_mean_ms"] / figures["posthog_endpoint_cold_ms"], 4)

    width = max(len(k) for k in figures)
    text = "\n".join(f"{k.ljust(width)}  {v}" for k, v in figures.items())
    print(text)
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "quota_check.json").write_text(json.dumps(figures, indent=2) + "\n")
    (RESULTS / "quota_check.txt").write_text(text + "\n")
    client.flushdb()

    ok = ours_trips <= 1.0 and ours_cmds <= 1.0 and ours_endpoint_trips <= 1.0 and ours_sees_it
    if not ok:
        print("FAIL: our check (and the endpoint) must cost at most one Redis round trip and see changes at once", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
