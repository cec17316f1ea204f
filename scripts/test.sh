#!/usr/bin/env bash
# Run the whole suite on PostgreSQL, real Redis and a Temporal dev server the session starts,
# then the tests marked `sqlite` again on SQLite (the database `make run` uses).
# Every step must pass; pytest's exit code 5 ("no tests collected") is a failure in each pass.
# Arguments go to both pytest passes (e.g. `scripts/test.sh -x tests/products/billing`).
set -uo pipefail
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/posthog_app}"
export DJANGO_SETTINGS_MODULE=posthog_app.settings_test

pytest_pass() {  # pytest_pass NAME ARGS...: run pytest, treating "no tests" as a failure
  local name=$1; shift
  .venv/bin/pytest "$@"
  local status=$?
  if [ "$status" -eq 5 ]; then
    echo "error: pytest collected no tests ($name)" >&2
    return 1
  fi
  [ "$status" -eq 0 ] || echo "error: the $name pass failed (pytest exit $status)" >&2
  return "$status"
}

# The import contracts are checked first, but a broken one does not hide the tests' results.
.venv/bin/lint-imports
contracts_status=$?
[ "$contracts_status" -eq 0 ] || echo "error: import contracts (.importlinter) are broken" >&2
.venv/bin/python manage.py spectacular --validate --fail-on-warn --file /dev/null || { echo "error: OpenAPI schema has errors or warnings" >&2; exit 1; }

pytest_pass PostgreSQL "$@"
postgres_status=$?

# SQLite: a fresh file in a temporary directory (pytest-django makes its test database beside it).
sqlite_dir=$(mktemp -d)
trap 'rm -rf "$sqlite_dir"' EXIT
DATABASE_URL="sqlite:///$sqlite_dir/db.sqlite3" pytest_pass SQLite -m sqlite "$@"
sqlite_status=$?

if [ "$contracts_status" -ne 0 ] || [ "$postgres_status" -ne 0 ] || [ "$sqlite_status" -ne 0 ]; then
  echo "error: import contracts exit $contracts_status, PostgreSQL pass exit $postgres_status, SQLite pass exit $sqlite_status" >&2
  exit 1
fi
echo "All passed: import contracts, PostgreSQL pass, SQLite pass."
