#!/bin/sh
# Restore time of persist-sqlite for N queued messages (issue 7: 1,000,000, target < 20 s).
#
#   bench/persist-restore.sh [-n RUNS] [-s SESSIONS] [-p PER_SESSION] [-b BYTES] [-k fanout|distinct]
#
# Builds the database once through the plugin's own persist hook and writer
# (bench/persist-restore generate), then RUNS times each:
#   plugin   the restore hook against bench/persist-restore's broker stand-in
#   broker   server/midge starting on a copy of the file: the plugin's restore plus the
#            broker applying every item on its workers, until the listener opens
# and prints wall and CPU seconds per run and the medians.
# Binaries from BUILD (default build/). Stops what it starts, by PID.
set -eu
top=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD:-$top/build}
runs=3 sessions=1000 per=1000 bytes=64 kind=distinct
while getopts n:s:p:b:k: o; do
    case $o in
    n) runs=$OPTARG ;; s) sessions=$OPTARG ;; p) per=$OPTARG ;; b) bytes=$OPTARG ;;
    k) kind=$OPTARG ;; *) exit 2 ;;
    esac
done
work=${WORK:-/tmp/midge-persist-restore}
mkdir -p "$work"
db="$work/$kind-$sessions-$per-$bytes.db"
if [ ! -f "$db" ]; then
    "$build/bench/persist-restore" generate "$db" "$sessions" "$per" "$bytes" "$kind" 2>/dev/null
fi
echo "# $(nproc) cores, $(uname -r); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# db: $db ($(du -m "$db" | cut -f1) MiB): $sessions sessions x $per messages, $bytes-byte payloads, $kind"
median() { sort -n | awk '{v[NR]=$1} END {print (NR % 2) ? v[(NR+1)/2] : (v[NR/2]+v[NR/2+1])/2}'; }
: > "$work/plugin.wall"; : > "$work/plugin.cpu"; : > "$work/broker.wall"; : > "$work/broker.cpu"
i=0
while [ $i -lt "$runs" ]; do
    i=$((i + 1))
    # the plugin alone
    out=$( { /usr/bin/time -f "cpu %U %S" "$build/bench/persist-restore" restore "$db" 2>&1 1>&3 | grep '^cpu' ; } 3>&1 )
    wall=$(echo "$out" | sed -n 's/.*restored db=.* seconds=\([0-9.]*\).*/\1/p; s/^restore rc=0 .* seconds=\([0-9.]*\) .*/\1/p' | tail -1)
    cpu=$(echo "$out" | awk '/^cpu/ {print $2 + $3}')
    echo "$wall" >> "$work/plugin.wall"; echo "$cpu" >> "$work/plugin.cpu"
    echo "run $i plugin: wall ${wall}s (whole program cpu ${cpu}s)"
    # the broker on a copy (the restore deletes nothing here, but keep the source pristine)
    cp "$db" "$work/broker.db"
    rm -f "$work/broker.db-wal" "$work/broker.db-shm"
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    cat > "$work/broker.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
max_queued_messages 0
plugin $build/plugins/persist-sqlite/.libs/persist-sqlite.so
plugin_opt_db $work/broker.db
CONF
    "$build/server/midge" -c "$work/broker.conf" > "$work/broker.log" 2>&1 &
    pid=$!
    t=0
    until grep -q "persistence: .*restored" "$work/broker.log" || [ $t -gt 1200 ]; do
        sleep 0.1; t=$((t + 1))
    done
    bwall=$(sed -n 's/.*persistence: .*restored .* in \([0-9.]*\) s.*/\1/p' "$work/broker.log" | tail -1)
    bcpu=$(awk '{print ($14 + $15) / 100}' /proc/$pid/stat)
    kill "$pid"; wait "$pid" || true
    echo "$bwall" >> "$work/broker.wall"; echo "$bcpu" >> "$work/broker.cpu"
    echo "run $i broker: restore ${bwall}s (broker cpu at that point ${bcpu}s)"
    grep "restored" "$work/broker.log" | sed 's/^/    /'
done
echo "median plugin restore: $(median < "$work/plugin.wall") s wall, $(median < "$work/plugin.cpu") s cpu (whole program)"
echo "median broker restore: $(median < "$work/broker.wall") s wall, $(median < "$work/broker.cpu") s cpu"
