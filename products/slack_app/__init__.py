"""Slack integration: the Events API webhook, interactivity, the Slack client, thread <-> task mapping.

Modules:
    views.py          POST /slack/events, POST /slack/interactivity (thin; errors mapped in one place)
    signing.py        signature (slack_sdk SignatureVerifier, 5-minute window) and 1 MiB body limit
    events.py         what to do with an Events API envelope (typed outcomes)
    interactivity.py  the repository picker's buttons -> workflow signals
    models.py         Integration (bot token Fernet-encrypted at rest), SlackThreadTaskMapping
    slack_client.py   the one WebClient factory (SLACK_API_BASE_URL; 429s surface, never slept on)
    messages.py       every text the bot posts and the helpers that post them
    routing.py        which repository a mention is about

Settings: SLACK_SIGNING_SECRET, SLACK_API_BASE_URL, SLACK_TOKEN_ENCRYPTION_KEY,
QUOTA_CHECK_FAILURE_MODE (open|closed), BILLING_URL, SITE_URL.
"""
