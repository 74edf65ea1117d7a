#!/usr/bin/env bash
# bench/run.sh: run the same benchmark scenarios against midge and against
# mosquitto, one after the other on this machine, and write the table of
# medians to docs/benchmarks.md. Builds nothing; see bench/README.md.
set -u

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
MIDGE=${MIDGE:-$repo/build/server/midge}
MOSQUITTO=${MOSQUITTO:-/usr/sbin/mosquitto}
BENCH=${BENCH:-$repo/build/bench/midge-bench}

all_scenarios="qos1-pair qos2-pair qos1-fanout qos0-pair qos0-fanin stalled-qos0 stalled-qos1 lat-4k lat-100k storm idle"
runs=3
duration=10
warmup=2
threads=1
conns=10000
hold=5
subset=""
out=""
brokers="midge mosquitto"

usage() {
    cat <<EOF
usage: bench/run.sh [options]
Runs each scenario against midge and mosquitto (fresh broker per run, alternating)
and writes the medians to docs/benchmarks.md.

  -n N        runs per scenario and broker; the table shows medians (3)
  -s LIST     comma-separated subset of scenarios (all):
              ${all_scenarios// /,}
  -d S        measured seconds per load run (10)
  -w S        warm-up seconds per load run (2)
  -t N        midge-bench threads (1: on 2 cores, leaves the broker the most CPU)
  -c N        connections for storm and idle (10000)
  -H S        seconds to hold the idle connections (5)
  -b LIST     brokers to run: midge,mosquitto (both)
  -q          quick check: -n 1 -d 3 -w 1 -H 2, output to /tmp/midge-benchmarks-quick.md
  -o FILE     output file (docs/benchmarks.md in the repo)
  -h          this help

Environment: MIDGE (build/server/midge), MOSQUITTO (/usr/sbin/mosquitto),
BENCH (build/bench/midge-bench); the defaults are inside the repo, values given
in the environment are used as they are (relative to the current directory).
EOF
}

while getopts "n:s:d:w:t:c:H:b:qo:h" o; do
    case $o in
    n) runs=$OPTARG ;;
    s) subset=${OPTARG//,/ } ;;
    d) duration=$OPTARG ;;
    w) warmup=$OPTARG ;;
    t) threads=$OPTARG ;;
    c) conns=$OPTARG ;;
    H) hold=$OPTARG ;;
    b) brokers=${OPTARG//,/ } ;;
    q) runs=1; duration=3; warmup=1; hold=2; out=${out:-/tmp/midge-benchmarks-quick.md} ;;
    o) out=$OPTARG ;;
    h) usage; exit 0 ;;
    *) usage >&2; exit 2 ;;
    esac
done
out=${out:-$repo/docs/benchmarks.md}
scenarios=${subset:-$all_scenarios}
for s in $scenarios; do
    case " $all_scenarios " in *" $s "*) ;; *) echo "run.sh: unknown scenario '$s'" >&2; exit 2 ;; esac
done
if [ ! -x "$BENCH" ]; then
    echo "run.sh: no benchmark binary at $BENCH (build it: make bench/midge-bench)" >&2
    exit 2
fi

# Idle and storm need many descriptors, in the bench and in the brokers.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt $((conns + 100)) ]; then
    echo "run.sh: warning: ulimit -n is $(ulimit -n), below $conns connections" >&2
fi

work=$(mktemp -d /tmp/midge-bench.XXXXXX)
broker_pid=""
port=""

cleanup() {
    stop_broker
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() {
    echo "[$(date +%T)] $*" >&2
}

free_port() {
    local p
    while :; do
        p=$((20000 + RANDOM % 20000))
        if ! ss -Htan "( sport = :$p or dport = :$p )" | grep -q .; then
            echo "$p"
            return
        fi
    done
}

# start_broker NAME: fresh broker on a free loopback port; sets broker_pid, port.
start_broker() {
    local name=$1 conf bin i
    port=$(free_port)
    conf=$work/$name.conf
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_inflight_messages 0"
        echo "max_queued_messages 100000"
        echo "set_tcp_nodelay true"
        if [ "$name" = mosquitto ]; then
            echo "persistence false"
        else
            echo "worker_threads 2"
            # Extra midge lines, e.g. a plugin for the plugin-overhead runs.
            if [ -n "${MIDGE_EXTRA_CONF:-}" ]; then
                printf '%s\n' "$MIDGE_EXTRA_CONF"
            fi
        fi
    } >"$conf"
    if [ "$name" = mosquitto ]; then bin=$MOSQUITTO; else bin=$MIDGE; fi
    broker_pid=""
    [ -x "$bin" ] || return 1
    "$bin" -c "$conf" >>"$work/$name.log" 2>&1 &
    broker_pid=$!
    for i in $(seq 1 100); do
        if ! kill -0 "$broker_pid" 2>/dev/null; then
            broker_pid=""
            return 1
        fi
        if ss -Htln "( sport = :$port )" | grep -q LISTEN; then
            return 0
        fi
        sleep 0.05
    done
    stop_broker
    return 1
}

stop_broker() {
    local i
    [ -n "$broker_pid" ] || return 0
    kill -TERM "$broker_pid" 2>/dev/null
    for i in $(seq 1 100); do
        kill -0 "$broker_pid" 2>/dev/null || break
        sleep 0.05
    done
    kill -KILL "$broker_pid" 2>/dev/null
    wait "$broker_pid" 2>/dev/null
    broker_pid=""
}

status_kib() { # status_kib PID FIELD
    awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status" 2>/dev/null
}

get() { # get KEY RESULT-LINE
    sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"
}

declare -A vals   # "scenario|metric|broker" -> space-separated values, one per run
declare -A cmds   # scenario -> bench command lines used

add() { # add SCENARIO METRIC BROKER VALUE
    vals["$1|$2|$3"]="${vals["$1|$2|$3"]:-} $4"
}

# bench SCENARIO ARGS...: run midge-bench on the current port; its RESULT line goes
# to R (not printed: a command substitution would lose the cmds bookkeeping).
bench() {
    local sc=$1
    shift
    local cmd="midge-bench -p PORT $*"
    case "${cmds[$sc]:-}" in *"$cmd"*) ;; *) cmds[$sc]="${cmds[$sc]:-}$cmd"$'\n' ;; esac
    "$BENCH" -p "$port" "$@" >"$work/last.out" 2>&1
    R=$(grep '^RESULT' "$work/last.out" | tail -1)
    cat "$work/last.out" >>"$work/all.out"
}

load_args() { # common options of load runs
    echo "-t $threads -d $duration -w $warmup"
}

# one_run SCENARIO BROKER: one fresh broker, one measurement, values appended.
one_run() {
    local sc=$1 br=$2 r r2 hwm before after idle_out i
    if ! start_broker "$br"; then
        log "$br failed to start; recording n/a"
        add "$sc" na "$br" 1
        return
    fi
    local L
    L=$(load_args)
    case $sc in
    qos1-pair) bench "$sc" $L -L "$sc" -T pair -P 4 -S 4 -q 1; r=$R ;;
    qos2-pair) bench "$sc" $L -L "$sc" -T pair -P 4 -S 4 -q 2; r=$R ;;
    qos1-fanout) bench "$sc" $L -L "$sc" -T fanout -P 1 -S 10 -q 1; r=$R ;;
    qos0-pair) bench "$sc" $L -L "$sc" -T pair -P 4 -S 4 -q 0; r=$R ;;
    qos0-fanin) bench "$sc" $L -L "$sc" -T fanin -P 10 -S 1 -q 0; r=$R ;;
    stalled-qos0 | stalled-qos1)
        local q=${sc#stalled-qos}
        bench "$sc" $L -L "$sc-without" -T pair -P 4 -S 4 -q "$q"; r2=$R
        add "$sc" healthy_without "$br" "$(get recv_rate "$r2")"
        # the stalled run needs a fresh broker so VmHWM is its own
        stop_broker
        if ! start_broker "$br"; then
            add "$sc" na "$br" 1
            return
        fi
        bench "$sc" $L -L "$sc" -T pair -P 4 -S 4 -q "$q" -X 1; r=$R
        ;;
    lat-4k) bench "$sc" $L -L "$sc" -T pair -P 4 -S 4 -q 1 -r 4000; r=$R ;;
    lat-100k) bench "$sc" $L -L "$sc" -T pair -P 4 -S 4 -q 1 -r 100000; r=$R ;;
    storm) bench "$sc" -t "$threads" -L "$sc" -m storm -c "$conns"; r=$R ;;
    idle)
        sleep 0.5
        before=$(status_kib "$broker_pid" VmRSS)
        local cmd="midge-bench -p PORT -t $threads -L idle -m idle -c $conns -H $hold"
        case "${cmds[$sc]:-}" in *"$cmd"*) ;; *) cmds[$sc]="${cmds[$sc]:-}$cmd"$'\n' ;; esac
        idle_out=$work/idle.out
        "$BENCH" -p "$port" -t "$threads" -L idle -m idle -c "$conns" -H "$hold" >"$idle_out" 2>&1 &
        local bpid=$!
        for i in $(seq 1 1200); do
            grep -q IDLE_READY "$idle_out" && break
            kill -0 "$bpid" 2>/dev/null || break
            sleep 0.1
        done
        sleep 1
        after=$(status_kib "$broker_pid" VmRSS)
        wait "$bpid"
        cat "$idle_out" >>"$work/all.out"
        r=$(grep '^RESULT' "$idle_out" | tail -1)
        if [ -n "$before" ] && [ -n "$after" ] && [ "$(get connected "$r")" = "$conns" ]; then
            add "$sc" rss_before "$br" "$before"
            add "$sc" rss_after "$br" "$after"
            add "$sc" kib_per_conn "$br" "$(awk -v a="$after" -v b="$before" -v n="$conns" \
                'BEGIN { printf "%.3f", (a - b) / n }')"
        fi
        ;;
    esac
    hwm=$(status_kib "$broker_pid" VmHWM)
    if ! kill -0 "$broker_pid" 2>/dev/null; then
        log "$br died during $sc"
        add "$sc" crashed "$br" 1
    fi
    stop_broker
    echo "$br $sc ${r:-no RESULT}" >>"$work/results.txt"
    if [ -z "$r" ] || [ "$(get ok "$r")" != 1 ]; then
        log "$br $sc: run failed: ${r:-no RESULT line} (see $work/all.out)"
        add "$sc" failed "$br" 1
        return
    fi
    [ -n "$hwm" ] && add "$sc" peak_rss_mib "$br" "$(awk -v k="$hwm" 'BEGIN { printf "%.1f", k / 1024 }')"
    local k
    for k in sent_rate recv_rate loss_pct p50_us p99_us p999_us max_us connect_rate; do
        local v
        v=$(get "$k" "$r")
        [ -n "$v" ] && [ "$v" != "-1.0" ] && add "$sc" "$k" "$br" "$v"
    done
    # messages skipped inside a publisher's sequence: dropped, not merely late
    add "$sc" dropped_pct "$br" "$(awk -v g="$(get gaps "$r")" -v e="$(get expected "$r")" \
        'BEGIN { if (e + 0 > 0) printf "%.3f", 100 * g / e }')"
    if [ "${sc#stalled}" != "$sc" ]; then
        add "$sc" healthy_with "$br" "$(get recv_rate "$r")"
    fi
    log "$br $sc: $(sed 's/^RESULT //' <<<"$r" | tr ' ' '\n' |
        grep -E '^(sent_rate|recv_rate|loss_pct|gaps|p99_us|connect_rate|connected)=' | tr '\n' ' ')"
}

median() { # median VALUES...
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print ""; exit }
        if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# cell SCENARIO METRIC BROKER: median, or n/a / fail
cell() {
    local v=${vals["$1|$2|$3"]:-}
    if [ -n "${vals["$1|na|$3"]:-}" ] && [ -z "$v" ]; then echo "n/a"; return; fi
    if [ -z "$v" ]; then
        if [ -n "${vals["$1|failed|$3"]:-}${vals["$1|crashed|$3"]:-}" ]; then echo "fail"; else echo "-"; fi
        return
    fi
    # shellcheck disable=SC2086
    median $v
}

fmt() { # fmt KIND VALUE
    case $2 in n/a | fail | -) echo "$2"; return ;; esac
    case $1 in
    rate) awk -v v="$2" 'BEGIN { printf "%\047d", v + 0.5 }' ;;
    ms) awk -v v="$2" 'BEGIN { v /= 1000; if (v < 10) printf "%.3f", v; else printf "%.0f", v }' ;;
    pct) awk -v v="$2" 'BEGIN { printf "%.2f %%", v }' ;;
    *) echo "$2" ;;
    esac
}

ratio() { # ratio MIDGE MOSQUITTO
    case "$1" in n/a | fail | -) echo "-"; return ;; esac
    case "$2" in n/a | fail | -) echo "-"; return ;; esac
    awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0) print "-"; else if (a / b < 0.01) print "<0.01x";
        else printf "%.2fx", a / b }'
}

# Table rows: scenario|metric|kind|label|target from issue 3
rows="qos1-pair|recv_rate|rate|QoS 1 pair 4->4, delivered msg/s|>= 20x mosquitto
qos1-pair|loss_pct|pct|QoS 1 pair 4->4, not delivered by the end|0
qos2-pair|recv_rate|rate|QoS 2 pair 4->4, delivered msg/s|>= 20x mosquitto
qos2-pair|loss_pct|pct|QoS 2 pair 4->4, not delivered by the end|0
qos2-pair|dropped_pct|pct|QoS 2 pair 4->4, skipped in sequence (lost)|0
qos1-fanout|recv_rate|rate|QoS 1 fan-out 1->10, deliveries/s|>= 3.5x mosquitto
qos1-fanout|loss_pct|pct|QoS 1 fan-out 1->10, not delivered by the end|0
qos0-pair|recv_rate|rate|QoS 0 pair 4->4 max rate, delivered msg/s|
qos0-pair|loss_pct|pct|QoS 0 pair 4->4 max rate, loss (dropped + still queued at the end)|
qos0-pair|dropped_pct|pct|QoS 0 pair 4->4 max rate, dropped (skipped in sequence)|nothing dropped at ingest
qos0-pair|peak_rss_mib|raw|QoS 0 pair 4->4 max rate, peak RSS MiB (lower is better)|bounded
qos0-fanin|recv_rate|rate|QoS 0 fan-in 10->1 max rate, delivered msg/s|
qos0-fanin|loss_pct|pct|QoS 0 fan-in 10->1 max rate, loss (dropped + still queued at the end)|
qos0-fanin|dropped_pct|pct|QoS 0 fan-in 10->1 max rate, dropped (skipped in sequence)|nothing dropped at ingest
qos0-fanin|peak_rss_mib|raw|QoS 0 fan-in 10->1 max rate, peak RSS MiB (lower is better)|bounded
stalled-qos0|healthy_without|rate|QoS 0 pair 4->4, healthy delivered msg/s, no stalled sub|
stalled-qos0|healthy_with|rate|QoS 0 pair 4->4, healthy delivered msg/s, 1 stalled sub on bench/#|only the stalled sub pays
stalled-qos0|peak_rss_mib|raw|QoS 0 with stalled sub, peak RSS MiB (lower is better)|bounded
stalled-qos1|healthy_without|rate|QoS 1 pair 4->4, healthy delivered msg/s, no stalled sub|
stalled-qos1|healthy_with|rate|QoS 1 pair 4->4, healthy delivered msg/s, 1 stalled sub on bench/#|only the stalled sub pays
stalled-qos1|peak_rss_mib|raw|QoS 1 with stalled sub, peak RSS MiB (lower is better)|bounded
lat-4k|p50_us|ms|QoS 1 pair at 4,000 msg/s, p50 ms|
lat-4k|p99_us|ms|QoS 1 pair at 4,000 msg/s, p99 ms|<= mosquitto
lat-4k|p999_us|ms|QoS 1 pair at 4,000 msg/s, p99.9 ms|
lat-100k|recv_rate|rate|QoS 1 pair at 100,000 msg/s, delivered msg/s|
lat-100k|p50_us|ms|QoS 1 pair at 100,000 msg/s, p50 ms|
lat-100k|p99_us|ms|QoS 1 pair at 100,000 msg/s, p99 ms|< 1 ms
lat-100k|p999_us|ms|QoS 1 pair at 100,000 msg/s, p99.9 ms|
storm|connect_rate|rate|connection storm ($conns, CONNECT/CONNACK/DISCONNECT), connects/s|>= mosquitto
idle|kib_per_conn|raw|$conns idle connections, broker RSS KiB per connection (lower is better)|<= mosquitto
idle|rss_after|raw|$conns idle connections, broker RSS KiB total|"

# ---- run ----
log "brokers: midge=$MIDGE mosquitto=$MOSQUITTO bench=$BENCH; work dir $work"
[ -x "$MIDGE" ] || log "no midge binary at $MIDGE: midge columns will read n/a"
started=$(date -u '+%Y-%m-%d %H:%M UTC')
for sc in $scenarios; do
    for i in $(seq 1 "$runs"); do
        for br in $brokers; do
            log "$sc run $i/$runs on $br"
            one_run "$sc" "$br"
        done
    done
done

# ---- report ----
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
ncpu=$(nproc)
kernel=$(uname -r)
mosq_version=$("$MOSQUITTO" -h 2>/dev/null | sed -n 's/^mosquitto version /mosquitto /p' | head -1)
midge_version=n/a
[ -x "$MIDGE" ] && midge_version=$("$MIDGE" --version 2>/dev/null | head -1)
bench_args="$0${*:+ $*}"

{
    cat <<'EOF'
# Benchmarks

How these numbers are made (this header is written by hand in bench/run.sh;
the rest of the file is generated by it):

- Both brokers run on this machine, one after the other, each started fresh
  for every run on a free loopback port with the same settings
  (`max_inflight_messages 0`, `max_queued_messages 100000`,
  `set_tcp_nodelay true`, no persistence; midge also `worker_threads 2`).
  Runs alternate midge, mosquitto, midge, ...; each figure is the median of
  the runs.
- The load comes from bench/midge-bench on the same machine: epoll, many
  connections per thread, PUBLISH packets pipelined (32 per write, at most
  1000 unacknowledged QoS 1/2 messages per publisher), acks batched per read,
  64-byte payloads, MQTT 3.1.1. Rates count only the measured window after
  the warm-up. "Not delivered by the end" / loss is what had not arrived when
  the subscribers had been quiet for 1 s (or 5 s after publishing stopped):
  dropped or still queued. "Dropped" counts only messages skipped inside a
  publisher's sequence (a later message from the same publisher arrived).
- Latency runs pace publishers evenly and measure from the *scheduled* send
  time to arrival, so a saturated broker shows its queueing.
- Peak RSS is the broker's VmHWM after the run. Idle RSS per connection is
  (VmRSS with the connections open - VmRSS before) / connections.
- The generator shares the 2 cores with the broker. With one generator
  thread it uses 0.5-0.7 of a core in the max-rate runs, mostly kernel time
  in send/recv; two generator threads gave mosquitto the same numbers and
  midge lower ones, so one thread is used. The connection storm keeps the
  generator's thread nearly busy in the kernel (connect/close): it compares
  the brokers under the same handicap rather than finding a ceiling.

EOF
    echo "## Machine and software"
    echo
    echo "- CPU: $cpu, $ncpu cores; kernel $kernel; $(. /etc/os-release && echo "$PRETTY_NAME")"
    echo "- midge: $midge_version (\`$MIDGE\`)"
    echo "- mosquitto: ${mosq_version:-unknown} (\`$MOSQUITTO\`)"
    echo "- started $started; $runs run(s) per scenario and broker; load runs: ${warmup} s warm-up + ${duration} s measured, generator threads: $threads"
    echo "- command: \`$bench_args\`"
    echo
    echo "## Results (medians)"
    echo
    echo "| Scenario | midge | mosquitto | midge / mosquitto | Target (issue 3) |"
    echo "|---|---:|---:|---:|---|"
    while IFS='|' read -r sc metric kind label target; do
        case " $scenarios " in *" $sc "*) ;; *) continue ;; esac
        label=${label//\$conns/$conns}
        a=$(cell "$sc" "$metric" midge)
        b=$(cell "$sc" "$metric" mosquitto)
        echo "| $label | $(fmt "$kind" "$a") | $(fmt "$kind" "$b") | $(ratio "$a" "$b") | $target |"
    done <<<"$rows"
    echo
    echo "\"n/a\": the broker binary was missing or did not start; \"fail\": the run did not"
    echo "complete (broker closed connections, crashed, or set-up timed out)."
    echo
    echo "## Commands"
    echo
    echo "Broker configurations (PORT is a free loopback port chosen per run):"
    echo
    echo '```'
    echo "# mosquitto -c mosquitto.conf"
    echo "listener PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "max_inflight_messages 0"
    echo "max_queued_messages 100000"
    echo "set_tcp_nodelay true"
    echo "persistence false"
    echo
    echo "# midge -c midge.conf"
    echo "listener PORT 127.0.0.1"
    echo "allow_anonymous true"
    echo "max_inflight_messages 0"
    echo "max_queued_messages 100000"
    echo "set_tcp_nodelay true"
    echo "worker_threads 2"
    echo '```'
    echo
    echo "Load generator per scenario:"
    echo
    echo '```'
    for sc in $scenarios; do
        printf '# %s\n%s' "$sc" "${cmds[$sc]:-}"
    done
    echo '```'
    echo
    echo "<details><summary>Raw RESULT lines of every run</summary>"
    echo
    echo '```'
    cat "$work/results.txt" 2>/dev/null
    echo '```'
    echo
    echo "</details>"
} >"$out"
log "wrote $out"
