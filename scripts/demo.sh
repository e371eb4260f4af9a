#!/usr/bin/env bash
# The demo: a throw-away slapd with sample users and ldapproxy in front of it.
# Extra arguments go to cmd/demo (try --help). The demo is built first and run as this
# script's child, which is sent on any SIGINT or SIGTERM the script gets (from Ctrl-C,
# timeout or a CI job): `go run` would leave it running.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build -o "$bin/demo" ./cmd/demo
"$bin/demo" "$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null || true' INT TERM
status=0
wait "$pid" || status=$?
# A trapped signal interrupts the first wait: wait again for the demo to finish.
while kill -0 "$pid" 2>/dev/null; do wait "$pid" || status=$?; done
exit "$status"
