#!/usr/bin/env bash
# Times a full sync of a large directory: `ldapproxy sync` against a local slapd with
# USERS users and GROUPS groups, reporting wall time and peak RSS, then a second sync in
# which nothing changed. Usage: scripts/bench-sync.sh [users] [groups]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
users=${1:-100000} groups=${2:-2000}
bin=$(mktemp -d)
trap 'kill "$demo_pid" 2>/dev/null || true; wait "$demo_pid" 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin/demo" ./cmd/demo
go build -o "$bin/ldapproxy" ./cmd/ldapproxy
"$bin/demo" -users "$users" -groups "$groups" -mode direct -no-sync -listen 127.0.0.1:14389 -listen-tls 127.0.0.1:14636 \
  -http 127.0.0.1:19489 -log-level warn >"$bin/demo.out" 2>&1 &
demo_pid=$!
for _ in $(seq 600); do grep -q "Press Ctrl-C" "$bin/demo.out" 2>/dev/null && break; sleep 0.2; done
slapd_url=$(grep -o 'in front of ldap://[0-9.:]*' "$bin/demo.out" | sed 's/in front of //')
[ -n "$slapd_url" ] || { cat "$bin/demo.out"; exit 1; }
cat >"$bin/sync.yaml" <<YAML
upstream:
  urls: "$slapd_url"
  bind_dn: "cn=svc,ou=services,dc=example,dc=org"
  bind_password: "svc-secret"
  base_dn: "dc=example,dc=org"
  timeout: 30s
store:
  path: "$bin/store"
sync:
  preset: openldap
log: {level: warn, format: text}
YAML
for run in first unchanged; do
  echo "== $run sync of $users users and $groups groups"
  /usr/bin/time -f "wall %e s, peak RSS %M KiB" "$bin/ldapproxy" sync --config "$bin/sync.yaml"
done
du -sh "$bin/store"
