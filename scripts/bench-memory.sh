#!/usr/bin/env bash
# Memory of `ldapproxy serve` beside the slapd it fronts, in one run: resident memory
# (VmRSS) of both once the proxy has synced USERS users and GROUPS groups (default 2,000:
# each user a member of one, every tenth also of the last), after a login load through each,
# and under the pre-authentication flood of cmd/ldapflood (FLOOD_CONNS connections, each
# sending FLOOD_SEND bytes of a FLOOD_SIZE-byte message and going silent), then after the
# flood's connections have closed.
# The live heap (HeapAlloc after a collection, from /debug/pprof/heap) is printed beside
# the proxy's RSS; HEAP_PROFILES=DIR keeps the heap profiles there for `go tool pprof`.
# PROXY_GOMEMLIMIT sets GOMEMLIMIT for the proxy alone (as the sidecar example does),
# PROXY_GOGC its GOGC.
# PORT (default 15389) is the first of the ports used: the demo directory's PORT..PORT+2, the
# proxy's LDAP listener PORT+100 and its HTTP listener PORT+200, so that two runs side by
# side need two PORTs.
# SMAPS=1 prints, after the login load, the proxy's resident memory by mapping (anonymous,
# the store's checkpoint, the served tree's image, the binary, ...), the Go runtime's
# memory statistics and the sizes of the checkpoint and image files.
# SYNC_ATTRIBUTES sets sync.attributes (a YAML list), e.g. the attributes SSSD reads:
#   SYNC_ATTRIBUTES='[uid, uidNumber, gidNumber, gecos, homeDirectory, loginShell, cn, member, memberOf, modifyTimestamp]'
# Usage: [FLOOD_CONNS=1500] [FLOOD_SIZE=250000] [FLOOD_SEND=240000] [HEAP_PROFILES=DIR] \
#   [PROXY_GOMEMLIMIT=200MiB] [PROXY_GOGC=50] [SYNC_ATTRIBUTES=...] [PORT=15389] [SMAPS=1] scripts/bench-memory.sh [users] [groups]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-10000} groups=${2:-2000}
port=${PORT:-15389}
ldap_port=$((port + 100))
http_port=$((port + 200))
. scripts/lib/directory.sh
bench_setup demo ldapproxy ldapbench ldapflood
start_directory "$users" "$groups" "$port"
slapd_pid=$(pgrep -n -f "slapd .*${slapd_addr}") || { echo "no slapd process for $slapd_url" >&2; exit 1; }
{
  echo "listen: {ldap: \"127.0.0.1:$ldap_port\"}"
  echo "http: {listen: \"127.0.0.1:$http_port\", pprof: true}"
  upstream_config "$bin/store"
} >"$bin/serve.yaml"
if [ -n "${SYNC_ATTRIBUTES:-}" ]; then
  sed -i "s/^sync:\$/sync:\n  attributes: $SYNC_ATTRIBUTES/" "$bin/serve.yaml"
fi
env ${PROXY_GOMEMLIMIT:+GOMEMLIMIT=$PROXY_GOMEMLIMIT} ${PROXY_GOGC:+GOGC=$PROXY_GOGC} "$bin/ldapproxy" serve --config "$bin/serve.yaml" >"$bin/serve.out" 2>&1 &
proxy_pid=$!
pids+=($proxy_pid)
for _ in $(seq 1500); do
  curl -sf http://127.0.0.1:$http_port/readyz >/dev/null 2>&1 && break # the first sync's tree serves
  kill -0 "$proxy_pid" 2>/dev/null || { cat "$bin/serve.out"; exit 1; }
  sleep 0.2
done
sleep 6 # the image is written and read, and the garbage of the first build returned to the OS 2 s after
rss() { awk '/^VmRSS:/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
hwm() { awk '/^VmHWM:/ {printf "%.1f MiB", $2/1024}' "/proc/$1/status"; }
# live NAME: the proxy's heap after a collection; the profile kept as NAME.pb.gz.
live() {
  curl -sf "http://127.0.0.1:$http_port/debug/pprof/heap?gc=1&debug=1" | awk '/^# HeapAlloc = / {printf "%.1f MiB", $4/1048576}'
  if [ -n "${HEAP_PROFILES:-}" ]; then
    mkdir -p "$HEAP_PROFILES" && curl -sf -o "$HEAP_PROFILES/$1.pb.gz" "http://127.0.0.1:$http_port/debug/pprof/heap"
  fi
}
echo "== $users users and $groups groups synced: proxy RSS $(rss "$proxy_pid") (peak $(hwm "$proxy_pid"), live heap $(live synced)), slapd RSS $(rss "$slapd_pid")"
"$bin/ldapbench" -targets "proxy=ldap://127.0.0.1:$ldap_port,slapd=$slapd_url" -mode login \
  -bind-dn cn=svc,ou=services,dc=example,dc=org -bind-password svc-secret \
  -users "$users" -c 16 -d 10s -warmup 2s -rounds 1 >/dev/null
echo "== after a login load (16 connections, 10 s each): proxy RSS $(rss "$proxy_pid") (peak $(hwm "$proxy_pid"), live heap $(live loaded)), slapd RSS $(rss "$slapd_pid") (peak $(hwm "$slapd_pid"))"
if [ -n "${SMAPS:-}" ]; then
  echo "== the proxy's resident memory by mapping (MiB), and the Go runtime's statistics"
  awk '/^[0-9a-f]+-[0-9a-f]+ / {n = ($6 == "" ? "[anon]" : $6); sub(/.*\//, "", n); if (n ~ /\.(sst|vlog|mem)$/) n = "badger files"}
    /^Rss:/ {r[n] += $2} END {for (n in r) if (r[n] >= 512) printf "   %-20s %6.1f\n", n, r[n] / 1024}' "/proc/$proxy_pid/smaps" | sort -k2 -rn
  curl -sf "http://127.0.0.1:$http_port/debug/pprof/heap?debug=1" |
    awk '/^# (HeapAlloc|HeapInuse|HeapIdle|HeapReleased|GCSys|NextGC) = / {printf "   %s %.1f MiB\n", $2, $4 / 1048576}'
  for f in "$bin/store/snapshot.ckpt" "$bin/store/served.img"; do
    [ -f "$f" ] && echo "   file ${f##*/}: $(stat -c %s "$f") bytes"
  done
fi
echo "== flood: ${FLOOD_CONNS:-1500} unauthenticated connections, each sending ${FLOOD_SEND:-240000} bytes of a ${FLOOD_SIZE:-250000}-byte message"
"$bin/ldapflood" -targets "proxy=127.0.0.1:$ldap_port,slapd=$slapd_addr" -pids "proxy=$proxy_pid,slapd=$slapd_pid" \
  -conns "${FLOOD_CONNS:-1500}" -size "${FLOOD_SIZE:-250000}" -send "${FLOOD_SEND:-240000}" -hold 10s -settle 30s
