#!/bin/sh
# Plugin ABI overhead (issue 4): QoS 1 pair 4->4 on a midge built before the
# ABI, on the current midge without plugins, and with one trivial ACL plugin
# (tests/plugins/acl_deny: defers everything outside its test prefixes), each
# the median of N runs (default 5) of bench/run.sh, the setups interleaved.
# Prints one line per setup.
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
rates=$(mktemp -d)
plugin=${ACL_PLUGIN:-build/tests/plugins/.libs/acl_deny.so}
# One run of setup $1 (the rest: environment for bench/run.sh); appends its rate to $rates/$1.
one() {
    key=$1
    out=$(mktemp)
    shift
    env "$@" bench/run.sh -n 1 -s qos1-pair -b midge -o "$out" >/dev/null 2>&1
    grep '^| QoS 1 pair 4->4, delivered msg/s' "$out" | cut -d'|' -f3 | tr -d ' ' >>"$rates/$key"
    rm -f "$out"
}
median() {
    sort -n "$rates/$1" | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'
}
# Interleaved (A B C A B C ...), so a drift in the machine's state hits every setup alike.
i=0
while [ $i -lt "$n" ]; do
    if [ -n "${PREABI:-}" ]; then
        one preabi MIDGE="$PREABI"
    fi
    one none MIDGE=build/server/midge
    one acl MIDGE=build/server/midge MIDGE_EXTRA_CONF="plugin $(pwd)/$plugin"
    i=$((i + 1))
done
report() {
    echo "$2: $(median "$1") msg/s (median of $n; runs: $(sort -n "$rates/$1" | tr '\n' ' ' | sed 's/ $//'))" | tee -a "$results"
}
if [ -n "${PREABI:-}" ]; then
    report preabi "before the plugin ABI"
fi
report none "no plugin"
report acl "one trivial ACL plugin"
if [ -n "$file" ]; then
    section=$(mktemp)
    {
        echo "## Plugin ABI overhead"
        echo
        echo "QoS 1 pair 4->4 as above, midge only, median of $n interleaved runs each"
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
rm -rf "$results" "$rates"
