"""posthog_app.redis_client.OneRoundTrip: the webhook's Redis read, answering exactly as a pipeline of the same commands.

Invariants: the same replies as redis-py's pipeline; an error reply is raised only after
every reply is read, so the thread's connection stays in step for the next mention; a
connection Redis closed since its last use is made again (a restart costs no mention its
quota read); Redis unreachable is redis.ConnectionError, as before.
"""
from __future__ import annotations

import threading

import pytest
import redis

from posthog_app import redis_client
from posthog_app.redis_client import OneRoundTrip, get_client
from tests.conftest import free_port


def test_replies_are_a_pipelines(settings):
    r = get_client()
    r.set("generation", "g1")
    r.zadd("limits", {"token-a": 1234.5})
    ours = OneRoundTrip(0.25).get("generation").zscore("limits", "token-a").zscore("limits", "nobody").get("nothing").execute()
    pipe = r.pipeline(transaction=False)
    pipe.get("generation").zscore("limits", "token-a").zscore("limits", "nobody").get("nothing")
    assert ours == pipe.execute() == [b"g1", 1234.5, None, None]


def test_an_error_reply_is_raised_and_the_next_round_trip_never_reads_a_reply_left_over():
    r = get_client()
    r.zadd("limits", {"token-a": 1.0})
    r.set("generation", "g2")
    r.set("other", "o")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        OneRoundTrip(0.25).get("limits").get("generation").execute()
    assert OneRoundTrip(0.25).get("other").execute() == [b"o"]  # not b"g2", the reply to the round trip before


def test_a_connection_redis_closed_is_made_again_once():
    r = get_client()
    r.set("generation", "g3")
    assert OneRoundTrip(0.25).get("generation").execute() == [b"g3"]
    own = redis_client._thread_connection(get_client(0.25).connection_pool).connection
    own.send_command("CLIENT", "ID")
    client_id = own.read_response()
    assert r.client_kill_filter(_id=client_id) == 1  # as a Redis restart would
    assert OneRoundTrip(0.25).get("generation").execute() == [b"g3"]


def test_each_thread_has_a_connection_of_its_own():
    pool = get_client(0.25).connection_pool
    seen = []

    def one() -> None:
        OneRoundTrip(0.25).get("generation").execute()
        seen.append(redis_client._thread_connection(pool).connection)

    threads = [threading.Thread(target=one) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len({id(c) for c in seen}) == 3


def test_redis_unreachable_is_a_connection_error(settings):
    settings.REDIS_URL = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(redis.ConnectionError):
        OneRoundTrip(0.25).get("generation").execute()
