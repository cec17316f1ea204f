"""Slack integration: the Events API webhook, interactivity, the Slack client, thread <-> task mapping.

Other products and `temporal/` import only `facade.py`. Modules:
    facade.py         the public module: the mention workflow's steps, their typed errors, connect_workspace
    views.py          POST /slack/events, POST /slack/interactivity (thin; errors mapped in one place)
    signing.py        signature (slack_sdk SignatureVerifier, 5-minute window) and 1 MiB body limit
    validation.py     the shape and length of every Slack field we act on
    events.py         what to do with an Events API envelope (typed outcomes)
    interactivity.py  the repository picker's buttons -> workflow signals (only what the picker offered)
    mentions.py       the mention's steps: quota gate and denial, routing, picker, task + thread, follow-ups
    posting.py        the one posting policy: post or raise, post quietly, post once (ledger + message metadata)
    messages.py       every text the bot posts and the picker's blocks
    text.py, names.py Slack markup -> the plain text tasks hold, with people and channels by name (cached)
    alerts.py         usage alerts: the receiver of billing's `usage_alert_due` signal
    models.py         Integration (bot token Fernet-encrypted at rest), SlackThreadTaskMapping, RepoPicker, BotMessage
    slack_client.py   the one WebClient factory (SLACK_API_BASE_URL; 429s surface, never slept on)
    routing.py        which repository a mention is about (rules: named in the text, the only one, the default)
    model_routing.py  when the rules cannot decide: ask a small model through the LLM gateway, else the picker
    workspaces.py     connecting a workspace by hand; finding a workspace's integration

Settings: SLACK_SIGNING_SECRET, SLACK_API_BASE_URL, SLACK_TOKEN_ENCRYPTION_KEY,
QUOTA_CHECK_FAILURE_MODE (open|closed), BILLING_URL, SITE_URL; for the routing model:
LLM_GATEWAY_URL, LLM_OPENAI_API_KEY / LLM_ANTHROPIC_API_KEY (either set: the router may ask),
LLM_ROUTING_MODEL (empty: gpt-4o-mini with OpenAI, else claude-haiku-4-5).
"""
