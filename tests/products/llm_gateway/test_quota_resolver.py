"""The gateway's `ai_credits` quota sources (products/llm_gateway/quota.py).

Invariants: a limited project is refused by either source; an unknown quota state is
never read as "not limited" for long (redis: never; http: at most 60 s of continuous
failure); a credential the quota endpoint refuses is refused, every time, whatever
another credential was told.

The http source talks to a REAL quota endpoint: pytest-django's `live_server` serving the
project's own `GET /api/projects/{id}/quota_limits/`, reached through a loopback
'remote deployment' (quota_support.RemoteQuota) that can also answer 500, 403 or slowly.
The clock is injected, so "500 for 70 s" takes no 70 s of wall time.
"""
from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.request

import pytest

from products.billing import quota_limiting as ql
from products.billing.quota_limiting import QuotaResource
from products.llm_gateway.quota import HttpQuotaSource, RedisQuotaSource, get_quota_resolver

from .quota_support import Clock, RemoteQuota, Sleeps, context, refuse_like_posthog

AI = QuotaResource.AI_CREDITS


def run(coro):
    return asyncio.run(coro)


@pytest.fixture
def member(accounts):
    org = accounts.organization()
    project = accounts.project(org)
    user = accounts.user(org)
    _, key = accounts.key(user, scopes=["llm_gateway:read"])
    return project, user, key


def limit(project, seconds: float = 3600) -> int:
    until = int(time.time() + seconds)
    ql.add_limited_tokens(AI, {project.api_token: until})
    return until


# --- redis ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_redis_source_not_limited_then_limited_with_retry_after_until_the_limit_ends(member):
    project, _, key = member
    source = RedisQuotaSource(timeout=0.5)
    ctx = context(project, key)
    assert run(source.check(ctx)).limited is False
    until = limit(project, 3600)
    answer = run(source.check(ctx))
    assert answer.limited and answer.reason == "limited"
    assert abs(answer.retry_after - (until - time.time())) <= 2
    assert "limited until" in answer.message
    ql.remove_limited_tokens(AI, [project.api_token])
    assert run(source.check(ctx)).limited is False  # no cache: a lift is seen by the next call


@pytest.mark.django_db
def test_redis_source_sees_an_expired_limit_as_over(member):
    project, _, key = member
    ql.add_limited_tokens(AI, {project.api_token: int(time.time()) - 5})
    assert run(RedisQuotaSource().check(context(project, key))).limited is False


@pytest.mark.django_db
def test_redis_source_fails_closed_when_redis_is_unreachable(member, settings):
    """Nothing after the gateway checks again before money is spent: unknown state refuses."""
    project, _, key = member
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    started = time.monotonic()
    answer = run(RedisQuotaSource(timeout=0.3).check(context(project, key)))
    assert answer.limited and answer.reason == "unavailable" and answer.retry_after >= 1
    assert time.monotonic() - started < 2  # a short timeout, not the shared client's 2 s


def test_the_resolver_follows_the_setting(settings):
    settings.LLM_GATEWAY_QUOTA_SOURCE = "redis"
    assert isinstance(get_quota_resolver(), RedisQuotaSource)
    settings.LLM_GATEWAY_QUOTA_SOURCE = "http"
    settings.LLM_GATEWAY_QUOTA_URL = "http://quota.example"
    resolver = get_quota_resolver()
    assert isinstance(resolver, HttpQuotaSource) and resolver.base_url == "http://quota.example"
    assert resolver.cache_seconds == 30 and resolver.fail_open_seconds == 60
    assert get_quota_resolver() is resolver  # one per process while the settings hold


# --- http -------------------------------------------------------------------------------


@pytest.fixture
def remote(live_server):
    # Warm the server (its first request loads the URLconf), so a 0.5 s attempt is not cut off by it.
    try:
        urllib.request.urlopen(f"{live_server.url}/api/projects/1/quota_limits/", timeout=30)
    except urllib.error.HTTPError:
        pass
    stand_in = RemoteQuota(upstream=live_server.url).start()
    yield stand_in
    stand_in.stop()


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def source(remote, clock, sleeps):
    return HttpQuotaSource(remote.base_url, cache_seconds=30, timeout=5, retries=2, backoff=0.05,
                           fail_open_seconds=60, clock=clock, sleep=sleeps)


http = pytest.mark.django_db(transaction=True)


@http
def test_http_source_reads_the_real_endpoint_with_the_callers_key(source, remote, member):
    project, _, key = member
    assert run(source.check(context(project, key))).limited is False
    [seen] = remote.requests
    assert seen.path == f"/api/projects/{project.id}/quota_limits/"
    assert seen.headers["authorization"] == f"Bearer {key}" and "x-api-key" not in seen.headers


@http
def test_http_source_sends_the_key_in_the_header_the_caller_used(source, remote, member):
    project, _, key = member
    ctx = context(project, key, extra={"credential_header": "x-api-key"})
    assert run(source.check(ctx)).limited is False
    [seen] = remote.requests
    assert seen.headers["x-api-key"] == key and "authorization" not in seen.headers


@http
def test_http_source_limited_answer_is_cached_until_limited_until(source, remote, member, clock):
    project, _, key = member
    until = limit(project, 3600)
    ctx = context(project, key)
    answer = run(source.check(ctx))
    assert answer.limited and answer.reason == "limited" and abs(answer.retry_after - (until - clock())) <= 1
    ql.remove_limited_tokens(AI, [project.api_token])  # lifted at the source...
    clock.advance(3000)
    again = run(source.check(ctx))
    assert again.limited and again.cached and remote.count() == 1  # ...but the cached limit holds until its end
    # Cached for the project, whoever asks: a "limited" answer can only refuse.
    other = context(project, "phx_someone_else")
    assert run(source.check(other)).limited and remote.count() == 1
    clock.now = until + 1
    assert run(source.check(ctx)).limited is False and remote.count() == 2


@http
def test_http_source_not_limited_answer_is_cached_for_the_ttl(source, remote, member, clock):
    project, _, key = member
    ctx = context(project, key)
    assert run(source.check(ctx)).limited is False
    limit(project)
    clock.advance(29)
    answer = run(source.check(ctx))
    assert answer.limited is False and answer.cached and remote.count() == 1
    clock.advance(2)  # 31 s: the negative answer has expired
    assert run(source.check(ctx)).limited is True and remote.count() == 2


@http
def test_http_source_not_limited_answer_is_cached_per_credential(source, remote, member, accounts):
    """A 'not limited' answer is never handed to a credential the endpoint did not answer."""
    project, user, key = member
    assert run(source.check(context(project, key))).limited is False
    _, other_key = accounts.key(user, scopes=["llm_gateway:read"])
    assert run(source.check(context(project, other_key))).limited is False
    assert remote.count() == 2
    refuse_like_posthog(remote)
    _, no_scope = accounts.key(user, scopes=["llm_gateway:read"])
    assert run(source.check(context(project, no_scope))).limited is True  # not the others' cached answer
    assert run(source.check(context(project, key))).limited is False  # the cached one still serves its own key


@http
def test_http_source_refuses_on_401_and_never_caches_it(source, remote, member):
    project, _, key = member
    ctx = context(project, "phx_not_a_real_key_at_all")
    for expected in (1, 2):
        answer = run(source.check(ctx))
        assert answer.limited and answer.reason == "refused" and "not accepted" in answer.message
        assert remote.count() == expected  # asked again: a refusal is not cached
    assert run(source.check(context(project, key))).limited is False  # and not team-wide either


@http
def test_http_source_refuses_on_403_from_the_real_endpoint_and_never_caches_it(source, remote, member, accounts):
    project, user, key = member
    _, wrong_scope = accounts.key(user, scopes=["task:read"])
    ctx = context(project, wrong_scope)
    assert run(source.check(ctx)).reason == "refused"
    assert run(source.check(ctx)).reason == "refused"
    assert remote.count() == 2
    assert run(source.check(context(project, key))).limited is False  # the project is not refused for others


@http
def test_http_source_refuses_a_key_without_project_read_where_the_remote_wants_it(source, remote, member):
    """The seed's bypass: a 403 (llm_gateway:read, no project:read) was read as 'not limited'."""
    project, _, key = member
    refuse_like_posthog(remote)
    answer = run(source.check(context(project, key)))
    assert answer.limited and answer.reason == "refused" and "may not read" in answer.message
    assert source.failing_since is None  # the endpoint is up: this is no outage to fail open through


@http
def test_http_source_refuses_a_project_the_key_cannot_see(source, remote, member, accounts):
    project, _, _ = member
    stranger = accounts.user(accounts.organization())
    _, their_key = accounts.key(stranger, scopes=["llm_gateway:read"])
    answer = run(source.check(context(project, their_key)))
    assert answer.limited and answer.reason == "refused" and "cannot see" in answer.message


@http
def test_http_source_500_for_70_seconds_is_open_then_closed_then_recovers(source, remote, member, clock, sleeps):
    project, _, key = member
    ctx = context(project, key)
    remote.mode = "fail"

    first = run(source.check(ctx))
    assert first.limited is False and first.reason == "fail_open"
    assert remote.count() == 3 and sleeps.delays == [0.05, 0.1]  # retried with exponential backoff
    for elapsed in (10, 30, 59):
        clock.now = source.failing_since + elapsed
        assert run(source.check(ctx)).reason == "fail_open", elapsed
    for elapsed in (60, 65, 70):
        clock.now = source.failing_since + elapsed
        answer = run(source.check(ctx))
        assert answer.limited and answer.reason == "unavailable" and answer.retry_after >= 1, elapsed
    assert remote.count() == 3 * 7  # nothing cached while failing

    remote.mode = "pass"  # the endpoint recovers
    assert run(source.check(ctx)).reason == "ok"
    assert source.failing_since is None

    remote.mode = "fail"  # a new outage gets a new 60 s, not the old one's
    clock.advance(31)  # past the negative cache
    assert run(source.check(ctx)).reason == "fail_open"


@http
def test_http_source_over_the_window_a_limited_project_stays_limited_from_cache(source, remote, member, clock):
    project, _, key = member
    limit(project, 7200)
    ctx = context(project, key)
    assert run(source.check(ctx)).reason == "limited"
    remote.mode = "fail"
    clock.advance(600)
    assert run(source.check(ctx)).reason == "limited" and remote.count() == 1


@http
def test_http_source_timeouts_count_as_failures(remote, member, clock, sleeps):
    project, _, key = member
    remote.mode, remote.delay = "slow", 1.0
    source = HttpQuotaSource(remote.base_url, timeout=0.2, retries=1, clock=clock, sleep=sleeps)
    started = time.monotonic()
    answer = run(source.check(context(project, key)))
    assert answer.reason == "fail_open" and remote.count() == 2
    assert time.monotonic() - started < 1.5  # bounded: two attempts of 0.2 s
    clock.advance(61)
    assert run(source.check(context(project, key))).reason == "unavailable"


@http
def test_http_source_an_unreadable_answer_is_a_failure_not_a_verdict(source, remote, member):
    project, _, key = member
    remote.mode, remote.status, remote.body = "status", 200, b'{"limited": {"ai_credits": {"limited": "no"}}}'
    assert run(source.check(context(project, key))).reason == "fail_open"
    remote.body = b"<html>a proxy's page</html>"
    assert run(source.check(context(project, key))).reason == "fail_open"


def test_http_source_an_unreachable_endpoint_fails_open_then_closed(member_free_ctx):
    clock = Clock()
    source = HttpQuotaSource("http://127.0.0.1:1", timeout=0.2, retries=1, clock=clock, sleep=Sleeps())
    assert run(source.check(member_free_ctx)).reason == "fail_open"
    clock.advance(60)
    assert run(source.check(member_free_ctx)).reason == "unavailable"


@pytest.fixture
def member_free_ctx():
    """A context for a project that needs no database (the endpoint is never reached)."""

    class P:
        id = 1
        api_token = "phc_x"
        organization_id = 1

    return context(P, "phx_key")


@http
def test_http_source_concurrent_checks_share_one_request(source, remote, member, accounts):
    """A burst on a cold cache asks the endpoint once per credential, not once per call."""
    project, user, key = member
    _, other = accounts.key(user, scopes=["llm_gateway:read"])
    remote.mode, remote.delay = "slow", 0.3

    async def burst():
        return await asyncio.gather(*(source.check(context(project, k)) for k in [key] * 10 + [other] * 5))

    answers = run(burst())
    assert all(a.reason == "ok" for a in answers)
    assert remote.count() == 2
