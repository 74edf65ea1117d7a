#!/bin/sh
# QoS 1 throughput to persistent subscribers (issue 7): midge without persistence,
# midge with persist-sqlite durability full / batch / none, and mosquitto with
# persistence on. 16 publishers -> 16 persistent subscribers (pair topology, clean
# session 0), QoS 1, 100 unacknowledged messages per publisher, 64-byte payloads.
#
#   bench/persist-qos1.sh [-n RUNS] [-d SECONDS] [-w SECONDS] [-P PUBS] [-W WINDOW] [-c CONFIGS]
#
# CONFIGS: which of "memory full batch none mosquitto" to run (default all), e.g.
# -c "memory full" for the ratio issue 7 asks about; runs are interleaved, and each
# round's full/memory ratio is printed with their median (a shared machine's speed
# drifts between rounds, and the ratio of one round's pair drifts less).
#
# Prints each run's RESULT line and the median delivered msg/s per configuration,
# plus persist-sqlite's commit statistics (group commit: events per commit, fsync
# time) from its "closed ..." log line, and the broker's CPU per delivered message
# (its utime+stime over the whole run / (recv_rate x (warm-up + measured)), an
# estimate that a shared machine's load disturbs less than the rates). Binaries from BUILD (default build/),
# MOSQUITTO (default /usr/sbin/mosquitto). Stops what it starts, by PID.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$top/build}
mosq=${MOSQUITTO:-/usr/sbin/mosquitto}
runs=3 dur=5 warm=2 pubs=16 window=100 configs="memory full batch none mosquitto"
while getopts n:d:w:P:W:c: o; do
    case $o in
    n) runs=$OPTARG ;; d) dur=$OPTARG ;; w) warm=$OPTARG ;; P) pubs=$OPTARG ;; W) window=$OPTARG ;;
    c) configs=$OPTARG ;;
    *) exit 2 ;;
    esac
done
work=$(mktemp -d /tmp/midge-persist-qos1.XXXXXX)
echo "# $(nproc) cores, $(uname -r); load at start: $(cut -d' ' -f1-3 /proc/loadavg); work dir $work"
echo "# $pubs publishers -> $pubs persistent subscribers, QoS 1, window $window, ${warm}s warm-up + ${dur}s measured, $runs run(s)"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }

run_one() { # name run
    name=$1 run=$2 port=$(free_port) dir="$work/$1-$2"
    mkdir -p "$dir"
    common="listener $port 127.0.0.1
allow_anonymous true
max_inflight_messages 0
max_queued_messages 100000
set_tcp_nodelay true"
    case $name in
    mosquitto)
        printf '%s\npersistence true\npersistence_location %s/\n' "$common" "$dir" > "$dir/conf"
        "$mosq" -c "$dir/conf" > "$dir/log" 2>&1 & ;;
    memory)
        printf '%s\nworker_threads 2\n' "$common" > "$dir/conf"
        "$build/server/midge" -c "$dir/conf" > "$dir/log" 2>&1 & ;;
    *)
        printf '%s\nworker_threads 2\nplugin %s\nplugin_opt_db %s/midge.db\nplugin_opt_durability %s\n' \
            "$common" "$build/plugins/persist-sqlite/.libs/persist-sqlite.so" "$dir" "$name" > "$dir/conf"
        "$build/server/midge" -c "$dir/conf" > "$dir/log" 2>&1 & ;;
    esac
    pid=$!
    t=0
    until python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; do
        sleep 0.05; t=$((t + 1)); [ $t -lt 200 ] || { echo "broker $name did not start"; kill $pid; return 1; }
    done
    res=$("$build/bench/midge-bench" -p "$port" -T pair -P "$pubs" -S "$pubs" -q 1 -R -W "$window" \
        -d "$dur" -w "$warm" -D 5 -L "$name" | grep '^RESULT' || true)
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill "$pid"; wait "$pid" 2>/dev/null || true
    echo "$res"
    rate=$(echo "$res" | sed -n "s/.* recv_rate=\([0-9.]*\).*/\1/p")
    echo "$rate" >> "$work/$name.rates"
    cpu=$(awk -v t="$ticks" -v r="${rate:-0}" -v s="$((warm + dur))" -v hz="$(getconf CLK_TCK)" \
        'BEGIN { if (r > 0) printf "%.2f", t / hz * 1e6 / (r * s) }')
    echo "    broker cpu $(awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }') s, ~$cpu us per delivered message"
    echo "$cpu" >> "$work/$name.cpu"
    grep "plugin=persist-sqlite closed" "$dir/log" | sed 's/.*closed db=[^ ]* /    /' || true
}

for run in $(seq 1 "$runs"); do
    for name in $configs; do
        run_one "$name" "$run"
    done
    m=$(tail -n 1 "$work/memory.rates" 2>/dev/null || true)
    f=$(tail -n 1 "$work/full.rates" 2>/dev/null || true)
    if [ -n "$m" ] && [ -n "$f" ] && [ -s "$work/memory.rates" ] && [ -s "$work/full.rates" ]; then
        awk -v f="$f" -v m="$m" 'BEGIN { if (m > 0) printf "%.4f\n", f / m }' >> "$work/ratio"
        echo "# round $run: full/memory $(tail -n 1 "$work/ratio")"
    fi
done
echo "# medians (delivered msg/s, broker cpu us per delivered message)"
[ -s "$work/ratio" ] && echo "full/memory per round: $(tr '\n' ' ' < "$work/ratio")median $(median < "$work/ratio")"
for name in $configs; do
    [ -s "$work/$name.rates" ] && echo "$name $(median < "$work/$name.rates") $(grep . "$work/$name.cpu" | median)"
done
