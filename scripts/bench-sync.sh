#!/usr/bin/env bash
# Times a full sync of a large directory beside a raw paged dump of the same entries with
# the same attributes, in one run: `ldapproxy sync` into a fresh store against a local
# slapd with USERS users and GROUPS groups, and `ldapsearch -E pr=1000/noprompt` of the
# users and groups asking for what the syncer asks (* and +), RUNS times each,
# alternating; prints each time, the medians and their ratio, the sync's median peak RSS,
# then a sync in which nothing changed. With BASE set to a git revision, the ldapproxy
# of that revision syncs too in each run (the two in turn), so that a change is measured
# against what it changes on the same directory at the same moment.
# Usage: [RUNS=3] [BASE=<revision>] scripts/bench-sync.sh [users] [groups]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-100000} groups=${2:-2000} runs=${RUNS:-3}
bin=$(mktemp -d)
trap 'kill "${demo_pid:-}" 2>/dev/null || true; wait "${demo_pid:-}" 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin/demo" ./cmd/demo
go build -o "$bin/ldapproxy" ./cmd/ldapproxy
builds=(ldapproxy)
if [ -n "${BASE:-}" ]; then
  mkdir "$bin/base-src"
  git archive "$BASE" | tar -x -C "$bin/base-src"
  (cd "$bin/base-src" && go build -o "$bin/ldapproxy-base" ./cmd/ldapproxy)
  builds=(ldapproxy-base ldapproxy)
fi
. scripts/lib/directory.sh
start_directory "$users" "$groups" 14389
upstream_config "$bin/store" >"$bin/sync.yaml"
now() { date +%s.%N; }
dump() {
  for filter in '(|(objectClass=inetOrgPerson)(objectClass=posixAccount))' \
    '(|(objectClass=groupOfNames)(objectClass=groupOfUniqueNames)(objectClass=posixGroup))'; do
    ldapsearch -x -LLL -H "$slapd_url" -D cn=svc,ou=services,dc=example,dc=org -w svc-secret \
      -b dc=example,dc=org -E pr=1000/noprompt "$filter" '*' '+' >/dev/null
  done
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
: >"$bin/dump.times"
for b in "${builds[@]}"; do : >"$bin/$b.times"; : >"$bin/$b.rss"; done
for i in $(seq "$runs"); do
  t0=$(now); dump; t1=$(now)
  awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}' >>"$bin/dump.times"
  line="run $i: raw dump $(tail -1 "$bin/dump.times") s"
  order=("${builds[@]}")
  if [ $((i % 2)) -eq 0 ] && [ ${#builds[@]} -eq 2 ]; then order=("${builds[1]}" "${builds[0]}"); fi
  for b in "${order[@]}"; do
    rm -rf "$bin/store"
    t0=$(now)
    /usr/bin/time -f "%M" -o "$bin/rss" "$bin/$b" sync --config "$bin/sync.yaml" >/dev/null 2>&1
    t1=$(now)
    awk -v a="$t0" -v b="$t1" 'BEGIN {printf "%.2f\n", b - a}' >>"$bin/$b.times"
    echo $(($(cat "$bin/rss") / 1024)) >>"$bin/$b.rss"
    line="$line, $b full sync $(tail -1 "$bin/$b.times") s, peak RSS $(tail -1 "$bin/$b.rss") MiB"
  done
  echo "$line"
done
d=$(median <"$bin/dump.times")
for b in "${builds[@]}"; do
  s=$(median <"$bin/$b.times")
  echo "== $b: $users users, $groups groups, median of $runs: raw paged dump $d s, full sync $s s: sync/dump $(awk -v s="$s" -v d="$d" 'BEGIN {printf "%.1f", s / d}')x, peak RSS $(median <"$bin/$b.rss") MiB"
done
echo "== a sync in which nothing changed"
/usr/bin/time -f "wall %e s, peak RSS %M KiB" "$bin/ldapproxy" sync --config "$bin/sync.yaml"
du -sh "$bin/store"
