#!/usr/bin/env bash
# The proxy's CPU time per request, which a shared machine disturbs far less than
# throughput: each build runs as its own cmd/demo (with its own slapd), and cmd/ldapbench
# loads one at a time, in turns; per window, the proxy process's CPU time (utime+stime
# from /proc) over the requests it counted (ldapproxy_requests_total), and, where `perf`
# may trace the process, its system calls and context switches per request. Prints each
# window, then the median per build and workload.
# USERS (default 10,000) is the size of each build's demo directory.
# Usage: [MODE=direct|cached] [MODES="search bind login"] [DEMO_FLAGS=...] [PORTS=21000] [USERS=10000] \
#   scripts/cpu-per-request.sh [rounds] [window seconds] [git revision...]
# With no revision, the working tree is measured; with several, they are compared.
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5} win=${2:-5}
shift $(($# < 2 ? $# : 2))
revs=("$@")
[ ${#revs[@]} -gt 0 ] || revs=(worktree)
mode=${MODE:-direct} modes=${MODES:-search bind login} users=${USERS:-10000}
ports=${PORTS:-21000} # build i listens on ports+1000*i + 389 (LDAP), 636 (LDAPS), 989 (HTTP)
tmp=$(mktemp -d)
pids=()
trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$tmp"' EXIT
go build -o "$tmp/ldapbench" ./cmd/ldapbench
for i in "${!revs[@]}"; do
  src=.
  if [ "${revs[$i]}" != worktree ]; then
    src="$tmp/src$i" && mkdir -p "$src" && git archive "${revs[$i]}" | tar -x -C "$src"
  fi
  (cd "$src" && go build -o "$tmp/demo$i" ./cmd/demo)
  base=$((ports + 1000 * i))
  "$tmp/demo$i" -users "$users" -listen 127.0.0.1:$((base + 389)) -listen-tls 127.0.0.1:$((base + 636)) \
    -http 127.0.0.1:$((base + 989)) -mode "$mode" ${DEMO_FLAGS:-} -log-level warn >"$tmp/demo$i.out" 2>&1 &
  pids+=($!)
done
for i in "${!revs[@]}"; do
  base=$((ports + 1000 * i))
  for _ in $(seq 3000); do
    ready=metrics
    [ "$mode" = cached ] && ready=readyz # the first sync's tree serves
    curl -sf http://127.0.0.1:$((base + 989))/$ready >/dev/null && continue 2
    kill -0 "${pids[$i]}" 2>/dev/null || break
    sleep 0.2
  done
  cat "$tmp/demo$i.out"
  echo "cpu-per-request: ${revs[$i]} did not start (PORTS=$ports)" >&2
  exit 1
done
tck=$(getconf CLK_TCK)
perf=false
perf stat -e raw_syscalls:sys_enter -p "${pids[0]}" -- true >/dev/null 2>&1 && perf=true
svc=(-bind-dn cn=svc,ou=services,dc=example,dc=org -bind-password svc-secret)
for m in $modes; do
  for r in $(seq "$rounds"); do
    for i in "${!revs[@]}"; do
      base=$((ports + 1000 * i)) pid=${pids[$i]}
      reqs() { curl -s http://127.0.0.1:$((base + 989))/metrics | awk '/^ldapproxy_requests_total/ {s += $2} END {printf "%d", s}'; }
      cpu() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
      "$tmp/ldapbench" -targets p=ldap://127.0.0.1:$((base + 389)) -mode "$m" "${svc[@]}" -users "$users" -c 16 \
        -d $((win + 2))s -warmup 1s -rounds 1 >/dev/null 2>&1 &
      bp=$!
      sleep 1.5
      r0=$(reqs) c0=$(cpu)
      if $perf; then
        perf stat -x, -e context-switches,raw_syscalls:sys_enter -p "$pid" -o "$tmp/perf" -- sleep "$win"
      else
        sleep "$win"
      fi
      r1=$(reqs) c1=$(cpu)
      wait $bp || true
      extra=""
      $perf && extra=$(awk -F, -v n=$((r1 - r0)) '/context-switches/ {cs = $1} /raw_syscalls/ {sc = $1}
        END {printf "  syscalls/req %.2f  switches/req %.2f", sc / n, cs / n}' "$tmp/perf")
      awk -v m="$m" -v rev="${revs[$i]}" -v r="$r" -v n=$((r1 - r0)) -v t="$(((c1 - c0) * 1000000 / tck))" -v w="$win" -v x="$extra" \
        'BEGIN {printf "%-6s %-12s round %d  cpu/req %6.1f us  req/s %6.0f%s\n", m, rev, r, t / n, n / w, x}' |
        tee -a "$tmp/results"
    done
  done
done
echo "median cpu/req (us):"
awk '{print $1, $2, $6}' "$tmp/results" | sort -k1,1 -k2,2 -k3,3n | awk '
  {k = $1 " " $2; v[k, ++n[k]] = $3} END {for (k in n) {m = n[k]; printf "  %-20s %.1f\n", k, (m % 2 ? v[k, (m + 1) / 2] : (v[k, m / 2] + v[k, m / 2 + 1]) / 2)}}' | sort
