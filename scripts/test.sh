#!/usr/bin/env bash
# Run the whole suite on PostgreSQL, real Redis and a Temporal dev server the session starts.
# pytest's exit code 5 ("no tests collected") is a failure here, like any other non-zero.
set -uo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/posthog_app}"
export DJANGO_SETTINGS_MODULE=posthog_app.settings_test
.venv/bin/python manage.py spectacular --validate --fail-on-warn --file /dev/null || { echo "error: OpenAPI schema has errors or warnings" >&2; exit 1; }
.venv/bin/pytest "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "error: pytest collected no tests" >&2
  exit 1
fi
exit "$status"
