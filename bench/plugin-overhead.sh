#!/bin/sh
# Plugin ABI overhead (issue 4): QoS 1 pair 4->4 on a midge built before the
# ABI, on the current midge without plugins, and with one trivial ACL plugin
# (tests/plugins/acl_deny: defers everything outside its test prefixes), each
# the median of N runs (default 5) of bench/run.sh. Prints one line per setup.
# With -o FILE the lines also replace the "## Plugin ABI overhead" section at
# the end of FILE (docs/benchmarks.md; run it after bench/run.sh).
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
    tmp=$(mktemp)
    sed '/^## Plugin ABI overhead/,$d' "$file" >"$tmp"
    {
        echo "## Plugin ABI overhead"
        echo
        echo "QoS 1 pair 4->4 as above, midge only, median of $n runs each"
        echo "(\`bench/plugin-overhead.sh -n $n\`, $(date -u '+%Y-%m-%d %H:%M UTC')). The ACL"
        echo "plugin is tests/plugins/acl_deny.so: every PUBLISH and every delivery"
        echo "passes its hook (it defers), with the broker's own per-hook metrics on."
        echo
        sed 's/^/- /' "$results"
    } >>"$tmp"
    mv "$tmp" "$file"
fi
rm -f "$results"
