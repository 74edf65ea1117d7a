#!/bin/sh
# Plugin ABI overhead (issue 4): QoS 1 pair 4->4 on a midge built before the
# ABI, on the current midge without plugins, and with one trivial ACL plugin
# (tests/plugins/acl_deny: defers everything outside its test prefixes), each
# the median of N runs (default 5) of bench/run.sh. Prints one line per setup.
# With -o FILE the lines also replace the "## Plugin ABI overhead" section of
# FILE (docs/benchmarks.md), leaving the other sections as they are.
#   PREABI=/path/to/old/server/midge bench/plugin-overhead.sh [-n N] [-o FILE]
set -eu
cd "$(dirname "$0")/.."
n=5
file=""
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    -o) file=$2; shift 2 ;;
    *) echo "usage: bench/plugin-overhead.sh [-n RUNS] [-o FILE]" >&2; exit 2 ;;
    esac
done
results=$(mktemp)
plugin=${ACL_PLUGIN:-build/tests/plugins/.libs/acl_deny.so}
run() {
    label=$1
    out=$(mktemp)
    shift
    env "$@" bench/run.sh -n "$n" -s qos1-pair -b midge -o "$out" >/dev/null 2>&1
    rate=$(grep '^| QoS 1 pair 4->4, delivered msg/s' "$out" | cut -d'|' -f3 | tr -d ' ')
    echo "$label: $rate msg/s (median of $n)" | tee -a "$results"
    rm -f "$out"
}
if [ -n "${PREABI:-}" ]; then
    run "before the plugin ABI" MIDGE="$PREABI"
fi
run "no plugin" MIDGE=build/server/midge
run "one trivial ACL plugin" MIDGE=build/server/midge MIDGE_EXTRA_CONF="plugin $(pwd)/$plugin"
if [ -n "$file" ]; then
    section=$(mktemp)
    {
        echo "## Plugin ABI overhead"
        echo
        echo "QoS 1 pair 4->4 as above, midge only, median of $n runs each"
        echo "(\`bench/plugin-overhead.sh -n $n\`, $(date -u '+%Y-%m-%d %H:%M UTC')). The ACL"
        echo "plugin is tests/plugins/acl_deny.so: every PUBLISH and every delivery"
        echo "passes its hook (it defers), with the broker's own per-hook metrics on."
        echo
        sed 's/^/- /' "$results"
        echo
    } >"$section"
    # Replace only this section (up to the next "## " heading); append it when missing.
    tmp=$(mktemp)
    awk -v sec="$section" '
        /^## Plugin ABI overhead/ { while ((getline l < sec) > 0) print l; skip = 1; done = 1; next }
        skip && /^## / { skip = 0 }
        !skip { print }
        END { if (!done) { print ""; while ((getline l < sec) > 0) print l } }
    ' "$file" >"$tmp"
    mv "$tmp" "$file"
    rm -f "$section"
fi
rm -f "$results"
