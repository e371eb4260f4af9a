#!/usr/bin/env bash
# Memory of `ldapproxy serve` beside the slapd it fronts, in one run: resident memory
# (VmRSS) of both once the proxy has synced USERS users, after a login load through each,
# and under the pre-authentication flood of cmd/ldapflood (FLOOD_CONNS connections, each
# sending FLOOD_SEND bytes of a FLOOD_SIZE-byte message and going silent), then after the
# flood's connections have closed.
# The live heap (HeapAlloc after a collection, from /debug/pprof/heap) is printed beside
# the proxy's RSS; HEAP_PROFILES=DIR keeps the heap profiles there for `go tool pprof`.
# PROXY_GOMEMLIMIT sets GOMEMLIMIT for the proxy alone (as the sidecar example does),
# PROXY_GOGC its GOGC.
# SYNC_ATTRIBUTES sets sync.attributes (a YAML list), e.g. the attributes SSSD reads:
#   SYNC_ATTRIBUTES='[uid, uidNumber, gidNumber, gecos, homeDirectory, loginShell, cn, member, memberOf, modifyTimestamp]'
# Usage: [FLOOD_CONNS=1500] [FLOOD_SIZE=250000] [FLOOD_SEND=240000] [HEAP_PROFILES=DIR] \
#   [PROXY_GOMEMLIMIT=200MiB] [PROXY_GOGC=50] [SYNC_ATTRIBUTES=...] scripts/bench-memory.sh [users]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-10000}
. scripts/lib/directory.sh
bench_setup demo ldapproxy ldapbench ldapflood
start_directory "$users" 20 15389
slapd_pid=$(pgrep -n -f "slapd .*${slapd_addr}") || { echo "no slapd process for $slapd_url" >&2; exit 1; }
{
  echo 'listen: {ldap: "127.0.0.1:15489"}'
  echo 'http: {listen: "127.0.0.1:19689", pprof: true}'
  upstream_config "$bin/store"
} >"$bin/serve.yaml"
if [ -n "${SYNC_ATTRIBUTES:-}" ]; then
  sed -i "s/^sync:\$/sync:\n  attributes: $SYNC_ATTRIBUTES/" "$bin/serve.yaml"
fi
env ${PROXY_GOMEMLIMIT:+GOMEMLIMIT=$PROXY_GOMEMLIMIT} ${PROXY_GOGC:+GOGC=$PROXY_GOGC} "$bin/ldapproxy" serve --config "$bin/serve.yaml" >"$bin/serve.out" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
for _ in $(seq 1500); do
  curl -sf http://127.0.0.1:19689/readyz >/dev/null 2>&1 && break # the first sync's tree serves
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$bin/serve.out"; exit 1; }
  sleep 0.2
done
sleep 6 # the image is written and read, and the garbage of the first build returned to the OS 2 s after
rss() { awk '/^VmRSS:/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
# live NAME: the proxy's heap after a collection; the profile kept as NAME.pb.gz.
live() {
  curl -sf "http://127.0.0.1:19689/debug/pprof/heap?gc=1&debug=1" | awk '/^# HeapAlloc = / {printf "%.1f MiB", $4/1048576}'
  if [ -n "${HEAP_PROFILES:-}" ]; then
    mkdir -p "$HEAP_PROFILES" && curl -sf -o "$HEAP_PROFILES/$1.pb.gz" "http://127.0.0.1:19689/debug/pprof/heap"
  fi
}
echo "== $users users synced: proxy RSS $(rss "$proxy_pid") (peak $(hwm "$proxy_pid"), live heap $(live synced)), slapd RSS $(rss "$slapd_pid")"
"$bin/ldapbench" -targets "proxy=ldap://127.0.0.1:15489,slapd=$slapd_url" -mode login \
  -bind-dn cn=svc,ou=services,dc=example,dc=org -bind-password svc-secret \
  -users "$users" -c 16 -d 10s -warmup 2s -rounds 1 >/dev/null
echo "== after a login load (16 connections, 10 s each): proxy RSS $(rss "$proxy_pid") (peak $(hwm "$proxy_pid"), live heap $(live loaded)), slapd RSS $(rss "$slapd_pid") (peak $(hwm "$slapd_pid"))"
echo "== flood: ${FLOOD_CONNS:-1500} unauthenticated connections, each sending ${FLOOD_SEND:-240000} bytes of a ${FLOOD_SIZE:-250000}-byte message"
"$bin/ldapflood" -targets "proxy=127.0.0.1:15489,slapd=$slapd_addr" -pids "proxy=$proxy_pid,slapd=$slapd_pid" \
  -conns "${FLOOD_CONNS:-1500}" -size "${FLOOD_SIZE:-250000}" -send "${FLOOD_SEND:-240000}" -hold 10s -settle 30s
