#!/bin/sh
# http-admin overhead (issue 12): QoS 1 pair 4->4 (build/bench/midge-bench -T pair
# -P 4 -S 4 -q 1, 10 s after 2 s warm-up, as bench/run.sh's qos1-pair) on midge
# without plugins and on midge with http-admin loaded and /metrics scraped by
# curl once a second for the whole run (as Prometheus would), each the median
# of N interleaved runs (default 5). Also the broker's CPU per delivered
# message, which moves less with other people's load than the rate does.
# Prints the results; with -o FILE they also replace the "## http-admin
# overhead" section of FILE (docs/benchmarks.md).
#   bench/http-admin.sh [-n N] [-o FILE]
set -eu
cd "$(dirname "$0")/.."
n=5
file=""
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    -o) file=$2; shift 2 ;;
    *) echo "usage: bench/http-admin.sh [-n RUNS] [-o FILE]" >&2; exit 2 ;;
    esac
done
plugin=$(pwd)/build/plugins/http-admin/.libs/http-admin.so
[ -x build/bench/midge-bench ] && [ -f "$plugin" ] || { echo "build first (scripts/setup.sh)" >&2; exit 1; }
tmpdir=$(mktemp -d)
scraper=""
broker=""
cleanup() {
    [ -n "$scraper" ] && kill "$scraper" 2>/dev/null
    [ -n "$broker" ] && kill "$broker" 2>/dev/null
    rm -rf "$tmpdir"
}
trap cleanup EXIT
free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# run KEY WITH_PLUGIN: one fresh broker, one bench run; appends rate and CPU/msg.
run() {
    key=$1
    with=$2
    port=$(free_port)
    hport=$(free_port)
    conf=$tmpdir/$key.conf
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_inflight_messages 0"
        echo "max_queued_messages 100000"
        echo "set_tcp_nodelay true"
        echo "worker_threads 2"
        if [ "$with" = 1 ]; then
            echo "plugin $plugin"
            echo "plugin_opt_listen 127.0.0.1:$hport"
            echo "plugin_opt_allow_anonymous true"
        fi
    } >"$conf"
    build/server/midge -c "$conf" >>"$tmpdir/broker.log" 2>&1 &
    broker=$!
    i=0
    until ss -Htln "( sport = :$port )" | grep -q LISTEN; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 "$broker" 2>/dev/null; then
            echo "midge did not start" >&2
            return 1
        fi
        sleep 0.05
    done
    if [ "$with" = 1 ]; then
        # The scrape a Prometheus server would make, once a second.
        (while :; do
            curl -s -o /dev/null "http://127.0.0.1:$hport/metrics" || true
            sleep 1
        done) &
        scraper=$!
    fi
    line=$(build/bench/midge-bench -p "$port" -t 1 -d 10 -w 2 -L qos1-pair -T pair -P 4 -S 4 \
        -q 1 | grep '^RESULT')
    ticks=$(awk '{print $14 + $15}' "/proc/$broker/stat")
    if [ -n "$scraper" ]; then
        kill "$scraper" 2>/dev/null
        wait "$scraper" 2>/dev/null || true
        scraper=""
    fi
    kill "$broker"
    wait "$broker" 2>/dev/null || true
    broker=""
    rate=$(echo "$line" | sed -n 's/.* recv_rate=\([0-9.]*\).*/\1/p')
    recv=$(echo "$line" | sed -n 's/.* recv=\([0-9]*\).*/\1/p')
    echo "${rate%.*}" >>"$tmpdir/$key.rates"
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$recv" \
        'BEGIN { if (n > 0) printf "%.3f\n", t / hz * 1e6 / n }' >>"$tmpdir/$key.cpu"
}
median() {
    sort -n "$1" | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "n/a")}'
}
runs() {
    sort -n "$1" | tr '\n' ' ' | sed 's/ $//'
}

round=1
while [ $round -le "$n" ]; do
    # Alternate which setup goes first, so neither always follows the other.
    if [ $((round % 2)) = 1 ]; then
        run none 0
        run admin 1
    else
        run admin 1
        run none 0
    fi
    round=$((round + 1))
done
base=$(median "$tmpdir/none.rates")
with=$(median "$tmpdir/admin.rates")
results=$tmpdir/results
{
    echo "QoS 1 pair 4->4, delivered msg/s, median of $n interleaved runs:"
    echo
    echo "- midge, no plugin: $base (runs: $(runs "$tmpdir/none.rates"))"
    echo "- midge, http-admin scraped every second: $with$(awk -v a="$with" -v b="$base" \
        'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf " (%.1f %% of without)", 100 * a / b }') (runs: $(runs "$tmpdir/admin.rates"))"
    echo
    echo "Broker CPU per delivered message (user + system, set-up included), microseconds:"
    echo
    echo "- midge, no plugin: $(median "$tmpdir/none.cpu") (runs: $(runs "$tmpdir/none.cpu"))"
    echo "- midge, http-admin scraped every second: $(median "$tmpdir/admin.cpu") (runs: $(runs "$tmpdir/admin.cpu"))"
} | tee "$results"
if [ -n "$file" ]; then
    tmp=$tmpdir/doc
    awk '/^## http-admin overhead/{skip=1; next} /^## /{skip=0} !skip' "$file" >"$tmp"
    {
        echo
        echo "## http-admin overhead"
        echo
        echo "Issue 12: \`bench/http-admin.sh -n $n\`, $(date -u '+%Y-%m-%d %H:%M UTC'), on the"
        echo "machine above (2 cores shared with other builds and test runs). QoS 1 pair 4->4"
        echo "(midge-bench -T pair -P 4 -S 4 -q 1 -d 10 -w 2) on a fresh midge per run, without"
        echo "plugins and with http-admin loaded while curl fetches /metrics once a second (each"
        echo "scrape: api->stats, plugin_list, metric_list and a client_list walk over every"
        echo "session for the queue depths). Runs interleaved, the order alternating per round."
        echo "mosquitto has no counterpart (it has no HTTP endpoint), so no mosquitto row."
        echo
        cat "$results"
        echo
    } >>"$tmp"
    # Collapse the blank lines the cut may leave at the end before the new section.
    awk 'NF { for (; blank > 0; blank--) print ""; print; next } { blank++ } END { }' "$tmp" >"$file"
    echo >>"$file"
fi
