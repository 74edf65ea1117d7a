#!/usr/bin/env bash
# bench/soak.sh: a long mixed load against one midge, sampling its RSS every 10 s.
#
#   bench/soak.sh                     30 minutes, build/server/midge
#   bench/soak.sh -d 600 -o /tmp/s    10 minutes, results in /tmp/s
#   MIDGE=build-asan/server/midge bench/soak.sh -d 1800 -o /tmp/soak-asan
#
# The load (bench/soak_load.py) mixes QoS 0/1/2 publishers, wildcard subscribers,
# retained messages on 2,000 rotating topics, and clients connecting and leaving in
# every way (DISCONNECT, dropped socket, will, clean and persistent sessions from a
# bounded pool of ids; offline sessions expire after 2 minutes). Everything it builds
# up is bounded, so after a warm-up the broker's RSS must stay flat.
#
# Writes OUT/rss.csv (elapsed_s,rss_kb), OUT/load.log, OUT/broker.log and
# OUT/summary.txt: RSS at the end of the warm-up (default: a sixth of the run, at
# most 5 min), at the end, the maximum, the growth after warm-up and a least-squares
# slope over the samples after warm-up; sanitizer reports in the broker log and the
# broker's exit status after SIGTERM (a sanitized build checks leaks at exit).
# Exit status 0 when the load ran without errors, the broker survived, exited 0 and
# reported nothing. Builds nothing; never a test (no thresholds).
set -u
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
MIDGE=${MIDGE:-$repo/build/server/midge}
duration=1800
interval=10
out=""
rate=100
warmup=""

usage() {
    sed -n '2,22p' "$0" | sed 's/^# \{0,1\}//'
    echo "options: -d SECONDS (1800)  -o DIR (/tmp/midge-soak-PID)  -r MSG/S per publisher (100)"
    echo "         -w WARMUP_SECONDS (duration/6, at most 300)  -i SAMPLE_INTERVAL (10)"
}
while getopts "d:o:r:w:i:h" o; do
    case $o in
    d) duration=$OPTARG ;;
    o) out=$OPTARG ;;
    r) rate=$OPTARG ;;
    w) warmup=$OPTARG ;;
    i) interval=$OPTARG ;;
    *) usage; exit 2 ;;
    esac
done
[ -n "$out" ] || out=/tmp/midge-soak-$$
[ -n "$warmup" ] || warmup=$((duration / 6 > 300 ? 300 : duration / 6))
[ -x "$MIDGE" ] || { echo "soak: $MIDGE not found (build it, or set MIDGE)" >&2; exit 2; }
mkdir -p "$out"
ulimit -n "$(ulimit -Hn)" 2>/dev/null

port=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$out/midge.conf" <<EOF
listener $port 127.0.0.1
allow_anonymous true
worker_threads 2
max_queued_messages 1000
sys_interval 10
persistent_client_expiration 2m
EOF
"$MIDGE" -c "$out/midge.conf" >"$out/broker.log" 2>&1 &
broker=$!
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
/usr/bin/python3 "$here/soak_load.py" --port "$port" --duration "$duration" --rate "$rate" \
    >"$out/load.log" 2>&1 &
load=$!

echo "elapsed_s,rss_kb" >"$out/rss.csv"
t0=$(date +%s)
echo "soak: midge pid $broker port $port, ${duration}s, samples every ${interval}s -> $out"
while kill -0 "$load" 2>/dev/null; do
    now=$(($(date +%s) - t0))
    rss=$(awk '/^VmRSS:/ {print $2}' "/proc/$broker/status" 2>/dev/null)
    if [ -z "$rss" ]; then
        echo "soak: the broker is gone after ${now}s" >&2
        break
    fi
    echo "$now,$rss" >>"$out/rss.csv"
    sleep "$interval"
done
wait "$load"
load_rc=$?
alive=yes
kill -0 "$broker" 2>/dev/null || alive=no
kill -TERM "$broker" 2>/dev/null
for _ in $(seq 300); do kill -0 "$broker" 2>/dev/null || break; sleep 0.1; done
kill -0 "$broker" 2>/dev/null && kill -KILL "$broker"
wait "$broker"
broker_rc=$?
reports=$(grep -c -E "ERROR: (Address|Leak)Sanitizer|runtime error:|WARNING: ThreadSanitizer" "$out/broker.log")

{
    echo "midge soak: $MIDGE"
    echo "duration ${duration}s, warm-up ${warmup}s, RSS every ${interval}s, $rate msg/s per publisher"
    awk -F, -v w="$warmup" 'NR > 1 {
            t[n] = $1; r[n] = $2; n++
            if ($1 <= w) warm = $2
            if ($2 > max) max = $2
        }
        END {
            if (n == 0) { print "no samples"; exit }
            for (i = 0; i < n; i++) if (t[i] >= w) { sx += t[i]; sy += r[i]; sxx += t[i] * t[i]; sxy += t[i] * r[i]; m++ }
            slope = (m > 1 && m * sxx - sx * sx != 0) ? (m * sxy - sx * sy) / (m * sxx - sx * sx) : 0
            printf "samples %d; RSS after warm-up %d KiB, at the end %d KiB, max %d KiB\n", n, warm, r[n - 1], max
            printf "growth after warm-up %+d KiB (%+.1f%%); fitted slope %+.2f KiB/min over %d samples\n",
                r[n - 1] - warm, warm ? 100.0 * (r[n - 1] - warm) / warm : 0, slope * 60, m
        }' "$out/rss.csv"
    grep "soak-load total" "$out/load.log"
    echo "load errors: $(grep -c "soak-load error" "$out/load.log") (exit $load_rc)"
    echo "broker alive at the end: $alive; exit status after SIGTERM: $broker_rc; sanitizer reports: $reports"
} | tee "$out/summary.txt"
[ "$load_rc" -eq 0 ] && [ "$alive" = yes ] && [ "$broker_rc" -eq 0 ] && [ "$reports" -eq 0 ]
