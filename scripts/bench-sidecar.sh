#!/usr/bin/env bash
# The sidecar's memory limit, tried for real: `ldapproxy serve` runs in a memory cgroup
# of each of LIMITS in turn (as a container with that limit, no swap), against the demo
# directory of USERS users and GROUPS groups, with GOMEMLIMIT=PROXY_GOMEMLIMIT if set
# (the sidecar example sets 200MiB), else the soft limit the proxy sets itself from its
# cgroup's limit (85% of it). Per limit, it makes its first sync into an empty store and
# serves a login load, then starts again from its files, syncs and serves the load
# again. Printed per phase: whether the
# process survived, the seconds until /readyz, the login load's errors, the cgroup's
# peak charge (the kernel's count: anonymous memory and the page cache of the files the
# proxy maps, reads and writes, which it reclaims before it kills), the process's
# peak RSS, and the cgroup's anonymous and file memory at the end.
# A cgroup whose limit is crossed with nothing left to reclaim has its process killed
# (the OOM killer), as a container's would be. Needs root and a memory cgroup (v2, or
# v1's memory controller); the cgroup is made below the one this script runs in.
# Usage: [LIMITS="256M 192M"] [PROXY_GOMEMLIMIT=200MiB] [SYNC_ATTRIBUTES=...] \
#   scripts/bench-sidecar.sh [users] [groups]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-100000} groups=${2:-2000} limits=${LIMITS:-256M}
. scripts/lib/directory.sh

# The memory cgroup this script runs in, and a new one below it.
if grep -qw memory /sys/fs/cgroup/cgroup.controllers 2>/dev/null; then
	v=2 parent=/sys/fs/cgroup$(awk -F: '$1 == "0" {print $3}' /proc/self/cgroup)
else
	v=1 parent=/sys/fs/cgroup/memory$(awk -F: '$2 ~ /(^|,)memory(,|$)/ {print $3}' /proc/self/cgroup)
fi
cg=$parent/ldapproxy-sidecar-$$
if ! mkdir "$cg" 2>/dev/null; then
	echo "bench-sidecar: cannot make a memory cgroup under $parent (needs root and cgroup v1 or v2 memory)" >&2
	exit 1
fi
# set_limit LIMIT: the cgroup's limit, swap included.
set_limit() {
	if [ $v = 2 ]; then
		echo "$1" >"$cg/memory.max"
		echo 0 >"$cg/memory.swap.max" 2>/dev/null || true
	else
		# v1 takes the memory and swap limits only in an order that keeps memsw >= memory.
		echo "$1" >"$cg/memory.limit_in_bytes" 2>/dev/null || true
		echo "$1" >"$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
		echo "$1" >"$cg/memory.limit_in_bytes"
		echo "$1" >"$cg/memory.memsw.limit_in_bytes" 2>/dev/null || true
	fi
}
bench_setup demo ldapproxy ldapbench
trap 'for p in "${pids[@]}" ${demo_pid:-}; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rmdir "$cg" 2>/dev/null || true; rm -rf "$bin"' EXIT
start_directory "$users" "$groups" 12389
{
	echo 'listen: {ldap: "127.0.0.1:12489"}'
	echo 'http: {listen: "127.0.0.1:12689"}'
	upstream_config "$bin/store"
} >"$bin/serve.yaml"
sed -i 's/level: warn/level: info/' "$bin/serve.yaml" # the soft limit's line
if [ -n "${SYNC_ATTRIBUTES:-}" ]; then
	sed -i "s/^sync:\$/sync:\n  attributes: $SYNC_ATTRIBUTES/" "$bin/serve.yaml"
fi

# peak, anon, file, ooms: the cgroup's peak charge and current anonymous and file memory
# in MiB, and how many of its processes the OOM killer ended.
mib() { awk -v b="${1:-0}" 'BEGIN {printf "%.0f", b / 1048576}'; }
peak() { if [ $v = 2 ]; then mib "$(cat "$cg/memory.peak" 2>/dev/null)"; else mib "$(cat "$cg/memory.max_usage_in_bytes")"; fi; }
stat() { awk -v k="$1" '$1 == k {print $2}' "$cg/memory.stat"; }
anon() { if [ $v = 2 ]; then mib "$(stat anon)"; else mib "$(stat total_rss)"; fi; }
file() { if [ $v = 2 ]; then mib "$(stat file)"; else mib "$(stat total_cache)"; fi; }
ooms() { if [ $v = 2 ]; then awk '$1 == "oom_kill" {print $2}' "$cg/memory.events"; else awk '$1 == "oom_kill" {print $2}' "$cg/memory.oom_control"; fi; }
reset_peak() { if [ $v = 2 ]; then echo 0 >"$cg/memory.peak" 2>/dev/null || true; else echo 0 >"$cg/memory.max_usage_in_bytes"; fi; }

# phase NAME: starts serve in the cgroup, waits for /readyz, runs the login load, prints.
phase() {
	reset_peak
	local t0 t1 ready=no load=-
	t0=$(date +%s.%N)
	sh -c 'echo $$ >"$1/cgroup.procs" && shift && exec "$@"' sh "$cg" \
		env ${PROXY_GOMEMLIMIT:+GOMEMLIMIT=$PROXY_GOMEMLIMIT} "$bin/ldapproxy" serve --config "$bin/serve.yaml" >"$bin/serve.out" 2>&1 &
	proxy_pid=$!
	pids+=("$proxy_pid")
	for _ in $(seq 3000); do
		curl -sf http://127.0.0.1:12689/readyz >/dev/null 2>&1 && ready=yes && break
		kill -0 "$proxy_pid" 2>/dev/null || break
		sleep 0.2
	done
	t1=$(date +%s.%N)
	if [ $ready = yes ]; then
		load=$("$bin/ldapbench" -targets "proxy=ldap://127.0.0.1:12489" -mode login \
			-bind-dn cn=svc,ou=services,dc=example,dc=org -bind-password svc-secret \
			-users "$users" -c 16 -d 10s -warmup 2s -rounds 1 2>&1 |
			awk '$1 == "proxy" {for (i = 3; i <= NF; i++) if ($i ~ /%\)$/) l = $2 " logins/s, errors " $(i - 1) " " $i} END {print l == "" ? "?" : l}')
	fi
	local alive=yes hwm=- soft
	soft=$(grep -o 'soft_limit_bytes=[0-9]*' "$bin/serve.out" | head -1 | cut -d= -f2)
	[ -n "$soft" ] && echo "   the proxy set its soft limit from the cgroup's: $(mib "$soft") MiB"
	if kill -0 "$proxy_pid" 2>/dev/null; then
		hwm=$(awk '/^VmHWM:/ {printf "%.0f", $2 / 1024}' "/proc/$proxy_pid/status")
	else
		alive=no
	fi
	printf '== %s: alive %s, ready %s after %.1f s, login load %s, cgroup peak %s MiB (limit %s), process peak RSS %s MiB, now anon %s + file %s MiB, OOM kills %s\n' \
		"$1" "$alive" "$ready" "$(echo "$t1 - $t0" | bc)" "$load" "$(peak)" "$limit" "$hwm" "$(anon)" "$(file)" "$(ooms)"
	if [ $alive = yes ]; then
		kill "$proxy_pid"
		wait "$proxy_pid" 2>/dev/null || true
	else
		tail -5 "$bin/serve.out"
	fi
}
for limit in $limits; do
	set_limit "$limit"
	rm -rf "$bin/store"
	echo "== $users users, $groups groups; memory cgroup v$v of $limit, GOMEMLIMIT ${PROXY_GOMEMLIMIT:-unset}"
	phase "first start (empty store)"
	phase "warm start (store on disk)"
done
