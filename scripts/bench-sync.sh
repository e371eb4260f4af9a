#!/usr/bin/env bash
# Times a full sync of a large directory: `ldapproxy sync` against a local slapd with
# USERS users and GROUPS groups, reporting wall time and peak RSS, then a second sync in
# which nothing changed. Usage: scripts/bench-sync.sh [users] [groups]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-100000} groups=${2:-2000}
bin=$(mktemp -d)
trap 'kill "${demo_pid:-}" 2>/dev/null || true; wait "${demo_pid:-}" 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin/demo" ./cmd/demo
go build -o "$bin/ldapproxy" ./cmd/ldapproxy
. scripts/lib/directory.sh
start_directory "$users" "$groups" 14389
upstream_config "$bin/store" >"$bin/sync.yaml"
for run in first unchanged; do
  echo "== $run sync of $users users and $groups groups"
  /usr/bin/time -f "wall %e s, peak RSS %M KiB" "$bin/ldapproxy" sync --config "$bin/sync.yaml"
done
du -sh "$bin/store"
