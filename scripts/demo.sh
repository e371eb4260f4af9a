#!/usr/bin/env bash
# The demo: a throw-away slapd with sample users and ldapproxy in front of it.
# Extra arguments go to cmd/demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
exec go run ./cmd/demo "$@"
