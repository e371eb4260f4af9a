#!/usr/bin/env bash
# Warm start: how long `ldapproxy serve` takes from its start to the first answered
# cached search, with the store of USERS users already on disk (filled once by
# `ldapproxy sync`), and its RSS then; RUNS starts, median printed.
# Usage: [RUNS=5] scripts/bench-start.sh [users] [groups]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-100000} groups=${2:-2000} runs=${RUNS:-5}
bin=$(mktemp -d)
trap 'kill ${proxy_pid:-} "${demo_pid:-}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin/demo" ./cmd/demo
go build -o "$bin/ldapproxy" ./cmd/ldapproxy
. scripts/lib/directory.sh
start_directory "$users" "$groups" 17389
{
  echo 'listen: {ldap: "127.0.0.1:17489"}'
  echo 'http: {listen: "127.0.0.1:17689"}'
  upstream_config "$bin/store"
  echo 'search: {mode: cached}'
} >"$bin/serve.yaml"
"$bin/ldapproxy" sync --config "$bin/serve.yaml" >/dev/null 2>&1
# No sync at start: the first answer comes from the store on disk.
sed -i 's/^sync:$/sync:\n  enabled: false/' "$bin/serve.yaml"
: >"$bin/times"
for i in $(seq "$runs"); do
  t0=$(date +%s.%N)
  "$bin/ldapproxy" serve --config "$bin/serve.yaml" >"$bin/serve.out" 2>&1 &
  proxy_pid=$!
  until ldapsearch -x -LLL -H ldap://127.0.0.1:17489 -D cn=svc,ou=services,dc=example,dc=org -w svc-secret \
    -b dc=example,dc=org "(uid=user0001)" 1.1 2>/dev/null | grep -q '^dn:'; do
    kill -0 "$proxy_pid" 2>/dev/null || { cat "$bin/serve.out"; exit 1; }
    sleep 0.02
  done
  t1=$(date +%s.%N)
  rss=$(awk '/^VmRSS:/ {printf "%.0f", $2/1024}' "/proc/$proxy_pid/status")
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}' | tee -a "$bin/times" | sed "s/^/run $i: first answer after /; s/\$/ s, RSS $rss MiB/"
  kill "$proxy_pid"; wait "$proxy_pid" 2>/dev/null || true
done
echo "== $users users: warm start to the first answered search, median of $runs: $(sort -n "$bin/times" | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}') s"
