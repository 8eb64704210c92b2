#!/usr/bin/env bash
# Make sure PostgreSQL and Redis answer where the settings say (BP_DATABASE_URL, BP_REDIS_URL).
# Where one does not answer and the address is local, start a private one under
# $BP_STATE_DIR/services (installing Debian's postgresql / redis-server packages when missing).
# Idempotent; prints what it did. Private servers are stopped with scripts/stop-services.sh.
set -euo pipefail

STATE_DIR="${BP_STATE_DIR:-.bulletproof}"
SERVICES="$(mkdir -p "$STATE_DIR/services" && cd "$STATE_DIR/services" && pwd)"
DB_URL="${BP_DATABASE_URL:-postgresql://postgres@127.0.0.1:5432/bulletproof}"
REDIS_URL="${BP_REDIS_URL:-redis://127.0.0.1:6379/0}"

hostport() { # URL -> "host port"
  python3 - "$1" <<'PY'
import sys
from urllib.parse import urlsplit
u = urlsplit(sys.argv[1])
print(u.hostname or "127.0.0.1", u.port or (5432 if u.scheme.startswith("postgres") else 6379))
PY
}

apt_install() {
  if ! command -v apt-get >/dev/null; then echo "cannot install $*: no apt-get" >&2; exit 1; fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq "$@" >/dev/null
}

read -r PG_HOST PG_PORT <<<"$(hostport "$DB_URL")"
read -r REDIS_HOST REDIS_PORT <<<"$(hostport "$REDIS_URL")"

pg_up() { python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('$PG_HOST', $PG_PORT)))"; }
redis_up() { python3 -c "import socket,sys; s=socket.socket(); s.settimeout(1); sys.exit(s.connect_ex(('$REDIS_HOST', $REDIS_PORT)))"; }

if pg_up; then
  echo "postgresql: answering at $PG_HOST:$PG_PORT"
else
  if ls /etc/postgresql/*/main >/dev/null 2>&1 && command -v pg_ctlcluster >/dev/null; then
    echo "postgresql: starting the system cluster"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
  if ! pg_up; then
    BIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)"
    if [ -z "$BIN" ]; then apt_install postgresql; BIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)"; fi
    DATA="$SERVICES/postgres"
    RUNAS=()
    if [ "$(id -u)" = 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home "$DATA" postgres
      chown -R postgres "$SERVICES"; RUNAS=(runuser -u postgres --)
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
      "${RUNAS[@]}" "$BIN/initdb" -D "$DATA" -U postgres --auth=trust >/dev/null
    fi
    echo "postgresql: starting a private server in $DATA on $PG_HOST:$PG_PORT"
    "${RUNAS[@]}" "$BIN/pg_ctl" -D "$DATA" -l "$DATA/server.log" -w \
      -o "-h $PG_HOST -p $PG_PORT -k $DATA" start >/dev/null
  fi
fi

if redis_up; then
  echo "redis: answering at $REDIS_HOST:$REDIS_PORT"
else
  command -v redis-server >/dev/null || apt_install redis-server
  echo "redis: starting a private server in $SERVICES on $REDIS_HOST:$REDIS_PORT"
  redis-server --daemonize yes --bind "$REDIS_HOST" --port "$REDIS_PORT" --save "" --appendonly no \
    --dir "$SERVICES" --pidfile "$SERVICES/redis.pid" --logfile "$SERVICES/redis.log"
  for _ in $(seq 50); do redis_up && break; sleep 0.1; done
fi
