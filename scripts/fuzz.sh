#!/bin/sh
# Builds the libFuzzer targets (clang, ASan+UBSan) in ./build-fuzz and runs
# each for SECONDS (default 60) on a copy of its seed corpus in
# tests/fuzz/corpus. Crashes go to build-fuzz/crashes/TARGET/; turn each into
# a regression test (tests/unit) and add the input to the corpus.
#
#   scripts/fuzz.sh            short run: 60 s per target (the CI-sized check)
#   scripts/fuzz.sh 3600       nightly run: an hour per target
#   FUZZ_TARGETS="codec" scripts/fuzz.sh 600
set -u
cd "$(dirname "$0")/.."
top=$(pwd)
secs=${1:-60}
targets=${FUZZ_TARGETS:-"codec config passwd acl bridge ws"}
BUILD_DIR=build-fuzz CONFIGURE_FLAGS="CC=clang --enable-fuzzing" ./scripts/setup.sh >/dev/null || {
    echo "fuzz: build failed (BUILD_DIR=build-fuzz)" >&2; exit 1; }
passed=0
failed=0
for t in $targets; do
    bin="$top/build-fuzz/tests/fuzz/fuzz_$t"
    corpus="$top/build-fuzz/corpus/$t"
    crashes="$top/build-fuzz/crashes/$t"
    mkdir -p "$corpus" "$crashes"
    cp -n "$top/tests/fuzz/corpus/$t/"* "$corpus/" 2>/dev/null
    (cd "$top/build-fuzz" && make -j2 "tests/fuzz/fuzz_$t" >/dev/null) || { failed=$((failed + 1)); continue; }
    echo "fuzz: $t for ${secs}s"
    if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="$crashes/" "$corpus" >"$top/build-fuzz/fuzz-$t.log" 2>&1; then
        passed=$((passed + 1))
        tail -n 1 "$top/build-fuzz/fuzz-$t.log"
    else
        failed=$((failed + 1))
        echo "fuzz: $t FAILED, see build-fuzz/fuzz-$t.log and $crashes" >&2
        tail -n 30 "$top/build-fuzz/fuzz-$t.log" >&2
    fi
done
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
