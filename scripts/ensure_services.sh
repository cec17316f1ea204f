#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer on 127.0.0.1; start (or install) them if not.
# Used by `make test`. Idempotent: services already up are left alone.
set -euo pipefail

wait_for() {  # wait_for NAME CMD...
  local name=$1; shift
  for _ in $(seq 1 30); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 1
  done
  echo "error: $name did not come up" >&2
  return 1
}

if ! command -v redis-server >/dev/null 2>&1; then
  echo "redis-server is missing; installing it with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server redis-tools >/dev/null
fi
# The browser test (tests/browser) drives Debian's Chromium through its chromedriver; no browser is downloaded.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  echo "chromium or chromedriver is missing; installing them with apt-get"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi
if ! redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then
  echo "starting Redis on 127.0.0.1:6379"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
fi
wait_for Redis redis-cli -h 127.0.0.1 -p 6379 ping

if ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  if command -v pg_ctlcluster >/dev/null 2>&1 && [ -d /etc/postgresql ]; then
    echo "starting PostgreSQL on 127.0.0.1:5432"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  else
    echo "error: PostgreSQL is not running on 127.0.0.1:5432 and no local cluster was found to start" >&2
    exit 1
  fi
fi
wait_for PostgreSQL pg_isready -h 127.0.0.1 -p 5432
