#!/usr/bin/env bash
# bench/tls.sh: TLS handshakes per second and TLS QoS 0 throughput, midge
# against mosquitto on this machine (issue 9). Each run starts a fresh broker
# with one TLS listener (same EC P-256 certificate for both), runs
# bench/tls-bench against it and stops it; runs alternate midge, mosquitto.
# Prints every run and the medians.
#
#   bench/tls.sh [-n RUNS] [-d SECONDS] [-t HANDSHAKE_THREADS] [-s PAYLOAD]
#
# Environment: MIDGE (build/server/midge), MOSQUITTO (/usr/sbin/mosquitto),
# TLS_BENCH (build/bench/tls-bench).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
MIDGE=${MIDGE:-$repo/build/server/midge}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
TLS_BENCH=${TLS_BENCH:-$repo/build/bench/tls-bench}
runs=3
secs=5
hthreads=2
payload=64
while getopts "n:d:t:s:h" o; do
    case $o in
    n) runs=$OPTARG ;;
    d) secs=$OPTARG ;;
    t) hthreads=$OPTARG ;;
    s) payload=$OPTARG ;;
    *) sed -n '2,12p' "$0"; exit 2 ;;
    esac
done

work=$(mktemp -d /tmp/midge-tls-bench.XXXXXX)
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; fi
    rm -rf "$work"
}
trap cleanup EXIT
# mosquitto started as root drops to its own user: let it read the files.
chmod 755 "$work"

# Throw-away PKI: CA and server certificate (EC P-256).
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/ca.key" \
    -out "$work/ca.crt" -days 2 -subj "/CN=bench CA" >/dev/null 2>&1
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$work/server.key" \
    -out "$work/server.csr" -subj "/CN=localhost" >/dev/null 2>&1
openssl x509 -req -in "$work/server.csr" -CA "$work/ca.crt" -CAkey "$work/ca.key" \
    -CAcreateserial -out "$work/server.crt" -days 2 >/dev/null 2>&1
chmod 644 "$work"/*

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start() { # broker port
    local conf="$work/$1.conf"
    {
        echo "listener $2 127.0.0.1"
        echo "certfile $work/server.crt"
        echo "keyfile $work/server.key"
        echo "allow_anonymous true"
        echo "max_queued_messages 100000"
        echo "set_tcp_nodelay true"
        if [ "$1" = midge ]; then
            echo "worker_threads 2"
            echo "log_type error"
            echo "connection_messages false"
        else
            echo "log_type error"
            echo "connection_messages false"
            echo "persistence false"
        fi
    } >"$conf"
    if [ "$1" = midge ]; then "$MIDGE" -c "$conf" >"$work/$1.log" 2>&1 &
    else "$MOSQUITTO" -c "$conf" >"$work/$1.log" 2>&1 & fi
    pid=$!
    for _ in $(seq 100); do
        if python3 -c "import socket,sys; socket.create_connection(('127.0.0.1',$2),0.2)" 2>/dev/null; then
            return 0
        fi
        sleep 0.05
    done
    echo "broker $1 did not start" >&2
    cat "$work/$1.log" >&2
    exit 1
}

stop() {
    kill "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
    pid=""
}

# CPU seconds (user + system) the broker used so far.
cpu_s() {
    awk -v hz="$(getconf CLK_TCK)" '{print ($14 + $15) / hz}' "/proc/$pid/stat"
}

median() { sort -n | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

: >"$work/results"
for i in $(seq "$runs"); do
    for b in midge mosquitto; do
        port=$(free_port)
        start "$b" "$port"
        c0=$(cpu_s)
        line=$("$TLS_BENCH" -p "$port" -c "$work/ca.crt" -m handshake -t "$hthreads" -d "$secs")
        c1=$(cpu_s)
        n=$(echo "$line" | sed -n 's/.*connections=\([0-9]*\).*/\1/p')
        ms=$(awk -v a="$c0" -v b="$c1" -v n="$n" 'BEGIN {printf "%.3f", n ? (b - a) * 1000 / n : 0}')
        echo "$b run $i $line broker_cpu_ms_per_handshake=$ms"
        echo "$b hs $(echo "$line" | sed -n 's/.*per_s=\([0-9]*\).*/\1/p')" >>"$work/results"
        echo "$b cpu $ms" >>"$work/results"
        stop
        port=$(free_port)
        start "$b" "$port"
        line=$("$TLS_BENCH" -p "$port" -c "$work/ca.crt" -m qos0 -s "$payload" -d "$secs")
        echo "$b run $i $line"
        echo "$b q0 $(echo "$line" | sed -n 's/.*received_per_s=\([0-9]*\).*/\1/p')" >>"$work/results"
        stop
    done
done
for b in midge mosquitto; do
    hs=$(awk -v b=$b '$1==b && $2=="hs" {print $3}' "$work/results" | median)
    q0=$(awk -v b=$b '$1==b && $2=="q0" {print $3}' "$work/results" | median)
    cpu=$(awk -v b=$b '$1==b && $2=="cpu" {print $3}' "$work/results" | median)
    echo "MEDIAN $b handshakes_per_s=$hs broker_cpu_ms_per_handshake=$cpu qos0_received_per_s=$q0"
done
