#!/bin/bash
# Cost of the ACL path per PUBLISH in instructions (valgrind callgrind), which,
# unlike msg/s, does not depend on what else the machine is running. For each
# broker binary given (default build/server/midge): one trivial ACL plugin
# (tests/plugins/acl_deny: defers everything), QoS 1 pair 4->4 paced at
# 2000 msg/s for 5 s, then the instructions the broker executed per message
# delivered and the inclusive instructions of proto_publish per PUBLISH.
# ACL_PLUGIN=none runs the same without the plugin (the baseline of its cost).
#   bench/acl-cost.sh [BROKER_BINARY ...]
set -u
cd "$(dirname "$0")/.."
plugin=${ACL_PLUGIN:-$(pwd)/build/tests/plugins/.libs/acl_deny.so}
bench=build/bench/midge-bench
[ $# -gt 0 ] || set -- build/server/midge
for bin in "$@"; do
    port=$((20000 + RANDOM % 20000))
    dir=$(mktemp -d)
    printf 'listener %d 127.0.0.1\nallow_anonymous true\nworker_threads 2\n' "$port" >"$dir/conf"
    [ "$plugin" = none ] || echo "plugin $plugin" >>"$dir/conf"
    valgrind --tool=callgrind --callgrind-out-file="$dir/cg.out" "$bin" -c "$dir/conf" \
        >"$dir/log" 2>&1 &
    pid=$!
    for _ in $(seq 100); do
        sleep 0.2
        (echo >/dev/tcp/127.0.0.1/$port) 2>/dev/null && break
    done
    recv=$("$bench" -p "$port" -T pair -P 4 -S 4 -q 1 -r 2000 -d 5 -w 1 2>&1 |
        sed -n 's/^RESULT.* recv=\([0-9]*\) .*/\1/p')
    kill "$pid"
    wait "$pid" 2>/dev/null
    total=$(sed -n 's/.*Collected : \([0-9]*\).*/\1/p' "$dir/log")
    pp=$(callgrind_annotate --inclusive=yes "$dir/cg.out" 2>/dev/null |
        sed -n 's/^ *\([0-9,]*\) .*proto_publish\.c:proto_publish \[.*/\1/p' | head -n 1 | tr -d ,)
    if [ -n "$recv" ] && [ "$recv" -gt 0 ] && [ -n "$total" ] && [ -n "$pp" ]; then
        echo "$bin: $((total / recv)) instructions per message, proto_publish $((pp / recv)) per PUBLISH ($recv messages)"
    else
        echo "$bin: run failed (see $dir)"
        continue
    fi
    rm -rf "$dir"
done
