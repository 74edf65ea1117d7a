#!/bin/sh
# Installs midge's build and test dependencies on Debian 12 (when run as root)
# and builds midge in ./build (or $BUILD_DIR with $CONFIGURE_FLAGS).
# Safe to run again: installs only what is missing, reconfigures only when needed.
set -eu
cd "$(dirname "$0")/.."
top=$(pwd)

PACKAGES="build-essential autoconf automake libtool pkg-config clang \
libev-dev libssl-dev libjansson-dev libcmocka-dev libsqlite3-dev libargon2-dev libwslay-dev \
libhiredis-dev redis-server mosquitto mosquitto-clients python3 python3-paho-mqtt \
libmicrohttpd-dev chromium prometheus"
# libmicrohttpd-dev: the http-admin plugin's HTTP server. chromium: its dashboard test
# (headless, driven by playwright-core below) and the MQTT.js example page over
# WebSockets (tests/integration/test_ws_browser.py). prometheus: promtool checks /metrics.
# libhiredis-dev, redis-server: the cluster-redis plugin and its tests.

missing=""
for p in $PACKAGES; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" != 0 ]; then
        echo "setup: missing packages:$missing" >&2
        echo "setup: run as root (or: sudo apt-get install$missing)" >&2
        exit 1
    fi
    echo "setup: installing$missing"
    # mosquitto is only a test peer and benchmark reference: keep its service
    # from starting (it would take port 1883) while it is installed.
    policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        policy=/usr/sbin/policy-rc.d
        printf '#!/bin/sh\nexit 101\n' > "$policy"
        chmod +x "$policy"
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends $missing
    if [ -n "$policy" ]; then
        rm -f "$policy"
    fi
fi

build=${BUILD_DIR:-build}
flags=${CONFIGURE_FLAGS:-}
if [ ! -x configure ] || [ configure.ac -nt configure ] || [ Makefile.am -nt configure ]; then
    ./autogen.sh
fi
mkdir -p "$build"
cd "$build"
if [ ! -f Makefile ] || [ "$(cat .configure-flags 2>/dev/null)" != "$flags" ]; then
    # shellcheck disable=SC2086
    "$top/configure" $flags
    echo "$flags" > .configure-flags
fi
make -j"$(nproc)"
echo "setup: built $top/$build/server/midge"

# MQTT.js for the WebSocket interop test (tests/integration/test_ws.py), in
# $build/node (not tracked). Optional: without node/npm or network the test
# says it skips.
mqttjs_version=5.16.0
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    if [ "$(node -p "try{require('$top/$build/node/node_modules/mqtt/package.json').version}catch(e){''}" 2>/dev/null)" != "$mqttjs_version" ]; then
        mkdir -p "$top/$build/node"
        if npm install --prefix "$top/$build/node" --no-audit --no-fund --silent \
            "mqtt@$mqttjs_version" >/dev/null 2>&1; then
            echo "setup: MQTT.js $mqttjs_version in $top/$build/node"
        else
            echo "setup: could not install MQTT.js (npm); the MQTT.js test will be skipped" >&2
        fi
    fi
else
    echo "setup: node/npm not found; the MQTT.js test will be skipped" >&2
fi

# playwright-core drives Debian's chromium for the http-admin dashboard test
# (tests/integration/test_http_admin.py), also in $build/node. Optional: without
# it the test says it skips.
playwright_version=1.49.1
if command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1; then
    if [ "$(node -p "try{require('$top/$build/node/node_modules/playwright-core/package.json').version}catch(e){''}" 2>/dev/null)" != "$playwright_version" ]; then
        mkdir -p "$top/$build/node"
        if npm install --prefix "$top/$build/node" --no-audit --no-fund --silent \
            "playwright-core@$playwright_version" >/dev/null 2>&1; then
            echo "setup: playwright-core $playwright_version in $top/$build/node"
        else
            echo "setup: could not install playwright-core (npm); the dashboard browser test will be skipped" >&2
        fi
    fi
fi
