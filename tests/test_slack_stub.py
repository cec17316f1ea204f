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
