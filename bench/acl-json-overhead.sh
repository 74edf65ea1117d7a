#!/bin/sh
# acl-json overhead (issue 6): the cost of one check with 10 and 10,000 rules
# (bench/acl-check-bench, medians of 7 runs), then QoS 0 pair 4->4 throughput
# on midge without plugins and with acl-json loaded (a 10-rule file and a
# 10,000-rule file; every PUBLISH and every delivery is checked), each the
# median of N runs (default 5) of bench/run.sh. Prints the results; with
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

echo "check cost (build/bench/acl-check-bench -r 7):" | tee -a "$results"
build/bench/acl-check-bench -r 7 | tee -a "$results"
echo | tee -a "$results"

run() {
    label=$1
    out=$tmpdir/run.md
    shift
    env "$@" bench/run.sh -n "$n" -s qos0-pair -b midge -o "$out" >/dev/null 2>&1
    rate=$(grep '^| QoS 0 pair 4->4 max rate, delivered msg/s' "$out" | cut -d'|' -f3 | tr -d ' ')
    echo "- $label: $rate msg/s (median of $n)" | tee -a "$results"
}
run "no plugin" MIDGE=build/server/midge
run "acl-json, 10 rules" MIDGE=build/server/midge \
    MIDGE_EXTRA_CONF="$(printf 'plugin %s\nplugin_opt_acl_file %s' "$plugin" "$small")"
run "acl-json, 10,000 rules" MIDGE=build/server/midge \
    MIDGE_EXTRA_CONF="$(printf 'plugin %s\nplugin_opt_acl_file %s' "$plugin" "$big")"

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
runm() {
    label=$1
    out=$tmpdir/run.md
    shift
    env "$@" bench/run.sh -n "$n" -s qos0-pair -b mosquitto -o "$out" >/dev/null 2>&1
    rate=$(grep '^| QoS 0 pair 4->4 max rate, delivered msg/s' "$out" | cut -d'|' -f4 | tr -d ' ')
    echo "- $label: $rate msg/s (median of $n)" | tee -a "$results"
}
runm "mosquitto, no acl_file" MOSQUITTO="$mosq"
runm "mosquitto, acl_file (5 lines)" MOSQUITTO="$tmpdir/mosquitto-acl"
if [ -n "$file" ]; then
    tmp=$tmpdir/doc
    awk '/^## acl-json overhead/{skip=1; next} /^## /{skip=0} !skip' "$file" >"$tmp"
    {
        echo "## acl-json overhead"
        echo
        echo "Issue 6: \`bench/acl-json-overhead.sh -n $n\`, $(date -u '+%Y-%m-%d %H:%M UTC'), same"
        echo "machine as above. The check cost is one acl_check() call in"
        echo "bench/acl-check-bench.c (the plugin's own evaluator; one user entry of N"
        echo "rules of the shapes site/I/#, site/I/+/secret, site/I/%u/#, site/I/+/+ plus a"
        echo "group; 4096 topics spread over the list, 1 in 8 matching nothing), median"
        echo "of 7 runs of 2,000,000 checks. Throughput is QoS 0 pair 4->4 at max rate"
        echo "through bench/run.sh, midge only: every PUBLISH and every delivery passes the"
        echo "acl hook (the bench clients are anonymous and publish on bench/N)."
        echo
        cat "$results"
    } >>"$tmp"
    mv "$tmp" "$file"
fi
