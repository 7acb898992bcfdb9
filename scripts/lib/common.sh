#!/usr/bin/env bash
# Shared by scripts/test and scripts/demo: find Swift, install PostgreSQL when it is missing.

tenantry_root() { cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd; }

ensure_swift() {
  if ! command -v swift >/dev/null 2>&1; then
    if [ -x /opt/swift/usr/bin/swift ]; then
      export PATH="$PATH:/opt/swift/usr/bin"
    else
      echo "error: swift is not installed (expected on PATH or at /opt/swift/usr/bin); install Swift 6.1 or newer" >&2
      exit 1
    fi
  fi
}

have_postgres_server() {
  if [ -n "${TENANTRY_PG_BIN:-}" ] && [ -x "$TENANTRY_PG_BIN/initdb" ] && [ -x "$TENANTRY_PG_BIN/pg_ctl" ]; then
    return 0
  fi
  command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1 && return 0
  for dir in /usr/lib/postgresql/*/bin; do
    [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ] && return 0
  done
  return 1
}

# PostgreSQL's server programs (initdb, pg_ctl) and clients (psql, pg_dump, pg_restore).
ensure_postgres() {
  if have_postgres_server && command -v psql >/dev/null 2>&1 && command -v pg_dump >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing PostgreSQL (apt-get install postgresql postgresql-client)…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq postgresql postgresql-client >&2
  else
    echo "error: PostgreSQL is not installed. Install it with: sudo apt-get install postgresql postgresql-client" >&2
    echo "       (or point TENANTRY_PG_BIN at a directory holding initdb and pg_ctl)" >&2
    exit 1
  fi
  if ! have_postgres_server; then
    echo "error: PostgreSQL was installed but initdb/pg_ctl were not found under /usr/lib/postgresql/*/bin" >&2
    exit 1
  fi
}

# Chromium and its WebDriver (Debian's chromium, chromium-driver) for scripts/console-e2e.
ensure_chromium() {
  if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    return 0
  fi
  if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing Chromium (apt-get install chromium chromium-driver)…" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq chromium chromium-driver >&2
  else
    echo "error: Chromium is not installed. Install it with: sudo apt-get install chromium chromium-driver" >&2
    exit 1
  fi
  if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
    echo "error: chromium and chromedriver were installed but are not on PATH" >&2
    exit 1
  fi
}
