#!/bin/bash
# Runs every test: the cmocka unit binaries in BUILD/tests/, then the pytest
# integration suite (which starts and stops its own stack). Prints everything,
# then as its last line "N passed, N failed". Exits non-zero if anything
# failed or nothing ran.
#   tests/run-all.sh [--unit-only] BUILD
set -uo pipefail
cd "$(dirname "$0")/.."
unit_only=0
[ "${1:-}" = "--unit-only" ] && { unit_only=1; shift; }
build=${1:-build}
passed=0; failed=0

for t in "$build"/tests/test_*; do
	[ -x "$t" ] || continue
	out=$(CMOCKA_MESSAGE_OUTPUT=stdout "$t" 2>&1); rc=$?
	echo "$out"
	p=$(echo "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	f=$(echo "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' | tail -1)
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0}))
	# A binary that crashed before reporting counts as one failure.
	[ $rc -ne 0 ] && [ -z "$f" ] && failed=$((failed + 1))
done
echo "unit: $passed passed, $failed failed"

if [ $unit_only -eq 0 ]; then
	log=$(mktemp)
	AGORA_BUILD=$build /usr/bin/python3 -m pytest -q -p no:cacheprovider tests/e2e 2>&1 | tee "$log"
	line=$(grep -E '^[0-9]+ (passed|failed)|^=+ .*(passed|failed|error)' "$log" | tail -1)
	p=$(echo "$line" | grep -oE '[0-9]+ passed' | grep -oE '[0-9]+')
	f=$(echo "$line" | grep -oE '[0-9]+ failed' | grep -oE '[0-9]+')
	e=$(echo "$line" | grep -oE '[0-9]+ error' | grep -oE '[0-9]+')
	[ -z "$line" ] && e=1	# pytest did not even report
	passed=$((passed + ${p:-0})); failed=$((failed + ${f:-0} + ${e:-0}))
	rm -f "$log"
fi
if [ -n "${AGORA_SANITIZER_DIR:-}" ]; then
	# Every sanitizer report of any process (tests and services) is a failure.
	for r in "$AGORA_SANITIZER_DIR"/*; do
		[ -e "$r" ] || continue
		echo "sanitizer report $r:"; head -40 "$r"
		failed=$((failed + 1))
	done
fi
echo "$passed passed, $failed failed"
[ $failed -eq 0 ] && [ $passed -gt 0 ]
