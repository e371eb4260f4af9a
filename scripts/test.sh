#!/usr/bin/env bash
# The test suite, against real slapd instances that the tests start themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
go vet ./...
exec go test -race -timeout 15m ./...
