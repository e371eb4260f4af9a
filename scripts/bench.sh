#!/usr/bin/env bash
# Side-by-side load test: ldapproxy against the slapd it fronts, in one run, alternating
# rounds, medians. Usage: [MODE=cached|direct] [MODES="bind search login"] [DEMO_FLAGS=...] \
#   [CLIENT=wire|go-ldap] [PORT=13389] scripts/bench.sh [users] [rounds] [duration]
# CLIENT picks ldapbench's LDAP client (-client; wire by default, the lean one). PORT moves
# the proxy's LDAP, LDAPS and HTTP listeners to PORT, PORT+1 and PORT+2 (default 13389,
# 13636 and 19389), so that two runs need not share them.
# DEMO_FLAGS go to cmd/demo, e.g. DEMO_FLAGS=-cached-auth-ttl=5m; PROXY_GOGC sets GOGC for
# cmd/demo alone (the proxy runs in it; ldapbench keeps its own).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-10000} rounds=${2:-3} dur=${3:-10s} mode=${MODE:-cached} modes=${MODES:-bind search login}
if [ -n "${PORT:-}" ]; then p_ldap=$PORT p_ldaps=$((PORT + 1)) p_http=$((PORT + 2)); else p_ldap=13389 p_ldaps=13636 p_http=19389; fi
bin=$(mktemp -d)
trap 'kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin/demo" ./cmd/demo
go build -o "$bin/ldapbench" ./cmd/ldapbench
env ${PROXY_GOGC:+GOGC=$PROXY_GOGC} "$bin/demo" -users "$users" -listen "127.0.0.1:$p_ldap" -listen-tls "127.0.0.1:$p_ldaps" -http "127.0.0.1:$p_http" -mode "$mode" ${DEMO_FLAGS:-} -log-level warn >"$bin/demo.out" 2>&1 &
demo_pid=$!
for _ in $(seq 100); do grep -q "Press Ctrl-C" "$bin/demo.out" 2>/dev/null && break; sleep 0.2; done
slapd_url=$(grep -o 'in front of ldap://[0-9.:]*' "$bin/demo.out" | sed 's/in front of //' || true)
[ -n "$slapd_url" ] || { cat "$bin/demo.out"; exit 1; }
if [ "$mode" = cached ]; then # wait for the first sync's tree to serve
  for _ in $(seq 600); do
    curl -sf "http://127.0.0.1:$p_http/readyz" >/dev/null && break
    sleep 0.2
  done
fi
# The servers' own CPU per operation, beside ldapbench's: the proxy's process and the
# slapd behind it (which the proxy's binds, and in direct mode everything, go to) against
# slapd's alone.
slapd_pid=$(pgrep -f -- "-h $slapd_url/" | head -1 || true)
pids=()
[ -z "$slapd_pid" ] || pids=(-server-pids "proxy=$demo_pid+$slapd_pid,slapd=$slapd_pid")
svc=(-bind-dn cn=svc,ou=services,dc=example,dc=org -bind-password svc-secret)
for m in $modes; do
  echo "== $m ($mode mode), 16 connections, $users users, $rounds rounds of $dur"
  "$bin/ldapbench" -targets "proxy=ldap://127.0.0.1:$p_ldap,slapd=$slapd_url" -mode "$m" ${CLIENT:+-client "$CLIENT"} "${svc[@]}" "${pids[@]}" \
    -users "$users" -c 16 -d "$dur" -warmup 2s -rounds "$rounds" | sed -n '/^summary/,$p'
done
