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
    workspaces.py     connecting a workspace by hand; finding a workspace's enabled integration; disable / mark broken
    oauth.py          "Add to Slack" (OAuth v2): admin check, authorize URL, code exchange, scope check, one org per workspace
    oauth_state.py    single-use, expiring OAuth states in the database (slack_sdk's OAuthStateStore), bound to who started
    signin.py         "Sign in with Slack" (OpenID Connect): identity -> user, membership of the workspace's organization
    install_views.py  GET /slack/install, /slack/oauth/callback, /slack/signin, /slack/signin/callback (thin)
    lifecycle.py      app_uninstalled, tokens_revoked, app_home_opened; billing page notices for broken/disabled apps
    home.py           the Home tab's blocks and views.publish (from the Celery task publish_home_tab)

Settings: SLACK_SIGNING_SECRET, SLACK_API_BASE_URL, SLACK_TOKEN_ENCRYPTION_KEY, SLACK_CLIENT_ID,
SLACK_CLIENT_SECRET, SLACK_OAUTH_AUTHORIZE_URL, SLACK_OPENID_AUTHORIZE_URL,
QUOTA_CHECK_FAILURE_MODE (open|closed), BILLING_URL, SITE_URL; for the routing model:
LLM_GATEWAY_URL, LLM_OPENAI_API_KEY / LLM_ANTHROPIC_API_KEY (either set: the router may ask),
LLM_ROUTING_MODEL (empty: gpt-4o-mini with OpenAI, else claude-haiku-4-5).
"""
