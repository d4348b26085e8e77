#!/bin/bash
# The local Agora stack under one directory: PostgreSQL, Redis, one mock
# provider per catalog provider, agora-router, agora-billing, agora-analytics.
#
#   deploy/devstack.sh start|stop|status DIR
#
# `make run` uses DIR=var on fixed ports; the integration tests use a
# temporary DIR on free ports. Ports and files come from the environment:
#   AGORA_BUILD (build)  AGORA_CATALOG (deploy/catalog.demo.json)
#   AGORA_PG_PORT (8632) AGORA_REDIS_PORT (8679)
#   AGORA_ROUTER_PORT (8680) AGORA_ANALYTICS_PORT (8681)
#   AGORA_PG_FAST=1      PostgreSQL without fsync (tests only)
#   AGORA_SIMULATE=1     demo traffic once (`agoractl simulate`; make run sets it)
#   AGORA_SIMULATE_DAYS (90) AGORA_SIMULATE_RATE (200 events/hour)
# Any other AGORA_<KEY> variable overrides that config key in the services.
# start is idempotent (what runs is left alone, keys are reused); stop stops
# exactly what this DIR started, by its pid files.
set -euo pipefail

cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|status DIR" >&2; exit 2; }
root=$(cd "$(dirname "$0")/.." && pwd)
mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
build=$(cd "$root" && cd "${AGORA_BUILD:-build}" 2>/dev/null && pwd || echo "$root/build")
catalog=${AGORA_CATALOG:-$root/deploy/catalog.demo.json}
pg_port=${AGORA_PG_PORT:-8632}; redis_port=${AGORA_REDIS_PORT:-8679}
router_port=${AGORA_ROUTER_PORT:-8680}; analytics_port=${AGORA_ANALYTICS_PORT:-8681}
pgbin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
run=$dir/run; logs=$dir/log
py=/usr/bin/python3

say() { printf 'stack: %s\n' "$*"; }
# A pid file's process runs (a zombie left by kill -9 does not count).
alive() {
	[ -f "$1" ] || return 1
	local p; p=$(cat "$1")
	[ -r "/proc/$p/stat" ] && [ "$(cut -d' ' -f3 "/proc/$p/stat" 2>/dev/null)" != Z ]
}
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

wait_http() {	# url, seconds, log
	for _ in $(seq $(( $2 * 10 ))); do
		curl -sf -o /dev/null "$1" && return 0
		sleep 0.1
	done
	say "no answer from $1; last lines of $3:"; tail -20 "$3" >&2; return 1
}

start_pg() {
	if [ "$(id -u)" -eq 0 ]; then
		# postgres must reach its data directory: open the path for traversal.
		p=$dir
		while [ "$p" != "/" ]; do
			[ -x "$p" ] && perm=$(stat -c %A "$p") && [ "${perm:9:1}" != "x" ] && [ "${perm:9:1}" != "t" ] && chmod o+x "$p"
			p=$(dirname "$p")
		done
		mkdir -p "$dir/pg" && chown postgres "$dir/pg" "$run" "$logs"
	fi
	if [ ! -f "$dir/pg/PG_VERSION" ]; then
		say "initialising PostgreSQL in $dir/pg"
		as_pg "$pgbin/initdb" -D "$dir/pg" -U postgres -A trust -E UTF8 --no-instructions >"$logs/initdb.log" 2>&1
	fi
	if ! as_pg "$pgbin/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
		opts="-p $pg_port -c listen_addresses=127.0.0.1 -c unix_socket_directories=$run"
		[ "${AGORA_PG_FAST:-0}" = 1 ] && opts="$opts -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
		as_pg "$pgbin/pg_ctl" -D "$dir/pg" -l "$logs/postgres.log" -o "$opts" -w -t 60 start >/dev/null
		say "PostgreSQL on 127.0.0.1:$pg_port"
	fi
	psql_pg() { psql -X -q -h 127.0.0.1 -p "$pg_port" -U postgres -d postgres -tAc "$1"; }
	[ "$(psql_pg "SELECT 1 FROM pg_roles WHERE rolname = 'agora'")" = 1 ] || psql_pg "CREATE ROLE agora LOGIN SUPERUSER"
	[ "$(psql_pg "SELECT 1 FROM pg_database WHERE datname = 'agora'")" = 1 ] || psql_pg "CREATE DATABASE agora OWNER agora TEMPLATE template0 ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C.UTF-8'"
}

# AOF, fsynced every second, no RDB snapshots: deploy/redis.md says why and
# what the other choices cost (and how to run Sentinel or a Cluster instead).
start_redis() {
	alive "$run/redis.pid" && return 0
	mkdir -p "$dir/redis"
	redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$dir/redis" --daemonize yes \
		--pidfile "$run/redis.pid" --logfile "$logs/redis.log" --appendonly yes \
		--appendfsync everysec --save "" >/dev/null
	for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
	say "Redis on 127.0.0.1:$redis_port"
}

write_conf() {
	[ -f "$dir/key_secret" ] || (umask 077; openssl rand -hex 32 > "$dir/key_secret")
	[ -f "$dir/master.key" ] || (umask 077; openssl rand -hex 32 > "$dir/master.key")
	cat > "$dir/agora.conf" <<CONF
# Written by deploy/devstack.sh for the stack in $dir.
listen = 127.0.0.1:$router_port
analytics_listen = 127.0.0.1:$analytics_port
pg_dsn = host=127.0.0.1 port=$pg_port dbname=agora user=agora
redis_host = 127.0.0.1
redis_port = $redis_port
key_secret_file = $dir/key_secret
master_key_file = $dir/master.key
spool_path = $dir/spool/usage.spool
upstream_ca_file = $dir/tls/ca.pem
CONF
	mkdir -p "$dir/spool"
}

make_tls() {	# a private CA and a certificate for 127.0.0.1, for https mocks
	[ -f "$dir/tls/server.pem" ] && return 0
	mkdir -p "$dir/tls"; t=$dir/tls
	openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=agora-dev-ca -keyout "$t/ca.key" -out "$t/ca.pem" -days 3650 2>/dev/null
	openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout "$t/server.key" -out "$t/server.csr" 2>/dev/null
	printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' > "$t/ext"
	openssl x509 -req -in "$t/server.csr" -CA "$t/ca.pem" -CAkey "$t/ca.key" -CAcreateserial -out "$t/server.pem" -days 3650 -extfile "$t/ext" 2>/dev/null
}

ctl() { AGORA_CONF="$dir/agora.conf" "$build/agoractl" --migrations "$root/migrations" "$@"; }

provision() {
	ctl migrate >/dev/null
	ctl catalog import "$catalog" | tail -1 | sed 's/^/stack: /'
	if [ ! -f "$dir/keys.env" ]; then
		ctl account create demo --credits 100 --if-missing >/dev/null
		ctl account create operator --if-missing >/dev/null
		k=$(ctl key create demo --name demo 2>/dev/null)
		a=$(ctl key create operator --name admin --operator 2>/dev/null)
		(umask 077; printf 'AGORA_KEY=%s\nAGORA_ADMIN_KEY=%s\n' "$k" "$a" > "$dir/keys.env")
	fi
}

# Demo traffic for the dashboards (AGORA_SIMULATE=1, as `make run` sets
# it): months of simulated usage through the stream and billing, once (the
# command does nothing when simulated data is there). A failure is reported,
# not fatal: the stack runs without it.
simulate() {
	[ "${AGORA_SIMULATE:-0}" = 1 ] || return 0
	ctl simulate --days "${AGORA_SIMULATE_DAYS:-90}" --rate "${AGORA_SIMULATE_RATE:-200}" --wait 120 2>&1 |
		sed 's/^/stack: /' || say "simulated traffic not (fully) written; see above"
}

# One line per catalog provider: id port scheme ttft tps key_env
providers() {
	$py - "$catalog" <<'PY'
import json, os, re, sys
cat = json.load(open(sys.argv[1]))
for p in cat["providers"]:
    url = re.sub(r"\$\{(\w+)\}", lambda m: os.environ.get(m.group(1), ""), p["base_url"])
    m = re.match(r"(https?)://(127\.0\.0\.1|localhost):(\d+)", url)
    if not m:
        continue
    mock = p.get("mock", {})
    print(p["id"], m.group(3), m.group(1), mock.get("ttft_ms", 0), mock.get("tps", 0), p.get("api_key_env") or "-")
PY
}

start_mocks() {
	[ -f "$dir/provider_keys.env" ] || : > "$dir/provider_keys.env"
	providers | while read -r id port scheme ttft tps keyenv; do
		if [ "$keyenv" != "-" ] && ! grep -q "^export $keyenv=" "$dir/provider_keys.env"; then
			echo "export $keyenv=pk-$(openssl rand -hex 12)" >> "$dir/provider_keys.env"
		fi
		alive "$run/mock-$id.pid" && continue
		# shellcheck disable=SC1091
		. "$dir/provider_keys.env"
		key=""; [ "$keyenv" != "-" ] && key=${!keyenv}
		tls=(); [ "$scheme" = https ] && tls=(--tls-cert "$dir/tls/server.pem" --tls-key "$dir/tls/server.key")
		"$build/agora-mock-provider" --listen "127.0.0.1:$port" --name "$id" ${key:+--api-key "$key"} \
			--ttft-ms "$ttft" --tps "$tps" "${tls[@]}" --pidfile "$run/mock-$id.pid" >>"$logs/mock-$id.log" 2>&1 &
		echo $! > "$run/mock-$id.pid"
	done
	chmod 600 "$dir/provider_keys.env"
}

# The mock providers' keys, sealed into PostgreSQL under the master key (the
# router opens them; provider_keys.env stays only for the mocks themselves).
seal_provider_keys() {
	# shellcheck disable=SC1091
	. "$dir/provider_keys.env"
	providers | while read -r id port scheme ttft tps keyenv; do
		[ "$keyenv" != "-" ] && [ -n "${!keyenv:-}" ] || continue
		printf '%s\n' "${!keyenv}" | ctl provider set-key "$id" >/dev/null
	done
}

start_service() {	# name binary
	alive "$run/$1.pid" && return 0
	(
		cd "$dir"
		exec "$build/$2" -c "$dir/agora.conf" >>"$logs/$1.log" 2>&1
	) &
	echo $! > "$run/$1.pid"
}

do_start() {
	for b in agora-router agora-billing agora-analytics agoractl agora-mock-provider; do
		[ -x "$build/$b" ] || { say "missing $build/$b: run make first"; exit 1; }
	done
	mkdir -p "$run" "$logs"
	start_pg
	start_redis
	write_conf
	make_tls
	provision
	start_mocks
	seal_provider_keys
	start_service router agora-router
	start_service billing agora-billing
	start_service analytics agora-analytics
	wait_http "http://127.0.0.1:$router_port/health" 30 "$logs/router.log"
	wait_http "http://127.0.0.1:$analytics_port/health" 30 "$logs/analytics.log"
	simulate
	# shellcheck disable=SC1091
	. "$dir/keys.env"
	cat > "$dir/agora.env" <<ENV
AGORA_URL=http://127.0.0.1:$router_port/api/v1
AGORA_KEY=$AGORA_KEY
AGORA_ADMIN_KEY=$AGORA_ADMIN_KEY
AGORA_DASHBOARD_URL=http://127.0.0.1:$analytics_port/#key=$AGORA_ADMIN_KEY
ENV
	chmod 600 "$dir/agora.env"
	model=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))['models'][0]['id'])" "$catalog")
	cat <<MSG

Agora is running (logs: $logs, stop: make stop).
  base URL:   http://127.0.0.1:$router_port/api/v1
  demo key:   $AGORA_KEY
  dashboard:  http://127.0.0.1:$analytics_port/#key=$AGORA_ADMIN_KEY
              (the operator key rides in the URL fragment: the browser keeps it
              in the tab and never sends the fragment to the server)
  for scripts: . $dir/agora.env

Try it:
  curl -s http://127.0.0.1:$router_port/api/v1/chat/completions -H "Authorization: Bearer $AGORA_KEY" -H 'Content-Type: application/json' -d '{"model":"$model","messages":[{"role":"user","content":"Hello"}]}'
MSG
}

stop_pid() {	# pidfile
	alive "$1" || { rm -f "$1"; return 0; }
	pid=$(cat "$1"); kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 100); do alive "$1" || break; sleep 0.1; done
	alive "$1" && kill -KILL "$pid" 2>/dev/null
	true
	rm -f "$1"
}

do_stop() {
	[ -d "$run" ] || { say "nothing runs in $dir"; return 0; }
	for f in "$run"/router.pid "$run"/billing.pid "$run"/analytics.pid "$run"/mock-*.pid; do
		[ -e "$f" ] && stop_pid "$f"
	done
	if alive "$run/redis.pid"; then
		redis-cli -p "$redis_port" shutdown >/dev/null 2>&1 || stop_pid "$run/redis.pid"
		for _ in $(seq 50); do alive "$run/redis.pid" || break; sleep 0.1; done
	fi
	if [ -f "$dir/pg/PG_VERSION" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
		as_pg "$pgbin/pg_ctl" -D "$dir/pg" -m fast -w stop >/dev/null
	fi
	say "stopped the stack in $dir"
}

do_status() {
	for f in "$run"/*.pid; do
		[ -e "$f" ] || continue
		n=$(basename "$f" .pid)
		if alive "$f"; then echo "$n: running (pid $(cat "$f"))"; else echo "$n: stopped"; fi
	done
	if [ -f "$dir/pg/PG_VERSION" ] && as_pg "$pgbin/pg_ctl" -D "$dir/pg" status >/dev/null 2>&1; then
		echo "postgresql: running (port $pg_port)"
	else
		echo "postgresql: stopped"
	fi
}

case $cmd in
start) do_start ;;
stop) do_stop ;;
status) do_status ;;
*) echo "usage: $0 start|stop|status DIR" >&2; exit 2 ;;
esac
