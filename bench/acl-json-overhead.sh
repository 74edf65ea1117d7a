#!/bin/sh
# acl-json overhead (issue 6): the cost of one check with 10 and 10,000 rules
# (bench/acl-check-bench, medians of 7 runs), then QoS 0 pair 4->4 throughput
# on midge without plugins and with acl-json loaded (a 10-rule file and a
# 10,000-rule file; every PUBLISH and every delivery is checked), and on
# mosquitto without and with an acl_file, each the median of N interleaved
# runs (default 5) of bench/run.sh. Prints the results; with
# -o FILE they also replace the "## acl-json overhead" section of FILE
# (docs/benchmarks.md; run it after bench/run.sh, which rewrites the file).
#   bench/acl-json-overhead.sh [-n N] [-o FILE]
set -eu
cd "$(dirname "$0")/.."
n=5
file=""
while [ $# -gt 0 ]; do
    case "$1" in
    -n) n=$2; shift 2 ;;
    -o) file=$2; shift 2 ;;
    *) echo "usage: bench/acl-json-overhead.sh [-n RUNS] [-o FILE]" >&2; exit 2 ;;
    esac
done
plugin=$(pwd)/build/plugins/acl-json/.libs/acl-json.so
tmpdir=$(mktemp -d)
trap 'rm -rf "$tmpdir"' EXIT
chmod 755 "$tmpdir" # mosquitto started as root reads its acl_file as user mosquitto
results=$tmpdir/results

# The rule files: the bench clients are anonymous and use bench/N; the other
# rules are there to be searched past (users, groups, %u / %c, deny rules).
small=$tmpdir/acl-10.json
cat >"$small" <<'JSON'
{ "default": { "publish": "deny", "subscribe": "deny", "receive": "allow" },
  "anonymous": { "rules": [
    { "topic": "bench/secret/#", "deny": ["publish", "subscribe", "receive"] },
    { "topic": "public/#", "allow": ["subscribe"] },
    { "topic": "dev/%c/#", "allow": ["publish", "subscribe"] },
    { "topic": "bench/+", "allow": ["publish", "subscribe"] },
    { "topic": "bench/#", "allow": ["subscribe"] } ] },
  "groups": { "sensors": { "rules": [ { "topic": "sensors/%u/#", "allow": ["publish"] } ] } },
  "users": { "alice": { "groups": ["sensors"], "rules": [
    { "topic": "secret/#", "deny": ["subscribe", "receive"] },
    { "topic": "cmd/%c/#", "allow": ["subscribe", "receive"] } ] } },
  "clients": { "gateway-7": { "rules": [ { "topic": "#", "allow": ["publish", "subscribe"] } ] } } }
JSON
big=$tmpdir/acl-10000.json
{
    printf '{ "default": { "publish": "deny", "subscribe": "deny", "receive": "allow" },\n'
    printf '  "anonymous": { "rules": [\n'
    i=0
    while [ $i -lt 9996 ]; do
        printf '    { "topic": "site/%d/+/%%c/#", "%s": ["publish", "subscribe", "receive"] },\n' \
            $i "$([ $((i % 2)) = 0 ] && echo allow || echo deny)"
        i=$((i + 1))
    done
    printf '    { "topic": "bench/secret/#", "deny": ["publish", "subscribe", "receive"] },\n'
    printf '    { "topic": "bench/+/x", "deny": ["receive"] },\n'
    printf '    { "topic": "bench/+", "allow": ["publish", "subscribe"] },\n'
    printf '    { "topic": "bench/#", "allow": ["subscribe"] } ] } }\n'
} >"$big"
build/plugins/acl-json/midge_acl --check "$small" >/dev/null
build/plugins/acl-json/midge_acl --check "$big" >/dev/null

echo "Check cost, ns per check (build/bench/acl-check-bench -r 7):" | tee -a "$results"
echo | tee -a "$results"
build/bench/acl-check-bench -r 7 | tee -a "$results"
echo | tee -a "$results"

# Broker CPU per delivered message at a fixed rate: on a shared machine this
# moves much less with other people's load than the max rate does. Each run
# starts a fresh midge, sends RATE msg/s for 8 s (QoS 0 pair 4->4) and reads
# the broker's utime + stime from /proc before stopping it by PID.
rate=${ACL_BENCH_RATE:-300000}
cpu_run() {
    key=$1
    extra=$2
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    conf=$tmpdir/cpu.conf
    {
        echo "listener $port 127.0.0.1"
        echo "allow_anonymous true"
        echo "max_inflight_messages 0"
        echo "max_queued_messages 100000"
        echo "set_tcp_nodelay true"
        echo "worker_threads 2"
        [ -n "$extra" ] && printf '%s\n' "$extra"
    } >"$conf"
    build/server/midge -c "$conf" >>"$tmpdir/cpu.log" 2>&1 &
    pid=$!
    i=0
    until ss -Htln "( sport = :$port )" | grep -q LISTEN; do
        i=$((i + 1))
        if [ $i -gt 100 ] || ! kill -0 $pid 2>/dev/null; then
            echo "midge did not start" >&2
            kill $pid 2>/dev/null
            return 1
        fi
        sleep 0.05
    done
    line=$(build/bench/midge-bench -p "$port" -T pair -P 4 -S 4 -q 0 -r "$rate" -d 8 -w 1 | grep '^RESULT')
    ticks=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    kill $pid
    wait $pid 2>/dev/null || true
    recv=$(echo "$line" | sed -n 's/.* recv=\([0-9]*\).*/\1/p')
    awk -v t="$ticks" -v hz="$(getconf CLK_TCK)" -v n="$recv" \
        'BEGIN { if (n > 0) printf "%.3f\n", t / hz * 1e6 / n }' >>"$tmpdir/$key.cpu"
}
cmedian() {
    sort -n "$tmpdir/$1.cpu" | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "n/a")}'
}
conf_small=$(printf 'plugin %s\nplugin_opt_acl_file %s' "$plugin" "$small")
conf_big=$(printf 'plugin %s\nplugin_opt_acl_file %s' "$plugin" "$big")
round=1
while [ $round -le "$n" ]; do
    cpu_run none ""
    cpu_run small "$conf_small"
    cpu_run big "$conf_big"
    round=$((round + 1))
done
{
    echo "Broker CPU per delivered message at $rate msg/s (QoS 0 pair 4->4, 8 s), median of $n"
    echo "interleaved runs, in microseconds (user + system, connection set-up included):"
    echo
    echo "- midge, no plugin: $(cmedian none) (runs: $(sort -n "$tmpdir/none.cpu" | tr '\n' ' ' | sed 's/ $//'))"
    echo "- midge, acl-json with 10 rules: $(cmedian small) (runs: $(sort -n "$tmpdir/small.cpu" | tr '\n' ' ' | sed 's/ $//'))"
    echo "- midge, acl-json with 10,000 rules: $(cmedian big) (runs: $(sort -n "$tmpdir/big.cpu" | tr '\n' ' ' | sed 's/ $//'))"
    echo
} | tee -a "$results"

# One run of bench/run.sh (-n 1) for setup LABEL with the environment given;
# appends the delivered rate to $tmpdir/LABEL.rates. Brokers: midge or mosquitto.
one() {
    key=$1
    broker=$2
    shift 2
    out=$tmpdir/run.md
    col=3
    [ "$broker" = mosquitto ] && col=4
    env "$@" bench/run.sh -n 1 -s qos0-pair -b "$broker" -o "$out" >/dev/null 2>&1
    grep '^| QoS 0 pair 4->4 max rate, delivered msg/s' "$out" | cut -d'|' -f$col | tr -d ' ' \
        >>"$tmpdir/$key.rates"
}
median() {
    sort -n "$tmpdir/$1.rates" | awk '{v[NR]=$1} END {print (NR ? v[int((NR+1)/2)] : "n/a")}'
}

# The same run against mosquitto, without and with its own acl_file holding
# the 10-rule file's anonymous rules (bench/run.sh has no extra mosquitto
# lines, so a wrapper appends acl_file to the config it is given).
mosq=${MOSQUITTO:-/usr/sbin/mosquitto}
cat >"$tmpdir/mosq.acl" <<'ACL'
topic deny bench/secret/#
topic read public/#
pattern readwrite dev/%c/#
topic readwrite bench/+
topic read bench/#
ACL
cat >"$tmpdir/mosquitto-acl" <<WRAP
#!/bin/sh
echo "acl_file $tmpdir/mosq.acl" >>"\$2"
exec "$mosq" "\$@"
WRAP
chmod +x "$tmpdir/mosquitto-acl"
chmod 644 "$tmpdir/mosq.acl"

# Max rate. Rounds interleave the setups, so that load from elsewhere on the
# machine falls on all of them alike; each setup's number is the median of its runs.
round=1
while [ $round -le "$n" ]; do
    one none midge MIDGE=build/server/midge
    one small midge MIDGE=build/server/midge MIDGE_EXTRA_CONF="$conf_small"
    one big midge MIDGE=build/server/midge MIDGE_EXTRA_CONF="$conf_big"
    one mnone mosquitto MOSQUITTO="$mosq"
    one macl mosquitto MOSQUITTO="$tmpdir/mosquitto-acl"
    round=$((round + 1))
done
base=$(median none)
mbase=$(median mnone)
pct() {
    awk -v a="$1" -v b="$2" 'BEGIN { if (a + 0 > 0 && b + 0 > 0) printf " (%.0f %% of %s)", 100 * a / b, "without"; }'
}
{
    echo "QoS 0 pair 4->4, delivered msg/s, median of $n interleaved runs:"
    echo
    echo "- midge, no plugin: $base (runs: $(sort -n "$tmpdir/none.rates" | tr '\n' ' '| sed 's/ $//'))"
    echo "- midge, acl-json with 10 rules: $(median small)$(pct "$(median small)" "$base") (runs: $(sort -n "$tmpdir/small.rates" | tr '\n' ' '| sed 's/ $//'))"
    echo "- midge, acl-json with 10,000 rules: $(median big)$(pct "$(median big)" "$base") (runs: $(sort -n "$tmpdir/big.rates" | tr '\n' ' '| sed 's/ $//'))"
    echo "- mosquitto, no acl_file: $mbase (runs: $(sort -n "$tmpdir/mnone.rates" | tr '\n' ' '| sed 's/ $//'))"
    echo "- mosquitto, acl_file with the same 5 anonymous rules: $(median macl)$(pct "$(median macl)" "$mbase") (runs: $(sort -n "$tmpdir/macl.rates" | tr '\n' ' '| sed 's/ $//'))"
} | tee -a "$results"
if [ -n "$file" ]; then
    tmp=$tmpdir/doc
    awk '/^## acl-json overhead/{skip=1; next} /^## /{skip=0} !skip' "$file" >"$tmp"
    {
        echo "## acl-json overhead"
        echo
        echo "Issue 6: \`bench/acl-json-overhead.sh -n $n\`, $(date -u '+%Y-%m-%d %H:%M UTC'), on the"
        echo "machine above. Check cost: one acl_check_client() call in"
        echo "bench/acl-check-bench.c (the plugin's own evaluator, the client resolved once as"
        echo "the plugin does per connection; one user entry of N rules of the shapes"
        echo "site/I/#, site/I/+/secret, site/I/%u/#, site/I/+/+, plus a group; 4096 topics"
        echo "spread over the whole list, 1 in 8 matching nothing; without the plugin's"
        echo "per-connection memo of the last allowed topic), median of 7 runs of 2,000,000"
        echo "checks, in ns. Throughput: QoS 0 pair 4->4 at max rate through bench/run.sh;"
        echo "with acl-json every PUBLISH passes its hook (the bench clients are anonymous"
        echo "and use bench/N, allowed by a rule after the others); deliveries do not: no"
        echo "rule denies a delivery under the subscribers' filters, so acl-json gives them a"
        echo "standing answer for RECEIVE (docs/acl-json.md, Performance)."
        echo
        cat "$results"
    } >>"$tmp"
    mv "$tmp" "$file"
fi
