#!/usr/bin/env bash
# bench/auth-passwd.sh: the auth-passwd benchmark (issue 5), midge against
# mosquitto with the same password file (one user, midge_passwd's default
# $7$ hash: PBKDF2-HMAC-SHA512, 210,000 iterations).
#
#  1. logins/s with the right password: midge cold (plugin_opt_cache_size 0,
#     every login hashes) with plugin_threads 1 and 2, midge warm (cache on,
#     after one login), mosquitto (no cache: every login hashes);
#     bench/login-bench, 4 logins in parallel (enough to keep the hashing
#     busy without queueing past max_wait), 50 for the warm cache.
#  2. p99 latency of an established QoS 0 stream (midge-bench pair 4->4,
#     4,000 msg/s in total, anonymous clients) without a login storm, and
#     while 100 clients keep logging in with a wrong password: on midge
#     with the failure limiter at its defaults and with it off
#     (max_failures 0, fail_delay 0: every attempt is hashed), on mosquitto.
#
# Each figure is the median of N runs (-n, default 3), each on a fresh broker.
# Prints the results; with -o FILE also replaces the "## auth-passwd" section
# of FILE (docs/benchmarks.md). Builds nothing: needs build/server/midge,
# build/bench/midge-bench, build/bench/login-bench and the plugin.
#   bench/auth-passwd.sh [-n RUNS] [-d SECONDS] [-o FILE]
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
B=${BUILD:-$repo/build}
MIDGE=${MIDGE:-$B/server/midge}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BENCH=$B/bench/midge-bench
LOGIN=$B/bench/login-bench
PLUGIN=$B/plugins/auth-passwd/.libs/auth-passwd.so
PASSWD=$B/plugins/auth-passwd/midge_passwd
runs=3
dur=10
file=""
while getopts "n:d:o:h" o; do
    case $o in
    n) runs=$OPTARG ;;
    d) dur=$OPTARG ;;
    o) file=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
    esac
done
for f in "$MIDGE" "$BENCH" "$LOGIN" "$PLUGIN" "$PASSWD" "$MOSQUITTO"; do
    [ -e "$f" ] || { echo "auth-passwd.sh: missing $f (build first)" >&2; exit 2; }
done
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
work=$(mktemp -d /tmp/midge-authbench.XXXXXX)
pid=""
storm=""
cleanup() {
    [ -n "$storm" ] && kill "$storm" 2>/dev/null && wait "$storm" 2>/dev/null
    [ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log() { echo "[$(date +%T)] $*" >&2; }

"$PASSWD" -c -b "$work/passwd" alice 'right-password' || exit 1

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        ss -Htan "( sport = :$p or dport = :$p )" | grep -q . || { echo "$p"; return; }
    done
}

# start KIND [extra config lines...]: KIND is midge or mosquitto; sets pid, port.
start() {
    local kind=$1 conf=$work/$1.conf bin i
    shift
    port=$(free_port)
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_inflight_messages 0"
        echo "max_queued_messages 100000"
        echo "set_tcp_nodelay true"
        if [ "$kind" = mosquitto ]; then
            echo "persistence false"
            echo "password_file $work/passwd"
            echo "user $(id -un)"  # as root, mosquitto would drop to a user that cannot read $work
        else
            echo "worker_threads 2"
            echo "plugin $PLUGIN"
            echo "plugin_opt_password_file $work/passwd"
        fi
        printf '%s\n' "$@"
    } >"$conf"
    if [ "$kind" = mosquitto ]; then bin=$MOSQUITTO; else bin=$MIDGE; fi
    "$bin" -c "$conf" >>"$work/$kind.log" 2>&1 &
    pid=$!
    for i in $(seq 1 100); do
        ss -Htln "( sport = :$port )" | grep -q LISTEN && return 0
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.05
    done
    echo "auth-passwd.sh: $kind did not start (see $work/$kind.log)" >&2
    exit 1
}

stop() {
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
}

field() { # field NAME "RESULT line"
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

median() { # median of the numbers on stdin
    sort -g | awk '{v[NR]=$1} END {if (NR == 0) print "n/a"; else if (NR % 2) print v[(NR+1)/2]; else printf "%.2f\n", (v[NR/2]+v[NR/2+1])/2}'
}

declare -A res stalled p50
load_start=$(cut -d' ' -f1-3 /proc/loadavg)

# logins LABEL PARALLEL KIND [config...]: right-password logins/s.
logins() {
    local label=$1 par=$2 kind=$3 r out
    shift 3
    start "$kind" "$@"
    "$LOGIN" -p "$port" -u alice -P right-password -c 1 -n 1 >/dev/null # warms the cache, if any
    out=$("$LOGIN" -p "$port" -u alice -P right-password -c "$par" -d "$dur")
    stop
    echo "$label: $out" >>"$work/all.out"
    r=$(awk -v a="$(field accepted "$out")" -v t="$(field seconds "$out")" 'BEGIN{printf "%.1f", a/t}')
    log "$label: $r accepted logins/s (CONNACK codes: $(field rc "$out"))"
    res[$label]="${res[$label]:-} $r"
}

# stream LABEL STORM KIND [config...]: p99 of the QoS 0 stream, with STORM (0/1).
# The stream connects first; the storm starts 1 s into its 2 s warm-up and
# lasts to the end of the measured window.
stream() {
    local label=$1 with=$2 kind=$3 out bp
    shift 3
    start "$kind" "$@"
    "$BENCH" -p "$port" -m load -T pair -P 4 -S 4 -q 0 -r 4000 -w 2 -d "$dur" >"$work/stream.out" 2>&1 &
    bp=$!
    if [ "$with" = 1 ]; then
        sleep 1
        "$LOGIN" -p "$port" -u alice -P wrong-password -c 100 -d $((dur + 1)) >"$work/storm.out" &
        storm=$!
    fi
    wait "$bp"
    out=$(grep '^RESULT' "$work/stream.out")
    if [ -n "$storm" ]; then
        wait "$storm"
        storm=""
        echo "$label storm: $(cat "$work/storm.out")" >>"$work/all.out"
    fi
    stop
    echo "$label: $out" >>"$work/all.out"
    log "$label: p99 $(field p99_us "$out") us, ok=$(field ok "$out")"
    if [ "$(field ok "$out")" = 1 ] && [ "$(field p99_us "$out")" != -1.0 ]; then
        res[$label]="${res[$label]:-} $(field p99_us "$out")"
        p50[$label]="${p50[$label]:-} $(field p50_us "$out")"
    else
        # p99 -1: not one message arrived in the measured window (the broker stalled).
        stalled[$label]=$(( ${stalled[$label]:-0} + 1 ))
    fi
}

log "work directory $work; $runs run(s), $dur s each"
for i in $(seq 1 "$runs"); do
    logins "midge cold, plugin_threads 1" 4 midge "plugin_opt_cache_size 0"
    logins "midge cold, plugin_threads 2" 4 midge "plugin_opt_cache_size 0" "plugin_threads 2"
    logins "midge warm cache" 50 midge
    logins "mosquitto (no cache)" 4 mosquitto
    stream "midge, no storm" 0 midge
    stream "midge, storm, limiter on (defaults)" 1 midge
    stream "midge, storm, limiter off" 1 midge "plugin_opt_max_failures 0" "plugin_opt_fail_delay 0"
    stream "mosquitto, no storm" 0 mosquitto
    stream "mosquitto, storm" 1 mosquitto
done

report() {
    local k
    echo "Accepted logins per second with the right password (median of $runs runs of $dur s):"
    echo
    echo "| setup | logins/s |"
    echo "|---|---:|"
    for k in "midge cold, plugin_threads 1" "midge cold, plugin_threads 2" "midge warm cache" "mosquitto (no cache)"; do
        echo "| $k | $(echo "${res[$k]}" | tr ' ' '\n' | grep . | median) |"
    done
    echo
    echo "p99 latency of a QoS 0 stream (pair 4->4, 4,000 msg/s in total), with and"
    echo "without 100 clients logging in with a wrong password in a loop:"
    echo
    echo "| setup | p50 ms | p99 ms | p99 vs no storm |"
    echo "|---|---:|---:|---:|"
    local base
    for k in "midge, no storm" "midge, storm, limiter on (defaults)" "midge, storm, limiter off" "mosquitto, no storm" "mosquitto, storm"; do
        local m st=${stalled[$k]:-0} note="" q
        m=$(echo "${res[$k]:-}" | tr ' ' '\n' | grep . | median)
        q=$(echo "${p50[$k]:-}" | tr ' ' '\n' | grep . | median)
        case $k in *"no storm") base=$m ;; esac
        [ "$st" -gt 0 ] && note=" (no message delivered in the window in $st of $runs runs)"
        if [ "$m" = n/a ]; then
            echo "| $k | - | stalled$note | - |"
        else
            echo "| $k | $(awk -v v="$q" 'BEGIN{printf "%.3f", v/1000}') | $(awk -v v="$m" 'BEGIN{printf "%.3f", v/1000}')$note | $(awk -v v="$m" -v b="$base" 'BEGIN{if (b > 0 && b != "n/a") printf "%.2fx", v/b; else print "-"}') |"
        fi
    done
}

report | tee "$work/report.md"
if [ -n "$file" ]; then
    tmp=$(mktemp)
    awk '/^## auth-passwd/{skip=1; next} /^## /{skip=0} !skip' "$file" >"$tmp"
    {
        echo "## auth-passwd"
        echo
        echo "Password-file logins (issue 5): \`bench/auth-passwd.sh -n $runs -d $dur\`,"
        echo "$(date -u '+%Y-%m-%d %H:%M UTC'), same machine as above (2 cores, shared"
        echo "with the load generators and, during this run, other people's builds and"
        echo "benchmarks: load average $load_start at the start, $(cut -d' ' -f1-3 /proc/loadavg) at the end)."
        echo "One user with midge_passwd's default"
        echo "hash (\$7\$, PBKDF2-HMAC-SHA512, 210,000 iterations), the same file for both"
        echo "brokers; midge with \`worker_threads 2\` and the plugin's defaults unless"
        echo "stated; mosquitto 2.0.11 with \`password_file\`. Logins: \`bench/login-bench\`"
        echo "(CONNECT with credentials, CONNACK, DISCONNECT, close; 4 in parallel, 50"
        echo "for the warm cache). Stream: \`midge-bench -T pair -P 4 -S 4 -q 0 -r 4000\`"
        echo "(anonymous clients; the plugin defers them to \`allow_anonymous true\`)."
        echo "Storm: \`login-bench -u alice -P wrong-password -c 100\` from 127.0.0.1."
        echo
        cat "$work/report.md"
        echo
        cat <<'EOF2'
How to read it: the target of issue 5 is the midge storm rows at most 2x
the no-storm p99. midge hashes on its plugin pool (nice +10), so the stream's
workers keep their pace and p50 does not move; p99 at this rate is within
run-to-run noise on this shared 2-core machine. With the limiter on, most
storm attempts are refused (0x9F) without hashing after the first ten
failures; with it off every attempt is hashed, and logins beyond
`max_wait` are answered 0x89. mosquitto hashes on its only thread: during
the storm its stream stops (no delivery at all in the measured window in
most runs, seconds of latency in the others). Cold logins are bounded by
PBKDF2 at 210,000 iterations (~0.25 s of CPU each here); `plugin_threads 2`
helps only when a second core is free (the generator and the broker share
two). Warm-cache logins cost an HMAC and are bounded by connection
handling.
EOF2
    } >>"$tmp"
    mv "$tmp" "$file"
fi
log "raw results in $work/all.out"
