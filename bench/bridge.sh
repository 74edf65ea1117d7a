#!/usr/bin/env bash
# bench/bridge.sh: QoS 1 throughput over one bridge, edge -> remote, for
#   midge -> mosquitto, mosquitto -> mosquitto, midge -> midge
# on this machine. 4 publishers (midge-bench) publish QoS 1 as fast as the
# edge broker acknowledges them on bench/i; the edge bridges `bench/#` out at
# QoS 1 to the remote, where midge-bench subscribers count what arrives.
#
#   bench/bridge.sh [-n RUNS] [-d SECONDS] [-w WARMUP] [-t TAIL] [-r RATE] [-o FILE]
#
# -r RATE paces the publishers to RATE msg/s in total (0: as fast as the edge
# acknowledges; a midge edge then slows its publishers to the bridge's pace
# through back-pressure from the bridge's session, and the loss column shows
# whether anything acknowledged was dropped anyway).
#
# Per run: a fresh remote and a fresh edge on free loopback ports, stopped by
# PID. Two subscribers on the remote: "rate" measures over the publishers'
# window (delivered msg/s at the far end = the bridge's throughput), "all"
# counts every message until TAIL seconds after publishing stopped, so
# loss = sent - received by "all" (0 means nothing was lost; the backlog
# drained). Prints one line per run and the medians; with -o appends a
# markdown section. Builds nothing: MIDGE, MOSQUITTO, BENCH and BRIDGE_SO
# default to the build tree.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
MIDGE=${MIDGE:-$repo/build/server/midge}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BENCH=${BENCH:-$repo/build/bench/midge-bench}
BRIDGE_SO=${BRIDGE_SO:-$repo/build/plugins/bridge/.libs/bridge.so}
runs=3
duration=10
warmup=2
tail=10
rate=0
out=""
while getopts "n:d:w:t:r:o:h" o; do
    case $o in
    n) runs=$OPTARG ;;
    d) duration=$OPTARG ;;
    w) warmup=$OPTARG ;;
    t) tail=$OPTARG ;;
    r) rate=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n '2,22p' "$0"; exit 2 ;;
    esac
done
for f in "$MIDGE" "$MOSQUITTO" "$BENCH" "$BRIDGE_SO"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "bench/bridge.sh: $f not found (build first)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/midge-bridge-bench.XXXXXX)
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=()
}
trap 'cleanup; [ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT
ulimit -n "$(ulimit -Hn)" 2>/dev/null

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_port() {
    for _ in $(seq 1 250); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    echo "bench/bridge.sh: nothing listening on $1" >&2
    return 1
}

# start KIND PORT CONFIG_EXTRA_FILE LOG -> pid in $started
start() {
    local kind=$1 port=$2 extra=$3 log=$4
    local conf=$work/$kind-$port.conf
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_inflight_messages 0"
        echo "max_queued_messages 1000000"
        echo "set_tcp_nodelay true"
        if [ "$kind" = midge ]; then echo "worker_threads 2"; else echo "persistence false"; fi
        [ "$(id -u)" = 0 ] && [ "$kind" = mosquitto ] && echo "user root"
        cat "$extra"
    } > "$conf"
    if [ "$kind" = midge ]; then "$MIDGE" -c "$conf" > "$log" 2>&1 &
    else "$MOSQUITTO" -c "$conf" > "$log" 2>&1 & fi
    started=$!
    pids+=("$started")
    wait_port "$port"
}

result() { # KEY LINE
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

one_run() { # EDGE REMOTE -> "rate sent recv"
    local edge=$1 remote=$2 rport eport
    local extra=$work/extra
    rport=$(free_port)
    eport=$(free_port)
    : > "$extra"
    start "$remote" "$rport" "$extra" "$work/remote.log" || return 1
    if [ "$edge" = midge ]; then
        printf 'connection bench\naddress 127.0.0.1:%s\nremote_clientid bench-edge\ncleansession true\n'\
'notifications false\ntopic bench/# out 1\nqueue_max_messages 65535\n' "$rport" > "$work/bridges.conf"
        printf 'plugin %s\nplugin_opt_bridges %s\n' "$BRIDGE_SO" "$work/bridges.conf" > "$extra"
    else
        printf 'connection bench\naddress 127.0.0.1:%s\nremote_clientid bench-edge\ncleansession true\n'\
'notifications false\ntopic bench/# out 1\n' "$rport" > "$extra"
    fi
    start "$edge" "$eport" "$extra" "$work/edge.log" || return 1
    for _ in $(seq 1 500); do
        grep -q "bench-edge" "$work/remote.log" 2>/dev/null && break
        sleep 0.02
    done
    "$BENCH" -p "$rport" -T nm -P 0 -S 1 -q 1 -s 12 -w 0 -d $((warmup + duration + tail)) -L all \
        > "$work/all.out" 2>&1 &
    local all=$!
    "$BENCH" -p "$rport" -T nm -P 0 -S 1 -q 1 -s 12 -w "$warmup" -d "$duration" -L rate \
        > "$work/rate.out" 2>&1 &
    local ratepid=$!
    sleep 0.3 # both subscribers subscribed before the first publish (they connect in ms)
    "$BENCH" -p "$eport" -T nm -P 4 -S 0 -q 1 -s 12 -r "$rate" -w "$warmup" -d "$duration" -L pub > "$work/pub.out" 2>&1
    wait "$ratepid" "$all"
    local r s a
    r=$(result recv_rate "$(grep ^RESULT "$work/rate.out")")
    s=$(result sent "$(grep ^RESULT "$work/pub.out")")
    a=$(result recv "$(grep ^RESULT "$work/all.out")")
    cleanup
    echo "${r:-0} ${s:-0} ${a:-0}"
}

median() { sort -n | awk '{v[NR]=$1} END {print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

# Interleaved (run 1 of every pair, then run 2, ...): the machine is shared and
# noisy, so a slow minute hits every pair rather than one.
declare -A med loss rates losses
pairs=("midge mosquitto" "mosquitto mosquitto" "midge midge")
for i in $(seq 1 "$runs"); do
    for pair in "${pairs[@]}"; do
        set -- $pair
        line=$(one_run "$1" "$2")
        set -- $pair
        read -r rr ss aa <<< "$line"
        l=$((ss - aa))
        echo "$1 -> $2 run $i: delivered ${rr} msg/s, sent $ss, received $aa, loss $l"
        rates["$pair"]="${rates[$pair]:-} $rr"
        losses["$pair"]="${losses[$pair]:-} $l"
    done
done
for pair in "${pairs[@]}"; do
    med["$pair"]=$(printf '%s\n' ${rates[$pair]} | median)
    loss["$pair"]=$(printf '%s\n' ${losses[$pair]} | sort -n | tail -1)
done

summary=$(
    echo "| edge -> remote | delivered msg/s (median of $runs) | worst loss |"
    echo "|---|---|---|"
    for pair in "midge mosquitto" "mosquitto mosquitto" "midge midge"; do
        set -- $pair
        echo "| $1 -> $2 | ${med[$pair]} | ${loss[$pair]} |"
    done
)
echo "$summary"
if [ -n "$out" ]; then
    {
        echo
        echo "## Bridge: QoS 1 throughput over one bridge"
        echo
        echo "Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1);" \
             "$(date -u +%Y-%m-%d). Command: \`bench/bridge.sh -n $runs -d $duration -w $warmup -t $tail -r $rate\`."
        echo "4 QoS 1 publishers (midge-bench, 12-byte payloads, rate $rate msg/s, 0 = as fast as acknowledged) on the edge, bridge"
        echo "\`topic bench/# out 1\`, 2 subscribers on the remote (one measures the rate over"
        echo "the publishers' window, one counts everything for loss)."
        echo
        echo "$summary"
    } >> "$out"
fi
