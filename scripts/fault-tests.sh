#!/usr/bin/env bash
# The fault tests of the suite on their own, with -race as the suite runs them: kill -9
# during syncs, hung and dying upstream servers, servers killed under load, the
# pre-authentication flood and large requests, malformed, deep, dense and huge requests,
# the PROXY protocol and the per-address limits, the failed-bind throttles. Prints each
# test's time, their sum (their share of the suite's time) and the wall-clock time.
# Usage: scripts/fault-tests.sh [go test flags, e.g. -count=1]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup-debian.sh
tests=(
  # kill -9 during syncs: the store keeps one whole state
  TestCrash TestCrashBatches TestTimestampKill
  # hung, dying and killed upstream servers
  TestHangingServerFailsWithinTimeout TestWithServiceFailsOverFromHungServer
  TestBindRetriesWhenServerHangs TestUserBoundSearchOnHungServerIsLostWithoutRebind
  TestProbeKeepsHungServerDown TestSessionStaysWhenThePreferredServerHangs
  TestRetryGoesToTheNextServer TestFailoverKillUnderLoad TestFailoverHangingUpstream
  TestFailoverBoundSessionsUnderLoad
  # memory before authentication
  TestSlowLargeRequestsHoldBoundedMemory TestPartialRequestBudget TestAnonymousMessageSize
  # bad, deep, dense and huge requests
  TestMalformedRequests TestHugeLengthHeader TestDeepFilters TestDenseFiltersAreAnswered
  TestHandlerPanicAnswersOther TestTenThousandBranchOr TestDenseRequestsDecodedOneAtATime
  FuzzDecodeRequest FuzzReadFrame
  # shared addresses, load balancers, throttles
  'TestProxyProtocol.*' 'TestMaxConnectionsPerAddress.*' TestSharedAddressLimits
  'TestThrottle.*' 'TestBindThrottle.*'
)
regex="^($(IFS='|'; echo "${tests[*]}"))\$"
out=$(mktemp)
trap 'rm -f "$out"' EXIT
start=$(date +%s.%N)
status=0
go test -race -v -run "$regex" "$@" ./cache/ ./sync/ ./upstream/ ./ldapserver/ ./proxy/ ./e2e/ >"$out" 2>&1 || status=$?
end=$(date +%s.%N)
grep -E '^(--- (PASS|FAIL|SKIP)|ok|FAIL)' "$out" || true
[ "$status" = 0 ] || grep -E -A20 '^--- FAIL' "$out" | head -80
awk -v start="$start" -v end="$end" '
  /^--- (PASS|FAIL)/ { n++; gsub(/[()s]/, "", $4); sum += $4 }
  END { printf "%d fault tests: %.1f s of test time in all, %.1f s wall-clock (packages in parallel, with the build)\n", n, sum, end - start }' "$out"
exit "$status"
