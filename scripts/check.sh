#!/bin/sh
# Builds and runs the whole test suite: cmocka unit tests and the integration
# tests against a real server/midge. Prints every failing test's log and ends
# with one line "N passed, N failed".
#
#   scripts/check.sh            the normal build in ./build
#   scripts/check.sh asan       AddressSanitizer + UndefinedBehaviorSanitizer build in ./build-asan
#   scripts/check.sh tsan       ThreadSanitizer build in ./build-tsan
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
mode=${1:-normal}
case "$mode" in
normal) BUILD_DIR=build CONFIGURE_FLAGS="--enable-werror" ;;
asan) BUILD_DIR=build-asan CONFIGURE_FLAGS="--enable-asan --enable-ubsan" ;;
tsan) BUILD_DIR=build-tsan CONFIGURE_FLAGS="--enable-tsan" ;;
*) echo "usage: scripts/check.sh [normal|asan|tsan]" >&2; exit 2 ;;
esac
export BUILD_DIR CONFIGURE_FLAGS
./scripts/setup.sh || exit 1
cd "$BUILD_DIR"
export ASAN_OPTIONS="detect_leaks=1:abort_on_error=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$top/tests/tsan.supp"
make -j2 check >make-check.out 2>&1
status=$?
grep -E '^(PASS|FAIL|XFAIL|XPASS|SKIP|ERROR):' make-check.out
passed=0
failed=0
for log in $(find tests -name '*.log' ! -name 'test-suite.log'); do
    # cmocka: "[  PASSED  ] N test(s)." / "[  FAILED  ] N test(s), listed below:"
    p=$(sed -n 's/^\[  PASSED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    f=$(sed -n 's/^\[  FAILED  \] \([0-9]*\) test.*/\1/p' "$log" | tail -n 1)
    # other programs: "N passed, N failed"
    if [ -z "$p$f" ]; then
        line=$(grep -E '^[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
        p=$(echo "$line" | sed -n 's/^\([0-9]*\) passed.*/\1/p')
        f=$(echo "$line" | sed -n 's/.* \([0-9]*\) failed.*/\1/p')
    fi
    if [ -z "$p$f" ] && grep -q '^:test-result: FAIL' "${log%.log}.trs" 2>/dev/null; then
        f=1
    fi
    passed=$((passed + ${p:-0}))
    failed=$((failed + ${f:-0}))
done
if [ $status -ne 0 ]; then
    for trs in $(grep -l -E '^:test-result: (FAIL|ERROR)' $(find tests -name '*.trs')); do
        log=${trs%.trs}.log
        # Each failing test's own block (the FAIL/ERROR line and its indented
        # traceback and broker log), then the end of the log.
        echo "=== $log: failing tests ==="
        awk '/^(FAIL|ERROR) / { show = 1; print; next } show && /^    / { print; next } { show = 0 }' "$log"
        echo "=== $log (last 40 lines) ==="
        tail -n 40 "$log"
    done
    [ $failed -eq 0 ] && failed=1
fi
echo "$mode: $passed passed, $failed failed"
[ $status -eq 0 ] && [ $failed -eq 0 ]
