#!/usr/bin/env bash
# `make run`: the whole system on its embedded default, in the foreground.
#   Redis (reused if one already answers on 6379), Temporal dev server (SQLite under .devdata/),
#   migrations on SQLite, a demo account, then web + LLM gateway + Temporal worker + inbox relay + Celery worker/beat under
#   scripts/supervise.py. Ctrl-C stops everything this script started (piped or not) and exits 0.
#
# Environment (all optional): WEB_PORT (8000), GATEWAY_PORT (8001: the LLM gateway, uvicorn),
# LLM_GATEWAY_URL (http://127.0.0.1:$GATEWAY_PORT), BACKGROUND_CPU (idle), TEMPORAL_ADDRESS (127.0.0.1:7233), TEMPORAL_UI_PORT
# (8233), REDIS_URL, SITE_URL (http://127.0.0.1:$WEB_PORT; a tunnel's URL to point a real Slack app
# here), ALLOWED_HOSTS, DEBUG (default 0), SECRET_KEY (default: a random one kept in
# $DEVDATA_DIR/secret_key), DEVDATA_DIR (.devdata), and the SLACK_* variables read below.
# Models: LLM_OPENAI_API_KEY / LLM_ANTHROPIC_API_KEY; LLM_AGENT_MODEL (the built-in agent's model). With
# no key and no LLM_AGENT_MODEL the agent uses the gateway's offline demo model "posthog-demo", which
# says in every answer that it is not a real AI: the whole mention -> answer loop works offline.
set -euo pipefail
# `make run | head` must not kill the setup half-way: with SIGPIPE ignored a write to a closed
# pipe fails (and `say` drops it) instead of killing the script.
trap '' PIPE
cd "$(dirname "$0")/.."
ROOT=$PWD
PY="$ROOT/.venv/bin/python"

say() { printf '%s\n' "$@" 2>/dev/null || true; }

export DJANGO_SETTINGS_MODULE=posthog_app.settings
export DEVDATA_DIR="${DEVDATA_DIR:-$ROOT/.devdata}"
mkdir -p "$DEVDATA_DIR"
# DEBUG off: Django's debug page would show settings and local variables (the Slack signing
# secret among them) to anyone reaching this through a tunnel. Static files come from WhiteNoise.
export DEBUG="${DEBUG:-0}"
if [ -z "${SECRET_KEY:-}" ]; then
  # One random key per checkout, kept so sessions and encrypted Slack tokens survive restarts.
  if [ ! -s "$DEVDATA_DIR/secret_key" ]; then
    (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' > "$DEVDATA_DIR/secret_key")
  fi
  SECRET_KEY=$(cat "$DEVDATA_DIR/secret_key")
  export SECRET_KEY
fi
# DATABASE_URL unset means the SQLite file $DEVDATA_DIR/db.sqlite3 (see settings.py).
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-127.0.0.1:7233}"
export WEB_PORT="${WEB_PORT:-8000}"
export SITE_URL="${SITE_URL:-http://127.0.0.1:$WEB_PORT}"
export GATEWAY_PORT="${GATEWAY_PORT:-8001}"
export LLM_GATEWAY_URL="${LLM_GATEWAY_URL:-http://127.0.0.1:$GATEWAY_PORT}"
TEMPORAL_UI_PORT="${TEMPORAL_UI_PORT:-8233}"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Order matters: supervise.py stops processes in reverse order, so the stores go last (and the
# gateway after the worker, whose repository router calls it).
PROCFILE="$DEVDATA_DIR/Procfile"

if [ -n "${LLM_AGENT_MODEL:-}" ]; then
  AGENT_MODEL_NOTE="$LLM_AGENT_MODEL (LLM_AGENT_MODEL)"
elif [ -n "${LLM_OPENAI_API_KEY:-}" ]; then
  AGENT_MODEL_NOTE="gpt-4o-mini (LLM_OPENAI_API_KEY is set; LLM_AGENT_MODEL picks another)"
elif [ -n "${LLM_ANTHROPIC_API_KEY:-}" ]; then
  AGENT_MODEL_NOTE="claude-sonnet-4-5 (LLM_ANTHROPIC_API_KEY is set; LLM_AGENT_MODEL picks another)"
else
  AGENT_MODEL_NOTE="posthog-demo: the OFFLINE DEMO model, not a real AI (set LLM_OPENAI_API_KEY or LLM_ANTHROPIC_API_KEY)"
fi
: > "$PROCFILE"

# The Temporal dev server, the worker and Celery run in the background CPU class (BACKGROUND_CPU=idle,
# scripts/background_cpu.py: SCHED_IDLE, which `nice` is not enough to stand for): on a machine they
# share with the web, a burst of mentions is acknowledged first and worked on a moment later, with
# every CPU cycle the web leaves. BACKGROUND_CPU=normal runs them like the rest. The inbox relay
# stays in the normal class: it only hands the recorded mentions to Temporal, and starved with the
# worker it left them waiting in the inbox (ack -> workflow start p99 0.3 -> 16 s, on the worker's thread).
case "${BACKGROUND_CPU:=idle}" in
  idle) BACKGROUND="$PY $ROOT/scripts/background_cpu.py" ;;
  normal) BACKGROUND="" ;;
  *) say "BACKGROUND_CPU must be idle or normal, got '$BACKGROUND_CPU'"; exit 2 ;;
esac
if ! command -v redis-server >/dev/null 2>&1; then
  say "redis-server is missing; installing it with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if port_open 6379; then
  say "Using the Redis already answering on 127.0.0.1:6379"
else
  echo "redis: redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no" >> "$PROCFILE"
fi

TEMPORAL_PORT="${TEMPORAL_ADDRESS##*:}"
# SQLite's write-ahead log instead of its default rollback journal: one fsync per commit instead of
# two or three (journal, database, journal deleted), each still made before the commit returns
# (synchronous stays FULL), so nothing Temporal acknowledged is lost. Measured with the worker
# draining a burst of mentions (bench/slack_webhook.py --temporal-journal): 16.5 -> 22.6 mentions
# turned into tasks per second, and less of the disk's flush time taken from PostgreSQL's commits.
if port_open "$TEMPORAL_PORT"; then
  say "Using the Temporal server already answering on $TEMPORAL_ADDRESS"
else
  echo "temporal: $BACKGROUND $ROOT/.venv/bin/temporal server start-dev --ip 127.0.0.1 --port $TEMPORAL_PORT --ui-port $TEMPORAL_UI_PORT --db-filename $DEVDATA_DIR/temporal.sqlite --sqlite-pragma journal_mode=wal --log-level error" >> "$PROCFILE"
fi

# Celery warns about running as root on every start; a development machine often is root.
CELERY_QUIET="PYTHONWARNINGS=ignore:You're running the worker with superuser privileges"
cat >> "$PROCFILE" <<PROCS
web: $PY manage.py runserver 127.0.0.1:$WEB_PORT --noreload
gateway: $ROOT/.venv/bin/uvicorn posthog_app.asgi:application --host 127.0.0.1 --port $GATEWAY_PORT --lifespan off --no-access-log --log-level warning
worker: $BACKGROUND $PY manage.py run_temporal_worker --no-relay
relay: $PY manage.py run_inbox_relay
celery: $BACKGROUND env "$CELERY_QUIET" $ROOT/.venv/bin/celery -A posthog_app worker -B --concurrency 1 --loglevel INFO -s $DEVDATA_DIR/celerybeat-schedule
PROCS

# Bytecode for our own modules: Temporal's workflow sandbox imports the workflow modules afresh
# for every workflow run, and where no .pyc exists (PYTHONDONTWRITEBYTECODE) it compiles them
# from source each time (measured: about 15% of the worker's CPU per task run).
"$PY" -m compileall -q products temporal posthog_app >/dev/null
"$PY" manage.py migrate --noinput >/dev/null
mkdir -p "$ROOT/staticfiles"  # WhiteNoise's STATIC_ROOT (empty: files come from the apps), else it warns
# Point a real Slack app at this: SLACK_TEAM_ID=T... SLACK_BOT_TOKEN=xoxb-... SLACK_REPOS="acme/web acme/api"
# (and SLACK_SIGNING_SECRET) in the environment of `make run`.
BOOTSTRAP_ARGS=()
if [ -n "${SLACK_TEAM_ID:-}" ]; then
  BOOTSTRAP_ARGS+=(--slack-team-id "$SLACK_TEAM_ID")
  [ -n "${SLACK_BOT_TOKEN:-}" ] && BOOTSTRAP_ARGS+=(--slack-bot-token "$SLACK_BOT_TOKEN")
  for repo in ${SLACK_REPOS:-}; do BOOTSTRAP_ARGS+=(--repo "$repo"); done
fi
# A new demo key each time; the previous one stops working (bootstrap_demo rotates it).
DEMO=$("$PY" manage.py bootstrap_demo "${BOOTSTRAP_ARGS[@]}")
PROJECT_ID=$(sed -n 's/^PROJECT_ID=//p' <<<"$DEMO")
PERSONAL_API_KEY=$(sed -n 's/^PERSONAL_API_KEY=//p' <<<"$DEMO")
ADMIN_USERNAME=$(sed -n 's/^ADMIN_USERNAME=//p' <<<"$DEMO")
ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' <<<"$DEMO")
(umask 077 && printf '%s\n' "$DEMO" > "$DEVDATA_DIR/demo.env")

say "
================================================================================
 Starting: $(cut -d: -f1 "$PROCFILE" | tr '\n' ' ')
 Web            $SITE_URL/   (home: billing, API docs, admin)
 Sign in        $SITE_URL/login/   ($ADMIN_USERNAME / $ADMIN_PASSWORD)
 Billing        $SITE_URL/billing/
 Admin          $SITE_URL/admin/
 API docs       $SITE_URL/api/schema/swagger-ui/
 Health         $SITE_URL/healthz   $SITE_URL/readyz
 LLM gateway    $LLM_GATEWAY_URL/llm/{product}/v1/chat/completions | /v1/messages | /v1/models
                (upstreams: LLM_OPENAI_API_KEY / LLM_ANTHROPIC_API_KEY; unset answers 503, except the demo model)
 Agent model    $AGENT_MODEL_NOTE
 Temporal UI    http://127.0.0.1:$TEMPORAL_UI_PORT/
 Slack webhook  $SITE_URL/slack/events
 Demo account   $DEVDATA_DIR/demo.env   (DEBUG=$DEBUG)
   PROJECT_ID=$PROJECT_ID
   PERSONAL_API_KEY=$PERSONAL_API_KEY   (replaces the previous demo key)
 Try:
   curl -H \"Authorization: Bearer $PERSONAL_API_KEY\" $SITE_URL/api/projects/$PROJECT_ID/quota_limits/
   .venv/bin/python manage.py quota_limits set --project $PROJECT_ID --resource ai_credits --until +1d
   curl -H \"x-api-key: $PERSONAL_API_KEY\" $LLM_GATEWAY_URL/llm/posthog_code/v1/models
 Ctrl-C stops everything.
================================================================================
"

exec "$PY" "$ROOT/scripts/supervise.py" "$PROCFILE"
