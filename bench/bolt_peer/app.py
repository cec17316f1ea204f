"""The peer a team would otherwise pick: slack_bolt's App, verifying the signature and acking app_mention.

`process_before_response=True` is Bolt's setting for serverless/FaaS-style handling where
the listener runs before the HTTP response, the closest match to our "decide, then answer".
`SLACK_API_BASE_URL` points Bolt's one-off `auth.test` at the bench's loopback stand-in.
"""
import os

from slack_bolt import App
from slack_bolt.adapter.django import SlackRequestHandler
from slack_sdk import WebClient

app = App(
    signing_secret=os.environ["SLACK_SIGNING_SECRET"],
    client=WebClient(token=os.environ.get("SLACK_BOT_TOKEN", "xoxb-bench"), base_url=os.environ.get("SLACK_API_BASE_URL", "https://slack.com/api/")),
    token_verification_enabled=False,
    process_before_response=True,
)


@app.event("app_mention")
def on_mention(ack) -> None:
    ack()


handler = SlackRequestHandler(app=app)
