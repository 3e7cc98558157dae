#!/usr/bin/env bash
# Benchmark probe: `make bench` (full) or `bench/run.sh --quick` (smoke: 1 rep, 1 s runs).
# Installs nginx, wrk and postgresql when missing (Debian), builds the release binary, runs
# bench/bench.py.
# Extra arguments go to bench.py (see `bench/run.sh --help`). Set AGENTAPI_PROXY_BIN to use an
# existing binary and skip the build. Results: bench/results/latest.json (git-ignored).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/.." && pwd)"

need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx)
# T12 runs a throwaway PostgreSQL cluster of its own (initdb/postgres as the postgres user).
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
if [ ${#need[@]} -gt 0 ]; then
  echo "[bench] installing ${need[*]}" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  # A policy-rc.d that answers 101 keeps the packages from starting a system-wide nginx or
  # PostgreSQL.
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    $sudo sh -c 'printf "#!/bin/sh\nexit 101\n" > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d'
    made_policy=1
  fi
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
  [ -z "$made_policy" ] || $sudo rm -f /usr/sbin/policy-rc.d
fi
export PATH="$PATH:/usr/sbin"

bin="${AGENTAPI_PROXY_BIN:-}"
if [ -z "$bin" ]; then
  (cd "$repo" && ${CARGO:-cargo} build --release --locked --quiet)
  bin="$repo/target/release/agentapi-proxy"
fi

out="$repo/bench/results/latest.json"
for a in "$@"; do
  case "$a" in
    --quick) out="$repo/bench/results/quick.json" ;;
    --only | --only=*) out="$repo/bench/results/only.json" ;;
  esac
done

py_pid=""
cleanup() {
  # bench.py kills its own process groups; this only covers the shell being interrupted.
  if [ -n "$py_pid" ] && kill -0 "$py_pid" 2>/dev/null; then
    kill -TERM "$py_pid" 2>/dev/null || true
    wait "$py_pid" 2>/dev/null || true
  fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM HUP

python3 "$here/bench.py" --bin "$bin" --out "$out" "$@" &
py_pid=$!
set +e
wait "$py_pid"
rc=$?
py_pid=""
exit $rc
