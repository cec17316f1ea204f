#!/usr/bin/env bash
# `make run`: the whole system on its embedded default, in the foreground.
#   Redis (reused if one already answers on 6379), Temporal dev server (SQLite under .devdata/),
#   migrations on SQLite, a demo account, then web + Temporal worker + Celery worker/beat under honcho.
# Ctrl-C stops everything this script started.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
mkdir -p .devdata

export DJANGO_SETTINGS_MODULE=posthog_app.settings
export DEBUG="${DEBUG:-1}"
# DATABASE_URL unset means the SQLite file under .devdata/ (see settings.py).
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/0}"
export TEMPORAL_ADDRESS="${TEMPORAL_ADDRESS:-127.0.0.1:7233}"
export SITE_URL="${SITE_URL:-http://127.0.0.1:8000}"
export WEB_PORT="${WEB_PORT:-8000}"
PY="$ROOT/.venv/bin/python"

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

PROCFILE=.devdata/Procfile
: > "$PROCFILE"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing; installing it with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
if port_open 6379; then
  echo "Using the Redis already answering on 127.0.0.1:6379"
else
  echo "redis: redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no" >> "$PROCFILE"
fi

TEMPORAL_PORT="${TEMPORAL_ADDRESS##*:}"
if port_open "$TEMPORAL_PORT"; then
  echo "Using the Temporal server already answering on $TEMPORAL_ADDRESS"
else
  echo "temporal: $ROOT/.venv/bin/temporal server start-dev --ip 127.0.0.1 --port $TEMPORAL_PORT --ui-port 8233 --db-filename $ROOT/.devdata/temporal.sqlite --log-level warn" >> "$PROCFILE"
fi

cat >> "$PROCFILE" <<PROCS
web: $PY manage.py runserver 127.0.0.1:$WEB_PORT --noreload
worker: $PY manage.py run_temporal_worker
celery: $ROOT/.venv/bin/celery -A posthog_app worker -B --concurrency 1 --loglevel INFO -s $ROOT/.devdata/celerybeat-schedule
PROCS

"$PY" manage.py migrate --noinput >/dev/null
# Point a real Slack app at this: SLACK_TEAM_ID=T... SLACK_BOT_TOKEN=xoxb-... SLACK_REPOS="acme/web acme/api"
# (and SLACK_SIGNING_SECRET) in the environment of `make run`.
BOOTSTRAP_ARGS=()
if [ -n "${SLACK_TEAM_ID:-}" ]; then
  BOOTSTRAP_ARGS+=(--slack-team-id "$SLACK_TEAM_ID")
  [ -n "${SLACK_BOT_TOKEN:-}" ] && BOOTSTRAP_ARGS+=(--slack-bot-token "$SLACK_BOT_TOKEN")
  for repo in ${SLACK_REPOS:-}; do BOOTSTRAP_ARGS+=(--repo "$repo"); done
fi
DEMO=$("$PY" manage.py bootstrap_demo "${BOOTSTRAP_ARGS[@]}")
PROJECT_ID=$(sed -n 's/^PROJECT_ID=//p' <<<"$DEMO")
PERSONAL_API_KEY=$(sed -n 's/^PERSONAL_API_KEY=//p' <<<"$DEMO")
ADMIN_USERNAME=$(sed -n 's/^ADMIN_USERNAME=//p' <<<"$DEMO")
ADMIN_PASSWORD=$(sed -n 's/^ADMIN_PASSWORD=//p' <<<"$DEMO")
printf '%s\n' "$DEMO" > .devdata/demo.env

cat <<BANNER

================================================================================
 Starting: $(cut -d: -f1 "$PROCFILE" | tr '\n' ' ')
 Web            http://127.0.0.1:$WEB_PORT/
 Admin          http://127.0.0.1:$WEB_PORT/admin/   ($ADMIN_USERNAME / $ADMIN_PASSWORD)
 API docs       http://127.0.0.1:$WEB_PORT/api/schema/swagger-ui/
 Health         http://127.0.0.1:$WEB_PORT/healthz   http://127.0.0.1:$WEB_PORT/readyz
 Temporal UI    http://127.0.0.1:8233/
 Slack webhook  http://127.0.0.1:$WEB_PORT/slack/events
 Demo account   .devdata/demo.env
   PROJECT_ID=$PROJECT_ID
   PERSONAL_API_KEY=$PERSONAL_API_KEY
 Try:
   curl -H "Authorization: Bearer $PERSONAL_API_KEY" http://127.0.0.1:$WEB_PORT/api/projects/$PROJECT_ID/quota_limits/
   .venv/bin/python manage.py quota_limits set --project $PROJECT_ID --resource ai_credits --until +1d
 Ctrl-C stops everything.
================================================================================

BANNER

exec "$ROOT/.venv/bin/honcho" -f "$PROCFILE" -d "$ROOT" start
