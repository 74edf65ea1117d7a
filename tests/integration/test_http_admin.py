"""http-admin (issue 12): Prometheus /metrics, the JSON admin API and the
dashboard page, served by libmicrohttpd on the plugin's own thread.

A real midge loads build/plugins/http-admin/.libs/http-admin.so; every HTTP
request goes through curl (the client admins use), MQTT traffic through
the raw client. The page test drives Debian's chromium headless with
playwright-core (scripts/setup.sh installs both) and saves a screenshot as
build/http-admin-dashboard.png.
"""

import json
import math
import os
import re
import shutil
import signal
import subprocess
import threading
import time
import unittest

from midgetest import (Broker, RawClient, broker_bin, free_port, only_midge, tmp_root, wait_until, HOST,
                       TIMEOUT)
from test_plugins import PluginTest
from test_bridge import MOSQUITTO_BIN, Mosquitto

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("MIDGE_SRCDIR", os.path.join(HERE, "..", ".."))
PASSWD = os.path.join(HERE, "..", "fixtures", "passwd", "mosquitto-2.0.11-sha512-pbkdf2.passwd")
USER, PASSWORD = "alice", "correct horse"


def _build():
    for base in (os.environ.get("MIDGE_BUILDDIR"), os.path.join(SRC, "build")):
        if base and os.path.exists(os.path.join(base, "plugins", "http-admin", ".libs",
                                                "http-admin.so")):
            return os.path.abspath(base)
    return None


BUILD = _build()
PLUGIN = os.path.join(BUILD or "/nonexistent", "plugins", "http-admin", ".libs", "http-admin.so")
BRIDGE = os.path.join(BUILD or "/nonexistent", "plugins", "bridge", ".libs", "bridge.so")
PERSIST = os.path.join(BUILD or "/nonexistent", "plugins", "persist-sqlite", ".libs",
                       "persist-sqlite.so")
AUTH_PASSWD = os.path.join(BUILD or "/nonexistent", "plugins", "auth-passwd", ".libs",
                           "auth-passwd.so")
need_build = unittest.skipUnless(
    BUILD, "http-admin not built: run through `make check` or set MIDGE_BUILDDIR")
need_curl = unittest.skipUnless(shutil.which("curl"), "curl is not installed")


def curl(url, *args, user=None, method=None, data=None, headers=(), insecure=False,
         timeout=10):
    """Runs curl; returns (status, headers dict (lower-case), body bytes)."""
    argv = ["curl", "-sS", "-D", "-", "--max-time", str(timeout), "-o", "-"]
    if user is not None:
        argv += ["-u", "%s:%s" % user]
    if method:
        argv += ["-X", method]
    if data is not None:
        argv += ["--data-binary", "@-"]
    if insecure:
        argv += ["-k"]
    for h in headers:
        argv += ["-H", h]
    argv += list(args) + [url]
    p = subprocess.run(argv, input=data, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout + 5)
    if p.returncode != 0:
        raise AssertionError("curl %s failed (%d): %s" % (url, p.returncode, p.stderr.decode()))
    out = p.stdout
    # Skip "HTTP/1.1 100 Continue" blocks: the last header block is the answer.
    while True:
        head, _, body = out.partition(b"\r\n\r\n")
        if head.startswith(b"HTTP/1.1 100"):
            out = body
            continue
        break
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    hdrs = {}
    for l in lines[1:]:
        k, _, v = l.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    return status, hdrs, body


# ---------------------------------------------------------------------------
# A strict parser of the Prometheus text format (0.0.4), so the test needs no
# promtool; promtool checks the same text too when Debian's prometheus is there.
# ---------------------------------------------------------------------------

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(r"^(%s)(\{(?:%s)(?:,%s)*\})? (\S+)$" % (NAME, LABEL, LABEL))
LABEL_RE = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"')


def parse_prometheus(text):
    """Returns {family: {"type", "help", "samples": [(name, labels, value)]}}; raises on errors."""
    fams = {}
    current = None
    closed = set()
    assert text.endswith("\n"), "exposition must end with a newline"
    for n, line in enumerate(text.split("\n")[:-1], 1):
        where = "line %d: %r" % (n, line)
        assert line != "", "empty line " + where
        if line.startswith("# HELP ") or line.startswith("# TYPE "):
            parts = line.split(" ", 3)
            assert len(parts) >= 3 and re.fullmatch(NAME, parts[2]), where
            fam = parts[2]
            if fam != current:
                assert fam not in closed, "family %s split in two places (%s)" % (fam, where)
                if current is not None:
                    closed.add(current)
                current = fam
            f = fams.setdefault(fam, {"type": None, "help": None, "samples": []})
            if parts[1] == "TYPE":
                assert f["type"] is None and not f["samples"], "TYPE late or twice " + where
                assert parts[3] in ("counter", "gauge", "histogram", "summary", "untyped"), where
                f["type"] = parts[3]
            else:
                assert f["help"] is None, "HELP twice " + where
                f["help"] = parts[3] if len(parts) > 3 else ""
            continue
        assert not line.startswith("#"), "unknown comment " + where
        m = SAMPLE.match(line)
        assert m, "not a sample " + where
        name, labels_text, value = m.group(1), m.group(2) or "", m.group(3)
        fam = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[:-len(suffix)] in fams and \
                    fams[name[:-len(suffix)]]["type"] == "histogram":
                fam = name[:-len(suffix)]
        assert fam == current, "sample outside its family block " + where
        labels = dict(LABEL_RE.findall(labels_text))
        assert len(labels) == labels_text.count('="'), "duplicate label " + where
        v = float(value.replace("+Inf", "inf").replace("-Inf", "-inf"))
        if fams[fam]["type"] == "counter":
            assert name.endswith("_total") and v >= 0, "counter " + where
        fams[fam]["samples"].append((name, labels, v))
    for fam, f in fams.items():
        if f["type"] == "histogram":
            check_histograms(fam, f["samples"])
    return fams


def check_histograms(fam, samples):
    series = {}
    for name, labels, v in samples:
        key = tuple(sorted((k, x) for k, x in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "count": None})
        if name == fam + "_bucket":
            s["buckets"].append((float(labels["le"].replace("+Inf", "inf")), v))
        elif name == fam + "_count":
            s["count"] = v
    for key, s in series.items():
        b = s["buckets"]
        assert b and math.isinf(b[-1][0]), "%s%s: no +Inf bucket" % (fam, key)
        for (le1, c1), (le2, c2) in zip(b, b[1:]):
            assert le2 > le1 and c2 >= c1, "%s%s: buckets not cumulative" % (fam, key)
        assert s["count"] == b[-1][1], "%s%s: _count != +Inf bucket" % (fam, key)


def value(fams, name, **labels):
    """The value of sample `name` (a family, or a histogram's NAME_count) with these labels."""
    fam = name
    if name.endswith("_count") and name[:-6] in fams:
        fam = name[:-6]
    for n, l, v in fams[fam]["samples"]:
        if n == name and all(l.get(k) == x for k, x in labels.items()):
            return v
    raise AssertionError("%s%r not in /metrics" % (name, labels))


class ParserSelfTest(unittest.TestCase):
    """The parser above must be able to fail, or its passes prove nothing."""

    def test_parser_rejects_bad_text(self):
        good = "# HELP a_total x\n# TYPE a_total counter\na_total 1\n"
        parse_prometheus(good)
        for bad in (good[:-1],                                  # no final newline
                    good + "a_total{x=\"1\" 2\n",               # broken labels
                    good + "# TYPE b gauge\nb 1\na_total 2\n",  # family split
                    "# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                    "h_count 1\n",                              # not cumulative
                    "# TYPE c counter\nc 1\n"):                 # counter without _total
            with self.assertRaises(AssertionError, msg=bad):
                parse_prometheus(bad)


# ---------------------------------------------------------------------------


@only_midge("http-admin is a midge plugin")
@need_build
@need_curl
class HttpAdminBase(PluginTest):
    AUTH = True   # HTTP Basic with the password file (on loopback, no TLS)
    EXTRA = ()

    def setUp(self):
        super().setUp()
        self.http_port = free_port()
        lines = ["plugin " + PLUGIN, "plugin_opt_listen %s:%d" % (HOST, self.http_port)]
        if self.AUTH:
            lines.append("plugin_opt_password_file " + PASSWD)
        else:
            lines.append("plugin_opt_allow_anonymous true")
        self.start_broker(lines + list(self.EXTRA))
        self.base = "http://%s:%d" % (HOST, self.http_port)
        self.broker.wait_log(lambda l: "http-admin listening" in l, what="http-admin start")

    def get(self, path, **kw):
        if self.AUTH and "user" not in kw:
            kw["user"] = (USER, PASSWORD)
        return curl(self.base + path, **kw)

    def get_json(self, path, status=200, **kw):
        st, hdrs, body = self.get(path, **kw)
        self.assertEqual(st, status, body)
        self.assertTrue(hdrs["content-type"].startswith("application/json"), hdrs)
        return json.loads(body)

    def metrics(self):
        st, hdrs, body = self.get("/metrics")
        self.assertEqual(st, 200, body)
        self.assertTrue(hdrs["content-type"].startswith("text/plain; version=0.0.4"), hdrs)
        return body.decode()

    def client(self, cid, **kw):
        c = RawClient(self.port, 5)
        self._clients.append(c)
        c.connect(cid, **kw)
        return c


class Endpoints(HttpAdminBase):
    """Every endpoint, with authentication on (alice from the password file)."""

    def test_metrics_counters_rise_by_n(self):
        """Publish N messages: publish_received_total rises by exactly N."""
        before = parse_prometheus(self.metrics())
        pub = self.client("m-pub")
        n = 25
        for i in range(n):
            pub.publish("m/t", b"xyz", qos=1)  # acknowledged: counted before the scrape
        self.assertGreaterEqual(pub.publish("$SYS/no", b"x", qos=1).rc, 0x80)  # refused
        after = parse_prometheus(self.metrics())
        self.assertEqual(value(after, "midge_publish_received_total"),
                         value(before, "midge_publish_received_total") + n + 1)
        # By QoS, with payload bytes; drops by reason.
        self.assertEqual(value(after, "midge_messages_received_total", qos="1"),
                         value(before, "midge_messages_received_total", qos="1") + n + 1)
        self.assertEqual(value(after, "midge_messages_received_total", qos="0"),
                         value(before, "midge_messages_received_total", qos="0"))
        self.assertEqual(value(after, "midge_payload_bytes_received_total", qos="1"),
                         value(before, "midge_payload_bytes_received_total", qos="1") + 3 * n + 1)
        self.assertEqual(value(after, "midge_messages_dropped_total", reason="refused"),
                         value(before, "midge_messages_dropped_total", reason="refused") + 1)
        self.assertEqual(value(after, "midge_clients_connected"),
                         value(before, "midge_clients_connected") + 1)
        self.assertEqual(value(after, "midge_connects_total"),
                         value(before, "midge_connects_total") + 1)
        self.assertGreater(value(after, "midge_bytes_received_total"),
                           value(before, "midge_bytes_received_total"))
        self.assertEqual(value(after, "midge_plugin_info", instance="http-admin",
                               plugin="http-admin"), 1)

    def test_metrics_pass_promtool(self):
        promtool = shutil.which("promtool")
        if promtool is None:
            self.skipTest("promtool not installed (apt-get install prometheus); the parser "
                          "test still checks the format")
        self.client("p-1").publish("p/t", b"x", qos=1)
        p = subprocess.run([promtool, "check", "metrics"], input=self.metrics().encode(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
        self.assertEqual(p.returncode, 0, p.stdout.decode())

    def test_stats_json(self):
        st = self.get_json("/api/v1/stats")
        for k in ("uptime", "clients_connected", "sessions", "subscriptions", "retained",
                  "publish_received", "publish_sent", "publish_dropped", "bytes_received",
                  "bytes_sent", "connects"):
            self.assertIn(k, st)
        c = self.client("s-1")
        c.subscribe("s/#", 1)
        st2 = self.get_json("/api/v1/stats")
        self.assertEqual(st2["clients_connected"], st["clients_connected"] + 1)
        self.assertEqual(st2["subscriptions"], st["subscriptions"] + 1)

    def test_clients_list_and_inspect(self):
        c = self.client("inspect/me", clean=False, props=[("session_expiry", 60)])
        c.subscribe("i/a", 1)
        c.subscribe("i/b", 0)
        lst = self.get_json("/api/v1/clients")
        ids = {x["client_id"]: x for x in lst["clients"]}
        self.assertIn("inspect/me", ids)
        self.assertFalse(lst["truncated"])
        one = self.get_json("/api/v1/clients/inspect%2Fme")
        self.assertEqual(one["client_id"], "inspect/me")
        self.assertTrue(one["connected"])
        self.assertEqual(one["protocol"], 5)
        self.assertEqual(one["subscriptions"], 2)
        self.assertEqual(one["session_expiry"], 60)
        self.assertTrue(one["address"].startswith("127.0.0.1:"))
        for k in ("username", "queued", "inflight", "keepalive", "listener_port"):
            self.assertIn(k, one)
        self.client("other-1")
        lim = self.get_json("/api/v1/clients?limit=1")
        self.assertEqual(len(lim["clients"]), 1)
        self.assertTrue(lim["truncated"])
        err = self.get_json("/api/v1/clients?limit=zero", status=400)
        self.assertIn("limit", err["error"])
        err = self.get_json("/api/v1/clients/nobody-here", status=404)
        self.assertIn("not found", err["error"])

    def test_kick_client(self):
        """POST .../disconnect: an MQTT 5 client gets DISCONNECT 0x98 (administrative action)."""
        c = self.client("kick-me")
        res = self.get_json("/api/v1/clients/kick-me/disconnect", status=202, method="POST")
        self.assertEqual(res["client_id"], "kick-me")
        c.expect_disconnect(rc=0x98)
        wait_until(lambda: self.get("/api/v1/clients/kick-me")[0] == 404,
                   what="the kicked client's session gone")
        self.get_json("/api/v1/clients/nobody/disconnect", status=404, method="POST")

    def test_retained_by_prefix(self):
        p = self.client("ret-pub")
        for t in ("r/a/1", "r/a/2", "r/b/1", "rx"):
            p.publish(t, b"v-" + t.encode(), qos=1, retain=True)
        got = self.get_json("/api/v1/retained?prefix=r/a/")
        self.assertEqual(sorted(x["topic"] for x in got["retained"]), ["r/a/1", "r/a/2"])
        self.assertEqual(got["retained"][0]["bytes"], 7)
        got = self.get_json("/api/v1/retained?prefix=r")
        self.assertEqual(sorted(x["topic"] for x in got["retained"]),
                         ["r/a/1", "r/a/2", "r/b/1", "rx"])
        got = self.get_json("/api/v1/retained?filter=r/%2B/1")
        self.assertEqual(sorted(x["topic"] for x in got["retained"]), ["r/a/1", "r/b/1"])
        got = self.get_json("/api/v1/retained?prefix=r&limit=2")
        self.assertEqual(len(got["retained"]), 2)
        self.assertTrue(got["truncated"])
        self.get_json("/api/v1/retained?filter=a/%23/b", status=400)

    def test_plugins_and_bridges(self):
        got = self.get_json("/api/v1/plugins")
        names = {p["instance"]: p for p in got["plugins"]}
        self.assertEqual(names["http-admin"]["plugin"], "http-admin")
        self.assertEqual(names["http-admin"]["version"], "1.0")
        self.assertIn("hooks", names["http-admin"])
        self.assertEqual(self.get_json("/api/v1/bridges"), {"bridges": []})

    def test_reload(self):
        res = self.get_json("/api/v1/reload", status=202, method="POST")
        self.assertIn("reload", res["status"])
        self.broker.wait_log(lambda l: "reload" in l and "plugin=http-admin" in l,
                             what="reload logged for the plugin")

    def test_page(self):
        st, hdrs, body = self.get("/")
        self.assertEqual(st, 200)
        self.assertTrue(hdrs["content-type"].startswith("text/html"))
        self.assertIn(b"<canvas", body)
        self.assertIn(b"/api/v1/stats", body)
        self.assertNotIn(b"http://", body.replace(b"http://www.w3.org", b""))  # self-contained

    def test_auth_required_and_refused(self):
        for path in ("/", "/metrics", "/api/v1/stats", "/api/v1/clients"):
            st, hdrs, body = curl(self.base + path)
            self.assertEqual(st, 401, path)
            self.assertIn("basic", hdrs.get("www-authenticate", "").lower())
            self.assertIn(b"authentication required", body)
        for user in ((USER, "wrong"), ("nobody", PASSWORD), (USER, "")):
            st, _, _ = curl(self.base + "/metrics", user=user)
            self.assertEqual(st, 401, user)
        st, _, _ = self.get("/metrics")
        self.assertEqual(st, 200)
        # The password file is auth-passwd's format: bob's password holds colons.
        st, _, _ = curl(self.base + "/metrics", user=("bob", "b0b:with:colons"))
        self.assertEqual(st, 200)
        self.broker.wait_log(lambda l: "http login failed user=nobody" in l)
        self.assertNotIn("wrong", self.broker.log_text())

    def test_bad_methods_and_paths(self):
        for method, path, allow in (("DELETE", "/metrics", "GET"), ("POST", "/", "GET"),
                                    ("PUT", "/api/v1/clients", "GET"),
                                    ("GET", "/api/v1/reload", "POST"),
                                    ("DELETE", "/api/v1/clients/x", "GET")):
            st, hdrs, body = self.get(path, method=method)
            self.assertEqual(st, 405, (method, path))
            self.assertIn(allow, hdrs.get("allow", ""))
            self.assertIn("not allowed", json.loads(body)["error"])
        for path in ("/nope", "/api/v1", "/api/v1/stats/x", "/metrics/", "/api/v2/stats"):
            err = self.get_json(path, status=404)
            self.assertIn("no such path", err["error"])
        st, hdrs, _ = curl(self.base + "/metrics", "-I", user=(USER, PASSWORD))  # HEAD
        self.assertEqual(st, 200)
        self.assertTrue(hdrs["content-type"].startswith("text/plain"))

    def test_oversized_requests(self):
        """Bodies over 4 KiB: 413; headers and URLs over the connection memory: 431/414."""
        st, _, body = self.get("/api/v1/reload", method="POST", data=b"x" * 100000)
        self.assertEqual(st, 413)
        self.assertIn("too large", json.loads(body)["error"])
        st, _, _ = self.get("/api/v1/reload", method="POST", data=b"x" * 100000,
                            headers=["Transfer-Encoding: chunked"])
        self.assertEqual(st, 413)
        st, _, _ = self.get("/metrics", headers=["X-Big: " + "a" * 40000])
        self.assertIn(st, (413, 431))
        st, _, _ = self.get("/" + "a" * 40000)
        self.assertIn(st, (413, 414))
        # Still serving afterwards.
        self.assertEqual(self.get("/api/v1/stats")[0], 200)


    def test_cross_site_post_refused(self):
        """A page on another site cannot make the admin's browser kick or reload (CSRF)."""
        st, _, body = self.get("/api/v1/reload", method="POST",
                               headers=["Origin: http://evil.example"])
        self.assertEqual(st, 403)
        self.assertIn("cross-site", json.loads(body)["error"])
        st, _, _ = self.get("/api/v1/reload", method="POST",
                            headers=["Origin: http://%s:%d" % (HOST, self.http_port)])
        self.assertEqual(st, 202)


class HookMetrics(HttpAdminBase):
    """Per-plugin hook calls and latency histograms, and plugin-defined metrics."""
    EXTRA = ("plugin " + AUTH_PASSWD, "plugin_opt_password_file " + PASSWD)

    def test_hook_metrics_and_plugin_metrics(self):
        for i in range(3):
            c = RawClient(self.port, 5)
            self._clients.append(c)
            c.connect("hm-%d" % i, username=USER, password=PASSWORD.encode())
        fams = parse_prometheus(self.metrics())
        self.assertEqual(value(fams, "midge_plugin_hook_calls_total", instance="auth-passwd",
                               hook="auth"), 3)
        self.assertEqual(value(fams, "midge_plugin_hook_verdicts_total", instance="auth-passwd",
                               hook="auth", verdict="allow")
                         + value(fams, "midge_plugin_hook_verdicts_total", instance="auth-passwd",
                                 hook="auth", verdict="pending"), 3)
        self.assertEqual(value(fams, "midge_plugin_hook_latency_seconds_count",
                               instance="auth-passwd", hook="auth"), 3)
        self.assertEqual(fams["midge_plugin_hook_latency_seconds"]["type"], "histogram")
        # auth-passwd's own metrics arrive generically (api->metric_list).
        self.assertEqual(value(fams, "midge_plugin_auth_passwd_logins_ok_total",
                               instance="auth-passwd"), 3)
        self.assertEqual(fams["midge_plugin_auth_passwd_verify_seconds"]["type"], "histogram")
        got = self.get_json("/api/v1/plugins")
        ap = [p for p in got["plugins"] if p["instance"] == "auth-passwd"][0]
        self.assertEqual(ap["metrics"]["logins_ok"], 3)
        self.assertEqual([h["hook"] for h in ap["hooks"]], ["auth"])
        self.assertEqual(ap["hooks"][0]["calls"], 3)
        self.assertGreater(ap["hooks"][0]["latency_p99_seconds"], 0)


class Persistence(HttpAdminBase):
    """persist-sqlite's commit latency and batch size arrive as histograms in /metrics."""

    def setUp(self):
        self.db = os.path.join(tmp_root(), "http-admin-%d.db" % free_port())
        self.EXTRA = ("plugin " + PERSIST, "plugin_opt_db " + self.db)
        super().setUp()

    def test_commit_latency_and_batch_size(self):
        c = self.client("persisted", clean=False, props=[("session_expiry", 300)])
        c.subscribe("p/#", 1)
        for i in range(5):
            c.publish("p/x", b"m", qos=1)  # acknowledged once durable: committed by now

        def committed():
            fams = parse_prometheus(self.metrics())
            n = value(fams, "midge_plugin_persist_sqlite_commit_seconds_count",
                      instance="persist-sqlite")
            return fams if n > 0 else None
        fams = wait_until(committed, what="a commit counted")
        for fam in ("midge_plugin_persist_sqlite_commit_seconds",
                    "midge_plugin_persist_sqlite_batch_events"):
            self.assertEqual(fams[fam]["type"], "histogram")
        self.assertGreaterEqual(value(fams, "midge_plugin_persist_sqlite_batch_events_count",
                                      instance="persist-sqlite"), 1)


class Bridges(HttpAdminBase):
    """A bridge instance appears in /api/v1/bridges with its metrics and state."""

    def setUp(self):
        self.remote = Broker([]).start()
        conf = os.path.join(self.remote.dir, "bridges.conf")
        with open(conf, "w") as f:
            f.write("connection remote\naddress %s:%d\ntopic b/# out 1\nrestart_timeout 1\n"
                    % (HOST, self.remote.port))
        self.EXTRA = ("plugin " + BRIDGE, "plugin_instance to-remote",
                      "plugin_opt_bridges " + conf)
        super().setUp()

    def tearDown(self):
        super().tearDown()
        self.remote.stop()

    def test_bridge_listed(self):
        def listed():
            got = self.get_json("/api/v1/bridges")["bridges"]
            return got if got and got[0]["state"] == "connected" else None
        got = wait_until(listed, what="bridge connected")
        self.assertEqual(got[0]["instance"], "to-remote")
        self.assertIn("messages_sent", got[0]["metrics"])
        fams = parse_prometheus(self.metrics())
        self.assertEqual(value(fams, "midge_plugin_bridge_connected", instance="to-remote"), 1)
        self.remote.stop()
        wait_until(lambda: self.get_json("/api/v1/bridges")["bridges"][0]["state"] ==
                   "disconnected", what="bridge disconnected")


@unittest.skipUnless(os.path.exists(MOSQUITTO_BIN), MOSQUITTO_BIN + " missing")
class BridgeLinks(HttpAdminBase):
    """Per-link bridge metrics (label `link`, plugin ABI 1.2 labeled metrics): two links, one
    to a real mosquitto, one to a port where nothing listens."""

    K = 7  # messages published towards the unreachable link

    def setUp(self):
        self.mosq = Mosquitto().start()
        self.dead_port = free_port()  # nothing listens there
        self.conf = os.path.join(self.mosq.dir, "bridges.conf")
        self.write_bridges(("cloud", self.mosq.port, "c/#"), ("dead", self.dead_port, "d/#"))
        self.EXTRA = ("plugin " + BRIDGE, "plugin_instance bridge", "plugin_opt_bridges " + self.conf)
        super().setUp()

    def tearDown(self):
        super().tearDown()
        self.mosq.kill(signal.SIGTERM)

    def write_bridges(self, *links):
        with open(self.conf, "w") as f:
            for name, port, topic in links:
                f.write("connection %s\naddress %s:%d\ntopic %s out 1\nrestart_timeout 1\n\n"
                        % (name, HOST, port, topic))

    def link_value(self, fams, metric, link, kind="gauge"):
        fam = "midge_plugin_bridge_" + metric + ("_total" if kind == "counter" else "")
        return value(fams, fam, instance="bridge", link=link)

    def wait_metric(self, metric, link, want, kind="gauge"):
        def ok():
            try:
                return self.link_value(parse_prometheus(self.metrics()), metric, link, kind) == want
            except AssertionError:
                return False
        wait_until(ok, what="%s{link=%s} == %s" % (metric, link, want))

    def link_names(self, text):
        return set(re.findall(r'link="([^"]*)"', text))

    def test_links_in_metrics_and_json(self):
        """/metrics: link_connected 1 for the reachable link, 0 for the other, as one family
        with both labels; K QoS 1 messages for the unreachable link show as its queue; the
        JSON lists both links with state, address and queue; promtool accepts the text; the
        reachable link goes to 0 when mosquitto dies."""
        self.wait_metric("link_connected", "cloud", 1)
        self.wait_metric("link_connected", "dead", 0)
        pub = self.client("lk-pub")
        for i in range(self.K):
            pub.publish("d/x", b"m%d" % i, qos=1)
        self.wait_metric("link_queue_messages", "dead", self.K)
        fams = parse_prometheus(self.metrics())
        # topic + payload bytes of each: "d/x" + "mN"
        self.assertEqual(self.link_value(fams, "link_queue_bytes", "dead"), self.K * 5)
        self.assertEqual(self.link_value(fams, "link_inflight", "dead"), 0)
        self.assertEqual(self.link_value(fams, "link_queue_messages", "cloud"), 0)
        self.assertGreaterEqual(self.link_value(fams, "link_reconnects", "dead", "counter"), 0)
        fam = fams["midge_plugin_bridge_link_connected"]
        self.assertEqual(fam["type"], "gauge")
        self.assertEqual({tuple(sorted(l.items())) for _, l, _ in fam["samples"]},
                         {(("instance", "bridge"), ("link", "cloud")),
                          (("instance", "bridge"), ("link", "dead"))})
        # Messages through the reachable link are counted on it.
        pub.publish("c/x", b"up", qos=1)
        self.wait_metric("link_messages_sent", "cloud", 1, kind="counter")

        def links():
            got = self.get_json("/api/v1/bridges")["bridges"]
            by = {l["name"]: l for l in got[0]["links"]} if got else {}
            ok = (by.get("cloud", {}).get("address") is not None and
                  by.get("dead", {}).get("address") is not None)
            return by if ok else None
        by = wait_until(links, what="both links with an address in /api/v1/bridges")
        self.assertEqual(by["cloud"]["state"], "connected")
        self.assertEqual(by["cloud"]["address"], "%s:%d" % (HOST, self.mosq.port))
        self.assertIn(by["dead"]["state"], ("disconnected", "connecting"))
        self.assertEqual(by["dead"]["address"], "%s:%d" % (HOST, self.dead_port))
        self.assertEqual(by["dead"]["queue_messages"], self.K)
        self.assertEqual(by["dead"]["queue_bytes"], self.K * 5)
        self.assertEqual(by["dead"]["inflight"], 0)
        self.assertEqual(by["cloud"]["messages_sent"], 1)
        promtool = shutil.which("promtool")
        if promtool is not None:
            p = subprocess.run([promtool, "check", "metrics"], input=self.metrics().encode(),
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout.decode())
        self.mosq.kill()
        self.wait_metric("link_connected", "cloud", 0)
        wait_until(lambda: {l["name"]: l["state"] for l in
                            self.get_json("/api/v1/bridges")["bridges"][0]["links"]}["cloud"]
                   != "connected" or None, what="cloud not connected in the JSON")

    def test_sighup_removes_and_adds_series(self):
        """SIGHUP removing a bridge removes its series (and its address); an added bridge gets
        its own."""
        self.wait_metric("link_connected", "cloud", 1)
        self.assertEqual(self.link_names(self.metrics()), {"cloud", "dead"})
        self.write_bridges(("cloud", self.mosq.port, "c/#"), ("later", self.mosq.port, "l/#"))
        self.broker.proc.send_signal(signal.SIGHUP)
        wait_until(lambda: self.link_names(self.metrics()) == {"cloud", "later"},
                   what="series of link dead gone, of link later there")
        self.wait_metric("link_connected", "later", 1)
        self.wait_metric("link_connected", "cloud", 1)  # kept across the reload
        names = wait_until(lambda: (lambda n: n if n == ["cloud", "later"] else None)(
            sorted(l["name"] for l in self.get_json("/api/v1/bridges")["bridges"][0]["links"])),
            what="links cloud and later in the JSON")
        self.assertEqual(names, ["cloud", "later"])


class Anonymous(HttpAdminBase):
    """allow_anonymous on loopback: no credentials asked."""
    AUTH = False

    def test_no_auth_on_loopback_when_allowed(self):
        st, _, _ = curl(self.base + "/metrics")
        self.assertEqual(st, 200)
        st, _, _ = curl(self.base + "/metrics", headers=["Host: localhost:%d" % self.http_port])
        self.assertEqual(st, 200)

    def test_foreign_host_refused(self):
        """DNS rebinding: a page under another name resolving to 127.0.0.1 gets nothing."""
        st, _, body = curl(self.base + "/api/v1/clients", headers=["Host: evil.example:80"])
        self.assertEqual(st, 403)
        self.assertIn("loopback", json.loads(body)["error"])


@only_midge("http-admin is a midge plugin")
@need_build
@need_curl
class StartupRules(PluginTest):
    """Refuses to start, with a FILE:LINE message, when it would be open or leak passwords."""

    def refused(self, opts, why):
        port = free_port()
        b = Broker(["plugin " + PLUGIN] + [o.replace("PORT", str(port)) for o in opts])
        b.port = free_port()
        b.write_config()
        p = subprocess.run([broker_bin(), "-c", b.conf], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode()
        self.assertNotEqual(p.returncode, 0, out)
        self.assertRegex(out, r"broker\.conf:\d+: plugin 'http-admin': init failed: .*" + why)

    def test_no_password_file_and_not_allowed(self):
        self.refused(["plugin_opt_listen 127.0.0.1:PORT"], "no password_file")

    def test_anonymous_only_on_loopback(self):
        self.refused(["plugin_opt_listen 0.0.0.0:PORT", "plugin_opt_allow_anonymous true"],
                     "only allowed on a loopback address")

    def test_password_needs_tls_off_loopback(self):
        self.refused(["plugin_opt_listen 0.0.0.0:PORT", "plugin_opt_password_file " + PASSWD],
                     "clear text")

    def test_bad_options(self):
        self.refused(["plugin_opt_listen nowhere", "plugin_opt_allow_anonymous true"],
                     "ADDRESS:PORT")
        self.refused(["plugin_opt_listen 127.0.0.1:PORT", "plugin_opt_allow_anonymous yes"],
                     "neither true nor false")
        self.refused(["plugin_opt_listen 127.0.0.1:PORT", "plugin_opt_password_file /nope"],
                     "/nope")
        self.refused(["plugin_opt_listen 127.0.0.1:PORT", "plugin_opt_allow_anonymous true",
                      "plugin_opt_certfile /x"], "go together")

    def test_basic_auth_over_tls(self):
        d = os.path.join(tmp_root(), "http-admin-tls")
        os.makedirs(d, exist_ok=True)
        crt, key = os.path.join(d, "s.crt"), os.path.join(d, "s.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
                        "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", crt,
                        "-days", "2", "-subj", "/CN=localhost", "-addext",
                        "subjectAltName=IP:127.0.0.1"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        port = free_port()
        self.start_broker(["plugin " + PLUGIN, "plugin_opt_listen 0.0.0.0:%d" % port,
                           "plugin_opt_password_file " + PASSWD, "plugin_opt_certfile " + crt,
                           "plugin_opt_keyfile " + key])
        self.broker.wait_log(lambda l: "http-admin listening" in l and "tls=yes" in l)
        url = "https://127.0.0.1:%d/api/v1/stats" % port
        st, _, _ = curl(url, "--cacert", crt)
        self.assertEqual(st, 401)
        st, _, body = curl(url, "--cacert", crt, user=(USER, PASSWORD))
        self.assertEqual(st, 200)
        self.assertIn("uptime", json.loads(body))
        # Plain HTTP on the TLS port gets no answer.
        p = subprocess.run(["curl", "-sS", "--max-time", "5", "http://127.0.0.1:%d/" % port],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertNotEqual(p.returncode, 0)


# ---------------------------------------------------------------------------
# The page in a real browser
# ---------------------------------------------------------------------------

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _playwright():
    for base in (os.environ.get("MIDGE_BUILDDIR"), os.path.join(SRC, "build")):
        if base:
            d = os.path.join(base, "node", "node_modules")
            if os.path.exists(os.path.join(d, "playwright-core", "package.json")):
                return os.path.abspath(d)
    return None


class Page(HttpAdminBase):
    """GET / in headless Chromium: no console errors, the message-rate chart rises, the bridge
    panel lists the link of a bridge (to a port where nothing listens)."""
    AUTH = False

    def setUp(self):
        self.dead_port = free_port()
        self.conf_dir = tmp_root()
        conf = os.path.join(self.conf_dir, "page-bridges-%d.conf" % self.dead_port)
        with open(conf, "w") as f:
            f.write("connection nowhere\naddress %s:%d\ntopic n/# out 1\nrestart_timeout 1\n"
                    % (HOST, self.dead_port))
        self.EXTRA = ("plugin " + BRIDGE, "plugin_instance bridge", "plugin_opt_bridges " + conf)
        super().setUp()

    def test_dashboard_in_chromium(self):
        modules = _playwright()
        if not os.path.exists(CHROMIUM) or modules is None or not shutil.which("node"):
            msg = ("SKIP dashboard browser test: needs chromium (apt-get install chromium) and "
                   "playwright-core in build/node (scripts/setup.sh installs both)")
            print("\n" + msg)
            self.skipTest(msg)
        shot = os.path.join(BUILD, "http-admin-dashboard.png")
        if os.path.exists(shot):
            os.unlink(shot)
        env = dict(os.environ, NODE_PATH=modules, CHROMIUM=CHROMIUM)
        proc = subprocess.Popen(["node", os.path.join(HERE, "http_admin_page.js"),
                                 self.base + "/", shot, "20000"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.track(proc)
        ready = proc.stdout.readline().decode()
        self.assertEqual(ready.strip(), "READY", ready + proc.stderr.read().decode()
                         if proc.poll() is not None else ready)
        # The page has drawn its first samples without traffic: now publish.
        stop = threading.Event()
        pub = self.client("page-pub")

        def publish():
            while not stop.is_set():
                for _ in range(20):
                    pub.publish("page/t", b"x", qos=0)
                time.sleep(0.02)
        t = threading.Thread(target=publish, daemon=True)
        t.start()
        try:
            out, err = proc.communicate(timeout=40)
        finally:
            stop.set()
            t.join(5)
        self.assertEqual(proc.returncode, 0, out.decode() + err.decode())
        res = json.loads(out.decode().strip().splitlines()[-1])
        self.assertEqual(res["errors"], [])
        rates = [s["rin"] for s in res["samples"]]
        self.assertLess(rates[0], 1, rates)          # before the publisher started
        self.assertGreater(max(rates), 100, rates)   # ~1000/s while it runs: the chart rises
        self.assertGreater(res["chartPixels"], 0)
        rows = res["bridgeRows"]
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0][:2], ["bridge", "nowhere"], rows)
        self.assertIn(rows[0][2], ("disconnected", "connecting"), rows)
        self.assertEqual(rows[0][3], "%s:%d" % (HOST, self.dead_port), rows)
        self.assertTrue(os.path.getsize(shot) > 1000, shot)
        print("\nscreenshot: " + shot)


if __name__ == "__main__":
    unittest.main()
