#!/usr/bin/env bash
# What a smaller GOGC costs and saves in cached mode: two `ldapproxy serve` of the same
# build, one with GOGC=A and one with GOGC=B, in front of one slapd with USERS users
# (20 groups), each synced into a store of its own; then ROUNDS rounds in which
# cmd/ldapbench loads each in turn with cached searches (16 connections), printing per
# window the proxy's CPU time per request (utime+stime from /proc over the requests it
# counted, which a shared machine disturbs far less than throughput) and its RSS.
# Usage: [A=100] [B=50] [ROUNDS=4] scripts/bench-gogc.sh [users]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-100000} a=${A:-100} b=${B:-50} rounds=${ROUNDS:-4}
. scripts/lib/directory.sh
bench_setup demo ldapproxy ldapbench
start_directory "$users" 20 51389
declare -A pid
for i in 0 1; do
  g=$([ $i = 0 ] && echo "$a" || echo "$b")
  { echo "listen: {ldap: \"127.0.0.1:$((52389 + i))\"}"; echo "http: {listen: \"127.0.0.1:$((53389 + i))\"}"
    upstream_config "$bin/store$i"; } >"$bin/serve$i.yaml"
  GOGC=$g "$bin/ldapproxy" serve --config "$bin/serve$i.yaml" >"$bin/serve$i.out" 2>&1 &
  pids+=($!)
  pid[$i]=$!
done
for i in 0 1; do
  for _ in $(seq 1500); do
    curl -sf "http://127.0.0.1:$((53389 + i))/readyz" >/dev/null 2>&1 && continue 2 # the first sync's tree serves
    kill -0 "${pid[$i]}" 2>/dev/null || { cat "$bin/serve$i.out"; exit 1; }
    sleep 0.2
  done
  echo "bench-gogc: proxy $i did not sync" >&2
  exit 1
done
sleep 8 # the image of the first build written and swapped in
tck=$(getconf CLK_TCK)
for r in $(seq "$rounds"); do
  for i in 0 1; do
    g=$([ $i = 0 ] && echo "$a" || echo "$b")
    reqs() { curl -s "http://127.0.0.1:$((53389 + i))/metrics" | awk '/^ldapproxy_requests_total/ {s += $2} END {printf "%d", s}'; }
    cpu() { awk '{print $14 + $15}' "/proc/${pid[$i]}/stat"; }
    "$bin/ldapbench" -targets "p=ldap://127.0.0.1:$((52389 + i))" -mode search -bind-dn cn=svc,ou=services,dc=example,dc=org \
      -bind-password svc-secret -users "$users" -c 16 -d 9s -warmup 1s -rounds 1 >/dev/null 2>&1 &
    bp=$!
    sleep 1.5
    r0=$(reqs) c0=$(cpu)
    sleep 6
    r1=$(reqs) c1=$(cpu)
    wait "$bp" || true
    awk -v r="$r" -v g="$g" -v c=$((c1 - c0)) -v n=$((r1 - r0)) -v t="$tck" -v rss="$(awk '/^VmRSS:/ {print $2}' "/proc/${pid[$i]}/status")" \
      'BEGIN {printf "round %s GOGC=%s: %.1f us of CPU per search (%d searches), RSS %.0f MiB\n", r, g, c * 1e6 / t / n, n, rss / 1024}'
  done
done
