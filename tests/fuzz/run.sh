#!/bin/bash
# Runs every libFuzzer target built in build-fuzz/ (tests/fuzz/fuzz.mk) for
# FUZZ_SECONDS in total (default 60, split evenly), one after the other, each
# from its seed corpus (tests/fuzz/corpus/<target>/) and regressions
# (tests/fuzz/regressions/<target>/), copied into a scratch corpus in
# build-fuzz/corpus/<target>/ so that runs never touch the repository (what a
# run learns is kept there for the next one). Then replays
# tests/fuzz/known-bugs/ strictly to say which known bugs still reproduce.
# Prints a table of execs per target; exits non-zero if any target crashed
# (the input is in build-fuzz/artifacts/<target>/, the report in
# build-fuzz/logs/<target>.log).
#   FUZZ_SECONDS=120 tests/fuzz/run.sh [target...]
set -uo pipefail
cd "$(dirname "$0")/../.."
FB=build-fuzz
ALL="request sse anthropic catalog csv"
targets=${*:-$ALL}
total=${FUZZ_SECONDS:-60}
n=$(echo $targets | wc -w)
per=$(( total / n )); [ $per -lt 1 ] && per=1
supp=$PWD/tests/fuzz/known-bugs/ubsan.supp
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0}
ubsan="halt_on_error=1:print_stacktrace=1"

mkdir -p $FB/logs
crashed=0
rows=()
for t in $targets; do
	bin=$FB/fuzz_$t
	if [ ! -x "$bin" ]; then
		reason="not built"
		[ "$t" = csv ] && [ ! -e lib/csvparse.c ] && reason="lib/csvparse.c does not exist yet"
		echo "== fuzz_$t: SKIPPED ($reason)"
		rows+=("$(printf '%-10s %8s %12s %10s %8s  %s' "$t" - - - - "skipped: $reason")")
		continue
	fi
	corpus=$FB/corpus/$t
	mkdir -p "$corpus" "$FB/artifacts/$t"
	for d in tests/fuzz/corpus/$t tests/fuzz/regressions/$t; do
		[ -d "$d" ] && find "$d" -maxdepth 1 -type f ! -name '*.md' -exec cp -f {} "$corpus"/ \;
	done
	dict=()
	[ -f tests/fuzz/$t.dict ] && dict=(-dict=tests/fuzz/$t.dict)
	log=$FB/logs/$t.log
	echo "== fuzz_$t: ${per}s from $(ls "$corpus" | wc -l) inputs"
	UBSAN_OPTIONS="$ubsan:suppressions=$supp" "$bin" "${dict[@]}" -max_total_time=$per -timeout=10 \
		-max_len=16384 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$FB/artifacts/$t/ \
		"$corpus" >"$log" 2>&1
	rc=$?
	execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
	eps=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
	cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+')
	size=$(ls "$corpus" | wc -l)
	if [ $rc -ne 0 ]; then
		crashed=1
		art=$(grep -oE "Test unit written to [^ ]+" "$log" | tail -1 | sed 's/Test unit written to //')
		echo "!! fuzz_$t CRASHED (exit $rc); input: ${art:-see $log}"
		grep -E "ERROR|runtime error|invariant broken|SUMMARY|^    #[0-9] " "$log" | head -25
		echo "!! save the input under tests/fuzz/regressions/$t/ (or known-bugs/$t/) once understood"
		result="CRASH ${art:-}"
	else
		result=ok
	fi
	rows+=("$(printf '%-10s %8s %12s %10s %8s  %s' "$t" "$per" "${execs:-?}" "${eps:-?}" "${cov:-?}/$size" "$result")")
done

# Known bugs, replayed without tolerance or suppressions.
known=()
for f in tests/fuzz/known-bugs/*/*; do
	[ -f "$f" ] || continue
	t=$(basename "$(dirname "$f")")
	case " $targets " in *" $t "*) ;; *) continue ;; esac
	[ -x $FB/fuzz_$t ] || continue
	if AGORA_FUZZ_STRICT=1 UBSAN_OPTIONS="$ubsan" $FB/fuzz_$t "$f" >$FB/logs/known.log 2>&1; then
		known+=("$f: no longer reproduces: move it to tests/fuzz/regressions/$t/ and drop its tolerance")
	else
		known+=("$f: still reproduces ($(grep -oE 'runtime error: .{0,70}|invariant broken: .*' $FB/logs/known.log | head -1))")
	fi
done

echo
printf '%-10s %8s %12s %10s %8s  %s\n' target seconds execs exec/s cov/corp result
for r in "${rows[@]}"; do echo "$r"; done
if [ ${#known[@]} -gt 0 ]; then
	echo "known bugs (tests/fuzz/known-bugs/README.md):"
	for k in "${known[@]}"; do echo "  $k"; done
fi
exit $crashed
