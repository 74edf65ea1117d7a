#!/bin/sh
# Integration tests: a real broker on a free loopback port, real clients.
# Used by `make check` (automake TESTS) with MIDGE_BIN and MIDGE_SRCDIR set.
# Usage: tests/integration/run.sh [test_module ...]
#   MIDGE_TEST_BROKER=mosquitto  run the same tests against /usr/sbin/mosquitto
#   MIDGE_TEST_FILTER=substring  only tests whose id contains it
here=$(cd "$(dirname "$0")" && pwd)
: "${MIDGE_SRCDIR:=$(cd "$here/../.." && pwd)}"
export MIDGE_SRCDIR
if [ -z "$MIDGE_BIN" ]; then
    for c in "$MIDGE_SRCDIR/build/server/midge" ./server/midge; do
        if [ -x "$c" ]; then MIDGE_BIN=$(cd "$(dirname "$c")" && pwd)/$(basename "$c"); break; fi
    done
    : "${MIDGE_BIN:=$MIDGE_SRCDIR/build/server/midge}"
fi
export MIDGE_BIN
PY=/usr/bin/python3
skip() { echo "SKIP: $*"; echo "0 passed, 0 failed, 1 skipped"; exit 77; }
[ -x "$PY" ] || skip "$PY not found"
"$PY" -c 'import paho.mqtt.client' 2>/dev/null || skip "python3-paho-mqtt is not installed (apt-get install python3-paho-mqtt)"
command -v mosquitto_pub >/dev/null 2>&1 && command -v mosquitto_sub >/dev/null 2>&1 \
    || skip "mosquitto clients are not installed (apt-get install mosquitto-clients)"
if [ "${MIDGE_TEST_BROKER:-midge}" = mosquitto ]; then
    [ -x "${MOSQUITTO_BIN:-/usr/sbin/mosquitto}" ] || skip "mosquitto broker not installed"
elif [ ! -x "$MIDGE_BIN" ]; then
    echo "FAIL: broker binary $MIDGE_BIN not found (build it first)"
    echo "0 passed, 1 failed"
    exit 1
fi
exec "$PY" "$here/midgetest.py" "$@"
