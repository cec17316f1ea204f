"""The Slack stand-in answers the real slack_sdk client the way Slack does."""
import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError


def test_real_client_calls_are_recorded_and_scripted_errors_surface(slack_api):
    client = WebClient(token="xoxb-test", base_url=slack_api.base_url)
    response = client.chat_postMessage(channel="C1", thread_ts="1.2", text="hello")
    assert response["ok"] and response["ts"]
    call = slack_api.calls_to("chat.postMessage")[0]
    assert call.args["text"] == "hello" and call.token == "xoxb-test"
    slack_api.respond("chat.postMessage", status=429, body={"ok": False, "error": "ratelimited"}, headers={"Retry-After": "7"})
    with pytest.raises(SlackApiError) as excinfo:
        client.chat_postMessage(channel="C1", text="again")
    assert excinfo.value.response.status_code == 429
    assert excinfo.value.response.headers["Retry-After"] == "7"


def test_threads_keep_posted_messages_and_their_metadata_like_slack(slack_api):
    client = WebClient(token="xoxb-test", base_url=slack_api.base_url)
    metadata = {"event_type": "posthog_code_bot_message", "event_payload": {"workflow_id": "wf", "step": "on_it"}}
    posted = client.chat_postMessage(channel="C1", thread_ts="1.2", text="tagged", metadata=metadata)
    client.chat_postMessage(channel="C1", thread_ts="9.9", text="another thread")
    with_metadata = client.conversations_replies(channel="C1", ts="1.2", include_all_metadata=True)["messages"]
    assert [(m["ts"], m["text"], m["metadata"]) for m in with_metadata] == [(posted["ts"], "tagged", metadata)]
    without = client.conversations_replies(channel="C1", ts="1.2")["messages"]
    assert [m["text"] for m in without] == ["tagged"] and "metadata" not in without[0]


def test_a_held_post_takes_effect_before_its_answer_comes(slack_api):
    import threading

    hold = slack_api.hold("chat.postMessage")
    client = WebClient(token="xoxb-test", base_url=slack_api.base_url)
    answered = threading.Event()
    threading.Thread(target=lambda: (client.chat_postMessage(channel="C1", thread_ts="1.2", text="slow"), answered.set()),
                     daemon=True).start()
    assert hold.held.wait(5)
    assert [m["text"] for m in slack_api.thread("C1", "1.2")] == ["slow"] and not answered.is_set()
    hold.release()
    assert answered.wait(5)
