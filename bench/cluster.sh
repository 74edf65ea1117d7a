#!/usr/bin/env bash
# bench/cluster.sh: cluster-redis (docs/cluster-redis.md) cost on this machine.
#
#   bench/cluster.sh [-n RUNS] [-d SECONDS] [-w WARMUP] [-r LATENCY_RATE] [-o FILE]
#
# One redis-server (appendonly yes, appendfsync always: the configuration the
# no-loss promise needs) and midge nodes with the plugin, on free loopback
# ports. midge-bench runs 4 publishers on bench/i and 1 subscriber on bench/#:
#
#   plain   one midge without the plugin (the reference)
#   local   one node of a cluster: publishers and subscriber on the same node
#   cross   two nodes: publishers on node A, the subscriber on node B
#           (midge-bench --sub-port), every message crosses Redis
#
# Throughput: QoS 0 and QoS 1 as fast as acknowledged (delivered msg/s at the
# subscriber). Latency: QoS 0 and QoS 1 paced at LATENCY_RATE msg/s in total
# (default 200: below the QoS 1 cross-node capacity, so the numbers are the hop, not a queue), p50/p99 from publish to delivery; the added cost of the
# cross-node hop is cross minus plain. Runs are interleaved (run 1 of every
# scenario, then run 2, ...) because the machine is shared; medians printed,
# with -o appended as a markdown section. Builds nothing.
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
MIDGE=${MIDGE:-$repo/build/server/midge}
BENCH=${BENCH:-$repo/build/bench/midge-bench}
PLUGIN_SO=${PLUGIN_SO:-$repo/build/plugins/cluster-redis/.libs/cluster-redis.so}
REDIS=${REDIS:-$(command -v redis-server || echo /usr/bin/redis-server)}
runs=3
duration=5
warmup=2
lrate=200
out=""
while getopts "n:d:w:r:o:h" o; do
    case $o in
    n) runs=$OPTARG ;;
    d) duration=$OPTARG ;;
    w) warmup=$OPTARG ;;
    r) lrate=$OPTARG ;;
    o) out=$OPTARG ;;
    *) sed -n '2,21p' "$0"; exit 2 ;;
    esac
done
for f in "$MIDGE" "$BENCH" "$PLUGIN_SO" "$REDIS"; do
    [ -x "$f" ] || [ -f "$f" ] || { echo "bench/cluster.sh: $f not found (build first; apt-get install redis-server)" >&2; exit 1; }
done
work=$(mktemp -d /tmp/midge-cluster-bench.XXXXXX)
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
    for _ in $(seq 1 750); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.02
    done
    echo "bench/cluster.sh: nothing listening on $1" >&2
    return 1
}

start_redis() { # PORT
    rm -rf "$work/redis" && mkdir -p "$work/redis"
    "$REDIS" --port "$1" --bind 127.0.0.1 --dir "$work/redis" --appendonly yes \
        --appendfsync always --save '' --daemonize no > "$work/redis.log" 2>&1 &
    pids+=("$!")
    wait_port "$1"
}

start_midge() { # PORT NODE_ID|- REDIS_PORT
    local conf=$work/midge-$1.conf
    {
        echo "listener $1 127.0.0.1"
        echo "allow_anonymous true"
        echo "worker_threads 2"
        echo "max_inflight_messages 0"
        echo "max_queued_messages 1000000"
        echo "set_tcp_nodelay true"
        if [ "$2" != - ]; then
            echo "plugin $PLUGIN_SO"
            echo "plugin_opt_redis 127.0.0.1:$3"
            echo "plugin_opt_node_id $2"
        fi
    } > "$conf"
    "$MIDGE" -c "$conf" > "$work/midge-$1.log" 2>&1 &
    pids+=("$!")
    wait_port "$1" || return 1
    if [ "$2" != - ]; then
        for _ in $(seq 1 250); do
            grep -q "connected to redis" "$work/midge-$1.log" && return 0
            sleep 0.02
        done
        return 1
    fi
}

result() { # KEY LINE
    echo "$2" | tr ' ' '\n' | sed -n "s/^$1=//p"
}

one_run() { # SCENARIO QOS RATE -> "recv_rate p50 p99"
    local sc=$1 qos=$2 rate=$3 rp pa pb subport
    rp=$(free_port); pa=$(free_port); pb=$(free_port)
    case $sc in
    plain) start_midge "$pa" - 0 || return 1; subport=$pa ;;
    local) start_redis "$rp" && start_midge "$pa" a "$rp" || return 1; subport=$pa ;;
    cross) start_redis "$rp" && start_midge "$pa" a "$rp" && start_midge "$pb" b "$rp" || return 1
           subport=$pb ;;
    esac
    "$BENCH" -p "$pa" --sub-port "$subport" -T nm -P 4 -S 1 -q "$qos" -s 64 -r "$rate" \
        -w "$warmup" -d "$duration" -D 3 -L "$sc-q$qos" > "$work/out" 2>&1
    local line
    line=$(grep ^RESULT "$work/out")
    cleanup
    echo "$(result recv_rate "$line") $(result p50_us "$line") $(result p99_us "$line")"
}

# Median of the runs that worked (a run that failed to start, e.g. on a loaded machine, reports 0).
median() { awk '$1 > 0' | sort -n | awk '{v[NR]=$1} END {if (NR == 0) print "-"; else print (NR%2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

declare -A tput p50 p99
tests=("plain 0 0" "local 0 0" "cross 0 0" "plain 1 0" "local 1 0" "cross 1 0"
       "plain 0 $lrate" "cross 0 $lrate" "plain 1 $lrate" "cross 1 $lrate")
for i in $(seq 1 "$runs"); do
    for t in "${tests[@]}"; do
        read -r sc qos rate <<< "$t"
        line=$(one_run "$sc" "$qos" "$rate")
        read -r rr l50 l99 <<< "$line"
        echo "run $i: $sc qos $qos rate $rate: delivered ${rr:-0} msg/s, p50 ${l50:-?} us, p99 ${l99:-?} us (load $(cut -d' ' -f1 /proc/loadavg))"
        tput["$t"]+="${rr:-0} "
        p50["$t"]+="${l50:-0} "
        p99["$t"]+="${l99:-0} "
    done
done
med() { printf '%s\n' $1 | median; }
summary=$(
    echo "| scenario | QoS 0 msg/s | QoS 1 msg/s |"
    echo "|---|---|---|"
    for sc in plain local cross; do
        echo "| $sc | $(med "${tput["$sc 0 0"]}") | $(med "${tput["$sc 1 0"]}") |"
    done
    echo
    echo "| paced at $lrate msg/s | p50 us | p99 us |"
    echo "|---|---|---|"
    for q in 0 1; do
        for sc in plain cross; do
            echo "| $sc QoS $q | $(med "${p50["$sc $q $lrate"]}") | $(med "${p99["$sc $q $lrate"]}") |"
        done
    done
)
echo "$summary"
if [ -n "$out" ]; then
    {
        echo
        echo "## cluster-redis: cross-node throughput and latency"
        echo
        echo "Machine: $(nproc) cores, $(sed -n 's/^model name\s*: //p' /proc/cpuinfo | head -1);" \
             "$(date -u +%Y-%m-%d); redis-server $("$REDIS" --version | sed -n 's/.*v=\([^ ]*\).*/\1/p')" \
             "with appendonly yes, appendfsync always. Command: \`bench/cluster.sh -n $runs -d $duration -w $warmup -r $lrate\`."
        echo "4 publishers (midge-bench, 64-byte payloads) on bench/i, 1 subscriber on bench/#;"
        echo "plain = one midge without the plugin, local = one cluster node, cross = publishers on"
        echo "node A and the subscriber on node B. Medians of $runs interleaved runs."
        echo
        echo "$summary"
    } >> "$out"
fi
