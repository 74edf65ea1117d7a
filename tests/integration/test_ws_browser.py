"""MQTT over WebSockets from a real browser (issue 9): headless Chromium.

The page is docs/websocket-example.html with MQTT.js (mqtt.min.js from the
npm package scripts/setup.sh installs) next to it, opened from a file:// URL
with ?url=ws://...&connect=1&send=TEXT. tests/integration/browser_cdp.js
starts Chromium and reports the lines of the page's log element through the
DevTools protocol. A paho client on the plain listener checks both ways: it
receives what the page published, and what it publishes shows up in the
page's DOM. Skipped (visibly) without chromium, node or MQTT.js.
"""

import os
import queue
import shutil
import subprocess
import threading
import time

from midgetest import Broker, BrokerTest, free_port, only_midge, tmp_root, HOST, TIMEOUT
from test_ws import _mqttjs_dir

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MIDGE_SRCDIR") or os.path.join(HERE, "..", "..")
# A browser start on a loaded machine takes seconds; this is an upper bound, not a wait.
BROWSER_TIMEOUT = max(TIMEOUT, 30.0)


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


@only_midge("websockets_path and the connect log line")
class TestBrowser(BrokerTest):
    """MQTT.js in headless Chromium over ws://, against a paho client over TCP."""

    def setUp(self):
        self.chromium = _chromium()
        if self.chromium is None:
            self.skipTest("chromium not found: apt-get install chromium (scripts/setup.sh)")
        if shutil.which("node") is None:
            self.skipTest("node not found: install nodejs to drive the browser")
        self.modules = _mqttjs_dir()
        if self.modules is None:
            self.skipTest("MQTT.js not installed: run scripts/setup.sh (npm install into build/node)")
        self._clients = []
        self.ws_port = free_port()
        self.broker = Broker(["listener %d %s" % (self.ws_port, HOST), "protocol websockets",
                              "websockets_path /mqtt"]).start()
        self.port = self.broker.port
        self.dir = os.path.join(tmp_root(), "browser-%d-%d" % (os.getpid(), time.monotonic_ns()))
        os.makedirs(os.path.join(self.dir, "profile"))
        shutil.copy(os.path.join(SRC, "docs", "websocket-example.html"), self.dir)
        shutil.copy(os.path.join(self.modules, "mqtt", "dist", "mqtt.min.js"), self.dir)
        self.lines = queue.Queue()
        self.proc = None
        self.browser_pid = None

    def tearDown(self):
        if self.proc is not None:
            self.proc.stdin.close()  # browser_cdp.js stops Chromium and exits
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            if self.browser_pid is not None:
                try:
                    os.kill(self.browser_pid, 9)  # only if it outlived its driver
                except OSError:
                    pass
        super().tearDown()

    def open_page(self, query):
        url = "file://%s/websocket-example.html?%s" % (self.dir, query)
        env = dict(os.environ, NODE_PATH=self.modules)
        self.proc = subprocess.Popen(
            ["node", os.path.join(HERE, "browser_cdp.js"), self.chromium,
             os.path.join(self.dir, "profile"), url],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)

        def reader():
            for raw in self.proc.stdout:
                self.lines.put(raw.decode(errors="replace").rstrip("\n"))
            self.lines.put(None)
        threading.Thread(target=reader, daemon=True).start()

    def expect_line(self, want, timeout=BROWSER_TIMEOUT):
        """Waits for a driver line equal to want; returns the lines seen before it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self.lines.get(timeout=max(left, 0.01))
            except queue.Empty:
                self.fail("no %r from the browser within %.0fs; saw %r" % (want, timeout, seen))
            if line is None:
                self.fail("browser driver ended before %r; saw %r" % (want, seen))
            if line.startswith("chromium ") and line[9:].isdigit():
                self.browser_pid = int(line[9:])
            if line == want:
                return seen
            seen.append(line)

    def test_page_publishes_and_receives(self):
        sub = self.paho("paho-watcher")
        sub.subscribe("demo/#", 1)
        self.open_page("url=ws://%s:%d/mqtt&connect=1&send=hello-from-browser"
                       % (HOST, self.ws_port))
        self.expect_line("log connected")
        self.expect_line("log subscribed")
        # The page published once subscribed: paho receives it.
        m = sub.get(timeout=BROWSER_TIMEOUT)
        self.assertEqual((m.topic, m.payload), ("demo/chat", b"hello-from-browser"))
        # The page's own subscription (demo/#) echoes it into the DOM too.
        self.expect_line("log demo/chat: hello-from-browser")
        # What paho publishes appears in the page's DOM.
        sub.publish("demo/news", b"hello-from-paho", qos=1)
        self.expect_line("log demo/news: hello-from-paho")
        self.broker.wait_log(lambda l: "client connected" in l and "version=5" in l,
                             what="the browser's MQTT 5 connect line")
