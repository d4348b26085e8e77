#!/bin/sh
# Install what Agora needs to build, run and test, from Debian's packages.
# Idempotent: installs only the packages that are missing. Needs root (or sudo).
set -e
PKGS="build-essential pkg-config libevent-dev libpq-dev libhiredis-dev libcjson-dev
libssl-dev libhttp-parser-dev libcmocka-dev postgresql postgresql-client redis-server
redis-tools python3 python3-pytest python3-psycopg2 python3-redis openssl curl ca-certificates
chromium fonts-dejavu-core zlib1g-dev pgbouncer libjemalloc-dev"
# chromium (+ a font): the dashboards' browser tests (tests/browser, headless,
# driven by playwright-core from npm; no browser download).
# node and npm: only when absent (a NodeSource node bundles its own npm).
command -v node >/dev/null 2>&1 || PKGS="$PKGS nodejs"
command -v npm >/dev/null 2>&1 || PKGS="$PKGS npm"
# `install-deps.sh --fuzz` (make fuzz-deps): only clang and its runtime
# (libFuzzer, sanitizers) for `make fuzz`; `make test` never needs them.
FUZZ_PKGS="clang libclang-rt-dev"
[ "${1:-}" = "--fuzz" ] && PKGS="$FUZZ_PKGS"
# `install-deps.sh --bench` (make bench): nginx (the fixed upstream and the
# plain reverse proxy the router is measured against) and wrk (the load
# generator), valgrind (`make profile`: callgrind); `make test` never needs them.
BENCH_PKGS="nginx wrk valgrind"
[ "${1:-}" = "--bench" ] && PKGS="$BENCH_PKGS"
missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
echo "install-deps: installing:$missing"
SUDO=""
[ "$(id -u)" -ne 0 ] && SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
# postgresql's package would create and start a system cluster; we run our own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
	printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
	$SUDO chmod +x /usr/sbin/policy-rc.d
	trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get update -qq || true
$SUDO apt-get install -y -qq --no-install-recommends $missing
# pgbouncer's package enables a system pgbouncer at boot; the tests start
# their own (deploy/postgres.md), a deployment configures its own.
case " $missing " in *" pgbouncer "*) $SUDO systemctl disable pgbouncer >/dev/null 2>&1 || true ;; esac
