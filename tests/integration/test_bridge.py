"""Bridges (issue 8, plugins/bridge, docs/bridge.md): midge connects to a real
mosquitto (/usr/sbin/mosquitto, started here on a free loopback port) or to a
second midge, with mosquitto's bridge lines in plugin_opt_bridges.

Each test starts its own remote and its own midge and stops both by PID.
"""

import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
import unittest

from midgetest import (Broker, RawClient, free_port, midge_bin, only_midge, tmp_root, wait_until, HOST,
                       MOSQUITTO_BIN, QUIET, TIMEOUT)


def _bridge_so():
    for base in (os.environ.get("MIDGE_BUILDDIR"),
                 os.path.join(os.environ.get("MIDGE_SRCDIR",
                                             os.path.join(os.path.dirname(__file__), "..", "..")),
                              "build")):
        if base:
            p = os.path.join(base, "plugins", "bridge", ".libs", "bridge.so")
            if os.path.exists(p):
                return os.path.abspath(p)
    return None


BRIDGE_SO = _bridge_so()


def _test_plugin(name):
    """A test plugin of tests/plugins (built by `make check`), or None."""
    d = os.environ.get("MIDGE_TEST_PLUGINS") or os.path.join(
        os.path.dirname(BRIDGE_SO or "/x/x/x/x"), "..", "..", "..", "tests", "plugins", ".libs")
    p = os.path.join(d, name + ".so")
    return p if os.path.exists(p) else None
need_bridge = unittest.skipUnless(BRIDGE_SO and os.path.exists(MOSQUITTO_BIN),
                                  "bridge plugin not built or %s missing" % MOSQUITTO_BIN)
SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                     "WARNING: ThreadSanitizer", "runtime error:")


class Mosquitto:
    """A real mosquitto on a loopback port that stays the same across restarts."""

    def __init__(self, lines=(), port=None):
        self.dir = tempfile.mkdtemp(prefix="mosq-", dir=tmp_root())
        self.port = port or free_port()
        self.lines = list(lines)
        self.proc = None
        self.logpath = os.path.join(self.dir, "mosquitto.log")

    def start(self):
        conf = os.path.join(self.dir, "mosquitto.conf")
        words = {l.split()[0] for l in self.lines if l.strip()}
        with open(conf, "w") as f:
            lines = ["listener %d %s" % (self.port, HOST)] if "listener" not in words else []
            if "allow_anonymous" not in words:
                lines.append("allow_anonymous true")
            if "persistence" not in words:
                lines.append("persistence false")
            lines += ["log_dest stderr", "log_type all"] + self.lines
            if os.geteuid() == 0:
                lines.append("user root")  # else it drops to `mosquitto` and cannot read our files
            f.write("\n".join(lines) + "\n")
        log = open(self.logpath, "ab")
        self.proc = subprocess.Popen([MOSQUITTO_BIN, "-c", conf], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                     cwd=self.dir)
        log.close()

        def accepting():
            if self.proc.poll() is not None:
                raise AssertionError("mosquitto exited:\n" + self.log_text()[-2000:])
            try:
                import socket
                socket.create_connection((HOST, self.port), timeout=0.5).close()
                return True
            except OSError:
                return False
        wait_until(accepting, 5, what="mosquitto listening on %d" % self.port)
        return self

    def kill(self, sig=signal.SIGKILL):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            self.proc.wait()

    def log_text(self):
        try:
            with open(self.logpath, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class BridgeBase(unittest.TestCase):
    """Helpers: remotes, midges with a bridges file, raw clients; all stopped in tearDown."""

    def setUp(self):
        self._clients = []
        self._remotes = []
        self._brokers = []

    def tearDown(self):
        for c in self._clients:
            try:
                c.close()
            except Exception:
                pass
        for b in self._brokers:
            code = b.stop()
            text = b.log_text()
            for marker in SANITIZER_MARKERS:
                if marker in text:
                    self.fail("sanitizer report in midge log:\n" + text[-6000:])
            if b.stopped_by_sigterm and code not in (0, None):
                self.fail("midge exited with code %s after SIGTERM" % code)
        for r in self._remotes:
            r.kill(signal.SIGTERM)

    # -- helpers
    def remote(self, lines=(), port=None):
        r = Mosquitto(lines, port)
        self._remotes.append(r)
        return r.start()

    def stopped_remote_with_subscriber(self, cid, filt):
        """A mosquitto that is down but keeps persistent subscriber `cid` on `filt` (saved at
        its SIGTERM): once started again it queues for that subscriber whatever arrives,
        so nothing depends on who connects first."""
        pdir = tempfile.mkdtemp(dir=tmp_root())
        r = Mosquitto(["persistence true", "persistence_location %s/" % pdir])
        self._remotes.append(r)
        r.start()
        c = RawClient(r.port, 4)
        c.connect(cid, clean=False)
        c.subscribe(filt, 1)
        c.close()
        r.kill(signal.SIGTERM)   # saves the session and its subscription
        return r

    def write_bridges(self, text, path=None):
        if path is None:
            path = os.path.join(tempfile.mkdtemp(prefix="bridges-", dir=tmp_root()), "bridges.conf")
        with open(path, "w") as f:
            f.write(text)
        return path

    def midge(self, bridges, extra=(), path=None):
        """A midge with the bridge plugin and the bridges file text `bridges`."""
        path = self.write_bridges(bridges, path)
        b = Broker(["plugin " + BRIDGE_SO, "plugin_opt_bridges " + path] + list(extra))
        b.bridges_path = path
        self._brokers.append(b)
        return b.start()

    def client(self, port, cid, version=4, clean=True, **kw):
        c = RawClient(port, version)
        self._clients.append(c)
        c.connect(cid, clean=clean, **kw)
        return c

    def wait_connected(self, broker, name, count=1, timeout=TIMEOUT * 2):
        """Waits until bridge NAME's link came up COUNT times: connected, and its subscription
        changes acknowledged by the remote ("link up"), so messages flow both ways."""
        try:
            wait_until(lambda: broker.log_text().count("bridge=%s link up " % name) >= count,
                       timeout, what="bridge %s link up (x%d)" % (name, count))
        except AssertionError as e:
            lines = [l for l in broker.log_text().splitlines() if "bridge=%s " % name in l]
            raise AssertionError("%s; the bridge's log lines:\n%s" % (e, "\n".join(lines[-20:])))

    def retained_on(self, broker, topic_filter):
        """The first retained message a new subscriber to TOPIC_FILTER on BROKER gets, once
        there is one (asks again with a new client until then)."""
        def retained():
            c = RawClient(broker.port, 4)
            try:
                c.connect("late-%f" % time.monotonic())
                c.subscribe(topic_filter, 1)
                try:
                    p = c.recv_publish(timeout=0.3)
                except AssertionError:
                    return None
                # A subscriber that came while the message was on its way gets it live,
                # without RETAIN [MQTT-3.3.1-9]: ask again.
                return p if p.retain else None
            finally:
                c.close()
        return wait_until(retained, what="a retained message for %s" % topic_filter)

    def bridge_block(self, name, port, topics, more=""):
        return ("connection %s\naddress 127.0.0.1:%d\nremote_clientid %s\n"
                "restart_timeout 1 2\n%s%s\n" % (name, port, name, topics, more))


@only_midge("the bridge plugin")
@need_bridge
class BridgeTest(BridgeBase):

    def test_out_in_both_with_prefixes_and_qos(self):
        """Topic mapping as mosquitto.conf(5) describes it, QoS capped by the topic line."""
        r = self.remote()
        m = self.midge(self.bridge_block("e1", r.port,
                                         "topic a/# out 1 local/ remote/\n"
                                         "topic b/# in 2 here/ there/\n"
                                         "topic c/# both 2\n"))
        self.wait_connected(m, "e1")
        rsub = self.client(r.port, "rsub")
        rsub.subscribe([("remote/#", 2), ("c/#", 2)])
        lsub = self.client(m.port, "lsub")
        lsub.subscribe([("here/#", 2), ("c/#", 2)])
        lpub = self.client(m.port, "lpub")
        rpub = self.client(r.port, "rpub")

        lpub.publish("local/a/x", b"q2", qos=2)   # out rule QoS 1 caps it
        p = rsub.recv_publish()
        self.assertEqual((p.topic, p.payload, p.qos), ("remote/a/x", b"q2", 1))
        lpub.publish("local/a/y", b"q0", qos=0)
        p = rsub.recv_publish()
        self.assertEqual((p.topic, p.qos), ("remote/a/y", 0))

        rpub.publish("there/b/z", b"in2", qos=2)
        p = lsub.recv_publish()
        self.assertEqual((p.topic, p.payload, p.qos), ("here/b/z", b"in2", 2))

        # both: each side's message reaches the other side exactly once, and never comes back.
        lpub.publish("c/from-local", b"L", qos=1)
        rpub.publish("c/from-remote", b"R", qos=1)
        got_r = rsub.recv_publishes(2)
        got_l = lsub.recv_publishes(2)
        self.assertEqual(sorted(p.topic for p in got_r), ["c/from-local", "c/from-remote"])
        self.assertEqual(sorted(p.topic for p in got_l), ["c/from-local", "c/from-remote"])
        rsub.no_publish(QUIET)
        lsub.no_publish()
        # Topics outside the rules stay home.
        lpub.publish("other/x", b"no", qos=1)
        rsub.no_publish()

    def test_both_over_mqtt5_no_local_and_properties(self):
        """MQTT 5 to mosquitto: the remote subscription is No Local [MQTT-3.8.3-3], so what the
        bridge publishes there does not come back; message properties travel out."""
        r = self.remote()
        m = self.midge(self.bridge_block("v5", r.port, "topic v/# both 1\n",
                                         "bridge_protocol_version mqttv50\n"))
        line = m.wait_log(lambda l: "bridge=v5 connected" in l)
        self.assertIn("protocol=5", line)
        rsub = self.client(r.port, "rsub", version=5)
        rsub.subscribe("v/#", 1)
        lsub = self.client(m.port, "lsub", version=5)
        lsub.subscribe("v/#", 1)
        self.client(m.port, "lpub", version=5).publish(
            "v/out", b"o", qos=1, props=[("content_type", "text/plain"),
                                         ("user_property", ("k", "v"))])
        p = rsub.recv_publish()
        self.assertEqual((p.topic, p.payload), ("v/out", b"o"))
        self.assertEqual(p.prop("content_type"), "text/plain")
        ups = p.props_all("user_property")
        self.assertIn(("k", "v"), ups)
        self.assertTrue(any(k == "midge-origin" for k, _ in ups), ups)
        self.assertEqual(lsub.recv_publish().topic, "v/out")
        self.client(r.port, "rpub", version=5).publish("v/in", b"i", qos=1)
        self.assertEqual(lsub.recv_publish().topic, "v/in")
        self.assertEqual(rsub.recv_publish().topic, "v/in")
        rsub.no_publish()   # neither message came back
        lsub.no_publish()

    def test_incoming_keeps_properties_and_passes_acl_and_message_in(self):
        """Remote -> local over MQTT 5: the message keeps its properties (payload format,
        expiry, content type, response topic, correlation data, user properties) and is
        published through the ACL hooks (here answered later, by acl-async: the order of
        what follows is kept) and the message_in hooks (msgedit adds a property). A denied
        one is acknowledged to the remote with 0x87 [MQTT-3.4.2-1] and not delivered."""
        acl, edit = _test_plugin("acl_async"), _test_plugin("msgedit")
        if acl is None or edit is None:
            self.skipTest("tests/plugins acl_async/msgedit not built")
        r = self.remote()
        m = self.midge(self.bridge_block("in5", r.port, "topic in/# in 1 here/ \"\"\n",
                                         "bridge_protocol_version mqttv50\n"),
                       extra=["plugin " + acl, "plugin_opt_deny_prefix here/in/forbidden/",
                              "plugin_opt_delay_ms 100",
                              "plugin " + edit, "plugin_opt_prop_a here/ seen-by"])
        self.wait_connected(m, "in5")
        lsub = self.client(m.port, "lsub", version=5)
        lsub.subscribe("here/#", 1)
        rpub = self.client(r.port, "rpub", version=5)
        props = [("payload_format", 1), ("message_expiry", 300), ("content_type", "text/plain"),
                 ("response_topic", "reply/here"), ("correlation_data", b"\x01\x02"),
                 ("user_property", ("k", "v"))]
        rpub.publish("in/ok/1", b"1", qos=1, props=props)
        rpub.publish("in/forbidden/2", b"2", qos=1)
        rpub.publish("in/ok/3", b"3", qos=1)
        got = lsub.recv_publishes(2)
        self.assertEqual([(p.topic, p.payload) for p in got],
                         [("here/in/ok/1", b"1"), ("here/in/ok/3", b"3")])
        p = got[0]
        self.assertEqual(p.prop("payload_format"), 1)
        self.assertTrue(0 < p.prop("message_expiry") <= 300, p.props)
        self.assertEqual(p.prop("content_type"), "text/plain")
        self.assertEqual(p.prop("response_topic"), "reply/here")
        self.assertEqual(p.prop("correlation_data"), b"\x01\x02")
        ups = dict(p.props_all("user_property"))
        self.assertEqual(ups.get("k"), "v")
        self.assertIn("midge-origin", ups)
        self.assertTrue(ups.get("seen-by", "").startswith("here/in/ok/1"), ups)
        lsub.no_publish()
        # The ACL saw the bridge's session as the publisher, and the remote was told.
        self.assertIn("acl-async: queued", m.log_text())
        wait_until(lambda: "Received PUBACK from in5" in r.log_text() and
                   "RC:135)" in r.log_text(), what="PUBACK 0x87 from the bridge at the remote")

    def test_lazy_start_connects_at_threshold_and_disconnects_when_idle(self):
        """start_type lazy (mosquitto's meaning): no connection until `threshold` messages
        wait for the remote; after idle_timeout seconds without traffic it disconnects, and
        connects again at the next `threshold` messages. Nothing is lost meanwhile."""
        r = self.remote()
        rsub = self.client(r.port, "rsub")
        rsub.subscribe("lz/#", 1)
        m = self.midge(self.bridge_block("lz", r.port, "topic lz/# out 1\n",
                                         "start_type lazy\nthreshold 3\nidle_timeout 1\n"))
        m.wait_log(lambda l: "bridge=lz waiting for 3 messages before connecting" in l)
        pub = self.client(m.port, "pub")
        pub.publish("lz/0", b"0", qos=1)
        pub.publish("lz/1", b"1", qos=1)
        rsub.no_publish()
        self.assertNotIn("bridge=lz connected", m.log_text())
        pub.publish("lz/2", b"2", qos=1)
        self.wait_connected(m, "lz")
        self.assertEqual([p.payload for p in rsub.recv_publishes(3)], [b"0", b"1", b"2"])
        m.wait_log(lambda l: "bridge=lz idle for 1s: disconnected until 3 messages wait" in l,
                   timeout=TIMEOUT * 2)
        for i in range(3, 6):
            pub.publish("lz/%d" % i, b"%d" % i, qos=1)
        self.wait_connected(m, "lz", count=2)
        self.assertEqual([p.payload for p in rsub.recv_publishes(3)], [b"3", b"4", b"5"])
        rsub.no_publish()

    def test_start_type_once_does_not_reconnect(self):
        """start_type once: one connection attempt; after it fails there is no other."""
        m = self.midge(self.bridge_block("o1", free_port(), "topic o/# out 1\n",
                                         "start_type once\n"))
        m.wait_log(lambda l: "bridge=o1 not reconnecting: start_type once" in l)
        time.sleep(QUIET * 3)   # restart_timeout 1 2: another attempt would show by now
        self.assertEqual(m.log_text().count("bridge=o1 connection failed"), 1)

    def test_retained_forwarding(self):
        """A retained message goes out with RETAIN; a later remote subscriber gets it."""
        r = self.remote()
        m = self.midge(self.bridge_block("e2", r.port, "topic status/# out 1\n"))
        self.wait_connected(m, "e2")
        self.client(m.port, "lpub").publish("status/dev1", b"online", qos=1, retain=True)
        p = self.retained_on(r, "status/#")
        self.assertEqual((p.topic, p.payload, p.retain), ("status/dev1", b"online", True))

    def test_notifications_local_and_remote(self):
        """$SYS/broker/connection/<remote_clientid>/state: 1 while up, 0 after, on both sides."""
        r = self.remote()
        m = self.midge(self.bridge_block("n1", r.port, "topic t/# out 0\n"))
        self.wait_connected(m, "n1")
        topic = "$SYS/broker/connection/n1/state"
        lsub = self.client(m.port, "lsub")
        lsub.subscribe(topic, 1)
        p = lsub.recv_publish()
        self.assertEqual((p.payload, p.retain), (b"1", True))
        # The remote's copy goes out on the link after the local one: wait for it there.
        p = self.retained_on(r, topic)
        self.assertEqual((p.payload, p.retain), (b"1", True))
        rsub = self.client(r.port, "rsub")
        rsub.subscribe(topic, 1)
        p = rsub.recv_publish()
        self.assertEqual((p.payload, p.retain), (b"1", True))
        # midge vanishes without DISCONNECT: the remote publishes the bridge's will.
        m.kill()
        p = rsub.recv_publish(timeout=TIMEOUT * 2)
        self.assertEqual((p.topic, p.payload, p.retain), (topic, b"0", False))

    def test_local_notification_when_remote_dies(self):
        r = self.remote()
        m = self.midge(self.bridge_block("n2", r.port, "topic t/# out 0\n"))
        self.wait_connected(m, "n2")
        lsub = self.client(m.port, "lsub")
        lsub.subscribe("$SYS/broker/connection/n2/state", 1)
        self.assertEqual(lsub.recv_publish().payload, b"1")
        r.kill()
        self.assertEqual(lsub.recv_publish().payload, b"0")
        m.wait_log(lambda l: "bridge=n2 disconnected reason=" in l, what="disconnect log line")
        m.wait_log(lambda l: "bridge=n2 reconnecting in" in l, what="backoff log line")

    def test_wrong_credentials_logged_then_backoff(self):
        pwfile = os.path.join(tempfile.mkdtemp(dir=tmp_root()), "pw")
        with open(pwfile, "w") as f:
            f.write("")
        subprocess.run(["mosquitto_passwd", "-b", pwfile, "bridge", "right"], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        r = self.remote(["allow_anonymous false", "password_file " + pwfile])
        m = self.midge(self.bridge_block("bad", r.port, "topic t/# out 1\n",
                                         "remote_username bridge\nremote_password wrong\n") +
                       self.bridge_block("good", r.port, "topic t/# out 1\n",
                                         "remote_username bridge\nremote_password right\n"))
        self.wait_connected(m, "good")
        line = m.wait_log(lambda l: "bridge=bad connection failed" in l, what="refusal")
        self.assertIn("connection refused: not authorized (5)", line)
        # Backoff: it tries again after a delay, and again fails.
        wait_until(lambda: m.log_text().count("bridge=bad connection failed") >= 2,
                   TIMEOUT * 2, what="a second attempt")
        self.assertIn("bridge=bad reconnecting in", m.log_text())
        self.assertNotIn("bridge=bad connected", m.log_text())

    def test_failover_to_second_address(self):
        dead = free_port()
        r = self.remote()
        m = self.midge("connection fo\naddress 127.0.0.1:%d 127.0.0.1:%d\nremote_clientid fo\n"
                       "restart_timeout 1\ntopic t/# out 1\n" % (dead, r.port))
        m.wait_log(lambda l: "bridge=fo connection failed address=127.0.0.1:%d" % dead in l,
                   what="first address refused")
        self.wait_connected(m, "fo")
        self.assertIn("address=127.0.0.1:%d" % r.port,
                      [l for l in m.log_text().splitlines() if "bridge=fo connected" in l][0])

    def test_back_to_main_address_when_it_answers_again(self):
        """round_robin false: connected to the second address, the bridge returns to the
        first one once it accepts connections (mosquitto.conf(5), round_robin)."""
        main_port = free_port()
        second = self.remote()
        m = self.midge("connection rr\naddress 127.0.0.1:%d 127.0.0.1:%d\nremote_clientid rr\n"
                       "restart_timeout 1 2\ntopic t/# out 1\n" % (main_port, second.port))
        self.wait_connected(m, "rr")
        self.assertIn("address=127.0.0.1:%d" % second.port,
                      [l for l in m.log_text().splitlines() if "bridge=rr connected" in l][0])
        main = Mosquitto(port=main_port)
        self._remotes.append(main)
        main.start()
        self.wait_connected(m, "rr", count=2, timeout=10)
        last = [l for l in m.log_text().splitlines() if "bridge=rr connected" in l][-1]
        self.assertIn("address=127.0.0.1:%d" % main_port, last)
        self.assertIn("main address 127.0.0.1:%d answers again" % main_port, m.log_text())

    def test_remote_killed_mid_stream_every_qos1_message_arrives(self):
        """Numbered QoS 1 messages; the remote is killed (SIGKILL) with messages in flight,
        more are published while it is down, then it is restarted: every message arrives.

        The remote is frozen (SIGSTOP) before the kill so that whatever it acknowledged was
        also delivered: a message lost inside mosquitto would not be the bridge's doing."""
        pdir = tempfile.mkdtemp(dir=tmp_root())
        r = self.remote(["persistence true", "autosave_interval 1",
                         "persistence_location %s/" % pdir])
        m = self.midge(self.bridge_block("k1", r.port, "topic num/# out 1\n"))
        self.wait_connected(m, "k1")
        sub = self.client(r.port, "numbered-sub", clean=False)
        sub.subscribe("num/#", 1)
        # mosquitto keeps the subscriber's session across the kill once it autosaved it.
        wait_until(lambda: os.path.exists(os.path.join(pdir, "mosquitto.db")), 5,
                   what="mosquitto autosave")
        pub = self.client(m.port, "numbered-pub")
        n = 300
        for i in range(0, 100):
            pub.publish("num/%d" % i, b"%d" % i, qos=1)
        first = [int(p.payload) for p in sub.recv_publishes(100)]
        self.assertEqual(first, list(range(100)))
        sub.close()
        r.proc.send_signal(signal.SIGSTOP)
        for i in range(100, 200):         # in flight towards a remote that will never ack them
            pub.publish("num/%d" % i, b"%d" % i, qos=1)
        r.kill(signal.SIGKILL)
        m.wait_log(lambda l: "bridge=k1 disconnected" in l, what="bridge noticed")
        for i in range(200, n):           # queued while the remote is down
            pub.publish("num/%d" % i, b"%d" % i, qos=1)
        r.start()                         # same port: the bridge reconnects
        self.wait_connected(m, "k1", count=2)
        sub = self.client(r.port, "numbered-sub", clean=False)
        got = []
        deadline = time.monotonic() + 20
        # mosquitto may also send again some of 0..99 (acknowledged after its last autosave):
        # wait for 100..n-1 themselves, not for a count.
        while set(range(100, n)) - set(got) and time.monotonic() < deadline:
            try:
                got.append(int(sub.recv_publish(timeout=1).payload))
            except AssertionError:
                pass
        self.assertEqual(sorted(set(range(100, n)) - set(got)), [])
        # Order kept: the first copy of each message comes in publish order.
        firsts = []
        for g in got:
            if g not in firsts:
                firsts.append(g)
        self.assertEqual(firsts, list(range(100, n)))

    def test_remote_receive_maximum_never_exceeded(self):
        """A v5 remote (a second midge) with Receive Maximum 2: [MQTT-3.3.4-9] never broken."""
        remote = Broker(["max_inflight_messages 2"])
        self._brokers.append(remote)
        remote.start()
        m = self.midge("connection rm\naddress 127.0.0.1:%d\nremote_clientid rm\n"
                       "bridge_protocol_version mqttv50\nrestart_timeout 1 2\n"
                       "topic q/# out 2\n" % remote.port)
        line = m.wait_log(lambda l: "bridge=rm connected" in l)
        self.assertIn("receive_maximum=2", line)
        rsub = self.client(remote.port, "rsub", version=5)
        rsub.subscribe("q/#", 2)
        pub = self.client(m.port, "pub", version=5)
        n = 200
        for i in range(n):
            pub.publish("q/%d" % i, b"%d" % i, qos=2)
        got = [int(p.payload) for p in rsub.recv_publishes(n, timeout=TIMEOUT * 5)]
        self.assertEqual(sorted(got), list(range(n)))
        self.assertEqual(got, list(range(n)))  # one publisher, one bridge: in order
        self.assertNotIn("receive maximum exceeded", remote.log_text())
        self.assertEqual(m.log_text().count("bridge=rm connected"), 1)

    def test_queue_while_remote_down_drains_in_order(self):
        """Messages published while the remote is down wait in the session and drain in order."""
        r = self.stopped_remote_with_subscriber("sub", "d/#")
        m = self.midge("connection q1\naddress 127.0.0.1:%d\nremote_clientid q1\n"
                       "restart_timeout 1\ntopic d/# out 1\n" % r.port)
        m.wait_log(lambda l: "bridge=q1 connection failed" in l)
        pub = self.client(m.port, "pub")
        for i in range(50):
            pub.publish("d/%d" % i, b"%d" % i, qos=1)
        r.start()
        self.wait_connected(m, "q1")
        sub = self.client(r.port, "sub", clean=False)
        got = [int(p.payload) for p in sub.recv_publishes(50, timeout=TIMEOUT * 3)]
        self.assertEqual(got, list(range(50)))

    def test_queue_bound_drops_are_counted_and_logged(self):
        """queue_max_messages bounds what waits for the remote; the rest is dropped and logged."""
        r = self.stopped_remote_with_subscriber("sub", "d/#")
        m = self.midge("connection qb\naddress 127.0.0.1:%d\nremote_clientid qb\n"
                       "restart_timeout 1\nqueue_max_messages 5\ntopic d/# out 1\n" % r.port)
        m.wait_log(lambda l: "bridge=qb connection failed" in l)
        pub = self.client(m.port, "pub")
        for i in range(12):
            pub.publish("d/%d" % i, b"%d" % i, qos=1)
        line = m.wait_log(lambda l: "bridge=qb dropped message" in l, what="drop log line")
        self.assertIn('reason="bridge queue full"', line)
        self.assertIn("topic=d/5", line)
        r.start()
        self.wait_connected(m, "qb")
        sub = self.client(r.port, "sub", clean=False)
        got = [int(p.payload) for p in sub.recv_publishes(5)]
        self.assertEqual(got, list(range(5)))
        sub.no_publish()

    def test_message_over_remote_maximum_packet_size_dropped(self):
        """A v5 remote's Maximum Packet Size is respected [MQTT-3.1.2-24]: too large -> dropped."""
        remote = Broker(["max_packet_size 200"])
        self._brokers.append(remote)
        remote.start()
        m = self.midge("connection mp\naddress 127.0.0.1:%d\nremote_clientid mp\n"
                       "bridge_protocol_version mqttv50\nrestart_timeout 1 2\n"
                       "topic p/# out 1\n" % remote.port)
        self.wait_connected(m, "mp")
        rsub = self.client(remote.port, "rsub", version=5)
        rsub.subscribe("p/#", 1)
        pub = self.client(m.port, "pub", version=5)
        pub.publish("p/big", b"x" * 500, qos=1)
        pub.publish("p/small", b"ok", qos=1)
        p = rsub.recv_publish()
        self.assertEqual((p.topic, p.payload), ("p/small", b"ok"))
        line = m.wait_log(lambda l: "bridge=mp dropped message topic=p/big" in l)
        self.assertIn("over the maximum packet size 200", line)
        self.assertEqual(m.log_text().count("bridge=mp connected"), 1)

    def test_sighup_adds_bridge_without_touching_the_other(self):
        r1 = self.remote()
        r2 = self.remote()
        block1 = self.bridge_block("keep", r1.port, "topic k/# out 1\n")
        m = self.midge(block1)
        self.wait_connected(m, "keep")
        sub1 = self.client(r1.port, "sub1")
        sub1.subscribe("k/#", 1)
        pub = self.client(m.port, "pub")
        stop = threading.Event()
        sent = []

        def traffic():
            i = 0
            while not stop.is_set():
                pub.publish("k/%d" % i, b"%d" % i, qos=1)
                sent.append(i)
                i += 1
                time.sleep(0.005)
        t = threading.Thread(target=traffic)
        t.start()
        try:
            self.write_bridges(block1 + self.bridge_block("added", r2.port, "topic a/# out 1\n"),
                               m.bridges_path)
            m.proc.send_signal(signal.SIGHUP)
            self.wait_connected(m, "added")
            sub2 = self.client(r2.port, "sub2")
            sub2.subscribe("a/#", 1)
            self.client(m.port, "pub2").publish("a/x", b"new", qos=1)
            self.assertEqual(sub2.recv_publish().payload, b"new")
        finally:
            stop.set()
            t.join()
        got = set()
        while len(got) < len(sent):
            got.add(int(sub1.recv_publish().payload))
        self.assertEqual(got, set(sent))
        text = m.log_text()
        self.assertEqual(text.count("bridge=keep connected"), 1)
        self.assertNotIn("bridge=keep disconnected", text)
        self.assertNotIn("bridge=keep stopped", text)

    def test_sighup_removes_and_changes_bridges(self):
        r = self.remote()
        m = self.midge(self.bridge_block("gone", r.port, "topic g/# out 1\n") +
                       self.bridge_block("chg", r.port, "topic c1/# out 1\n"))
        self.wait_connected(m, "gone")
        self.wait_connected(m, "chg")
        self.write_bridges(self.bridge_block("chg", r.port, "topic c2/# out 1\n"), m.bridges_path)
        m.proc.send_signal(signal.SIGHUP)
        m.wait_log(lambda l: "bridge=gone stopped" in l, what="removed bridge stopped")
        self.wait_connected(m, "chg", count=2)
        sub = self.client(r.port, "sub")
        sub.subscribe([("c1/#", 1), ("c2/#", 1), ("g/#", 1)])
        pub = self.client(m.port, "pub")
        pub.publish("c1/x", b"old", qos=1)
        pub.publish("g/x", b"gone", qos=1)
        pub.publish("c2/x", b"new", qos=1)
        p = sub.recv_publish()
        self.assertEqual((p.topic, p.payload), ("c2/x", b"new"))
        sub.no_publish()

    def test_bad_bridges_file_refuses_to_start(self):
        path = self.write_bridges("connection x\naddress 127.0.0.1:1\ntopic t sideways\n")
        b = Broker(["plugin " + BRIDGE_SO, "plugin_opt_bridges " + path])
        b.port = free_port()
        b.write_config()
        out = subprocess.run([midge_bin(), "-c", b.conf],
                             capture_output=True, text=True, timeout=10)
        self.assertNotEqual(out.returncode, 0)
        self.assertIn("%s:3: topic direction must be in, out or both, not \"sideways\"" % path,
                      out.stdout + out.stderr)

    def test_bad_bridges_file_on_sighup_keeps_running_bridges(self):
        r = self.remote()
        m = self.midge(self.bridge_block("stay", r.port, "topic s/# out 1\n"))
        self.wait_connected(m, "stay")
        self.write_bridges("connection stay\nbogus_line 1\n", m.bridges_path)
        m.proc.send_signal(signal.SIGHUP)
        m.wait_log(lambda l: "unknown bridge option \"bogus_line\"" in l, what="reload error")
        sub = self.client(r.port, "sub")
        sub.subscribe("s/#", 1)
        self.client(m.port, "pub").publish("s/1", b"still", qos=1)
        self.assertEqual(sub.recv_publish().payload, b"still")


def _publish_burst(client, topic_fmt, n, qos=1):
    """Sends n numbered PUBLISHes to `client` at once, without waiting for acknowledgements
    (as fast as the broker reads them), from a thread; returns it (join it)."""
    from midgetest import publish_packet
    data = b"".join(publish_packet(topic_fmt % i, b"%d" % i, qos, pid=(i % 65535) + 1,
                                   version=client.version) for i in range(n))
    t = threading.Thread(target=client.send, args=(data,), daemon=True)
    t.start()
    return t


@only_midge("the bridge plugin")
@need_bridge
class BridgeBackPressure(BridgeBase):
    """The bridge's outgoing side is an internal session with a small bound
    (queue_max_messages): a remote slower than the local publishers must slow them
    (back-pressure) instead of the bridge dropping messages midge already acknowledged;
    a link that is down or stalled must not stall them (docs/bridge.md, "Queue")."""

    N = 30000
    # The session queue's bound: a third of N, so that only pausing the publisher (at 1000,
    # see session_press_update) keeps it; above the pause point by more than what one
    # read of a publisher brings in before the pause takes effect.
    EDGE = ["max_queued_messages 10000"]

    def slow_remote(self):
        """A second midge granting Receive Maximum 1: one message per round trip."""
        remote = Broker(["max_inflight_messages 1", "max_queued_messages 100000"])
        self._brokers.append(remote)
        return remote.start()

    def edge(self, remote_port, name):
        return self.midge("connection %s\naddress 127.0.0.1:%d\nremote_clientid %s\n"
                          "bridge_protocol_version mqttv50\nrestart_timeout 1 2\n"
                          "queue_max_messages 100\ntopic bp/# out 1\n" % (name, remote_port, name),
                          extra=self.EDGE)

    def recv_numbered(self, client, n, edge=None):
        """Up to n numbered publishes, until n or nothing for a few seconds (a loss)."""
        got = []
        try:
            while len(got) < n:
                got.append(int(client.recv_publish(timeout=TIMEOUT).payload))
        except AssertionError:
            pass
        drops = [l for l in (edge.log_text() if edge else "").splitlines() if "dropped" in l]
        self.assertEqual(len(got), n, "%d of %d messages lost; edge: %s"
                         % (n - len(got), n, "\n".join(drops[:5])))
        self.assertEqual(got, list(range(n)))  # one publisher, one bridge: in order
        return got

    def assert_no_drop(self, m):
        text = m.log_text()
        self.assertNotIn("dropped message", text)   # the bridge's own bound
        self.assertNotIn("messages dropped", text)  # the session queue's bound (core)

    def test_slow_remote_slows_publishers_and_nothing_is_lost(self):
        """20000 numbered QoS 1 messages published as fast as midge reads them, over a bridge
        holding at most 100 to a remote taking one per round trip: every message arrives,
        in order, and nothing is dropped anywhere."""
        remote = self.slow_remote()
        m = self.edge(remote.port, "bp")
        self.wait_connected(m, "bp")
        rsub = self.client(remote.port, "rsub", version=5)
        rsub.subscribe("bp/#", 1)
        pub = self.client(m.port, "pub", version=5)
        t = _publish_burst(pub, "bp/%d", self.N)
        self.recv_numbered(rsub, self.N, m)
        t.join(TIMEOUT)
        self.assert_no_drop(m)
        self.assertEqual(m.log_text().count("bridge=bp connected"), 1)

    def test_stalled_remote_does_not_stall_local_publishers(self):
        """A remote that stops acknowledging (SIGSTOP, the link stays up) stops counting for
        back-pressure within a second or so: local publishers and subscribers go on, what
        waits stays queued (bounded), and it all arrives once the remote continues."""
        remote = self.slow_remote()
        m = self.edge(remote.port, "st")
        self.wait_connected(m, "st")
        rsub = self.client(remote.port, "rsub", version=5)
        rsub.subscribe("bp/#", 1)
        local = self.client(m.port, "local", version=5)
        local.subscribe("bp/#", 1)
        os.kill(remote.proc.pid, signal.SIGSTOP)
        try:
            pub = self.client(m.port, "pub", version=5)
            n = 5000
            t = _publish_burst(pub, "bp/%d", n)
            self.recv_numbered(local, n)
            t.join(TIMEOUT)
            self.assertFalse(t.is_alive(), "the publisher is stalled")
        finally:
            os.kill(remote.proc.pid, signal.SIGCONT)
        self.recv_numbered(rsub, n)
        self.assert_no_drop(m)

    def test_link_down_drops_at_the_bound_and_publishers_go_on(self):
        """With the link down the bridge queue is bounded by queue_max_messages: past it
        messages are dropped, counted and logged, and local publishers are not paused
        (a local subscriber gets everything)."""
        r = self.stopped_remote_with_subscriber("sub", "bp/#")
        m = self.midge("connection dn\naddress 127.0.0.1:%d\nremote_clientid dn\n"
                       "restart_timeout 1\nqueue_max_messages 100\ntopic bp/# out 1\n" % r.port,
                       extra=self.EDGE)
        m.wait_log(lambda l: "bridge=dn connection failed" in l)
        local = self.client(m.port, "local", version=5)
        local.subscribe("bp/#", 1)
        pub = self.client(m.port, "pub", version=5)
        n = 3000
        t = _publish_burst(pub, "bp/%d", n)
        self.recv_numbered(local, n)
        t.join(TIMEOUT)
        self.assertFalse(t.is_alive(), "the publisher is stalled")
        line = m.wait_log(lambda l: "bridge=dn dropped message" in l, what="drop log line")
        self.assertIn('reason="bridge queue full"', line)
        self.assertIn("topic=bp/100 ", line)
        r.start()
        self.wait_connected(m, "dn")
        sub = self.client(r.port, "sub", clean=False)
        got = [int(p.payload) for p in sub.recv_publishes(100)]
        self.assertEqual(got, list(range(100)))
        sub.no_publish()


@only_midge("the bridge plugin")
@need_bridge
class BridgeRestore(BridgeBase):
    """The bridge's queue is an ordinary persistent session: what a persistence plugin
    restores at start-up (here tests/plugins/persist_test.c replaying a file, standing in
    for persist-sqlite) is sent to the remote once it is reachable."""

    def test_restored_queue_drains_to_the_remote(self):
        plugins = os.environ.get("MIDGE_TEST_PLUGINS") or os.path.join(
            os.path.dirname(BRIDGE_SO), "..", "..", "..", "tests", "plugins", ".libs")
        so = os.path.join(plugins, "persist_test.so")
        if not os.path.exists(so):
            self.skipTest("tests/plugins/persist_test.so not built")
        d = tempfile.mkdtemp(dir=tmp_root())
        restore = os.path.join(d, "restore")
        with open(restore, "w") as f:
            # A session left by a previous run: one message in flight (sent with packet id 7,
            # not acknowledged by the remote), two queued behind it.
            f.write("session local.rs 4294967295 5 4294967295\n"
                    "sub local.rs d/# 1\n"
                    "msg local.rs 1 1 1 7 d/0 p0\n"
                    "msg local.rs 2 1 0 0 d/1 p1\n"
                    "msg local.rs 3 1 0 0 d/2 p2\n")
        r = self.remote()
        sub = self.client(r.port, "sub")
        sub.subscribe("d/#", 1)
        m = self.midge(self.bridge_block("rs", r.port, "topic d/# out 1\n"),
                       extra=["plugin " + so, "plugin_opt_events " + os.path.join(d, "events"),
                              "plugin_opt_restore " + restore])
        m.wait_log(lambda l: "bridge=rs session local.rs open present=1" in l,
                   what="the restored session reopened by the bridge")
        got = sub.recv_publishes(3)
        self.assertEqual([(p.topic, p.payload) for p in got],
                         [("d/0", b"p0"), ("d/1", b"p1"), ("d/2", b"p2")])
        # The in-flight one went out again with DUP and its packet id [MQTT-4.4.0-1]
        # (mosquitto's log; DUP does not travel on to subscribers [MQTT-3.3.1-3]).
        self.assertIn("Received PUBLISH from rs (d1, q1, r0, m7, 'd/0'", r.log_text())


    def test_restored_released_qos2_is_released_not_sent_again(self):
        """A QoS 2 message whose PUBREC had come in before a restart (restored in the PUBREL
        state, packet id 7) is released with PUBREL, never published again
        [MQTT-4.3.3-5]; PUBCOMP finishes it in the session (MSG_DONE persisted)."""
        so = _test_plugin("persist_test")
        if so is None:
            self.skipTest("tests/plugins/persist_test.so not built")
        d = tempfile.mkdtemp(dir=tmp_root())
        restore = os.path.join(d, "restore")
        events = os.path.join(d, "events")
        with open(restore, "w") as f:
            f.write("session local.rr 4294967295 5 4294967295\n"
                    "sub local.rr d/# 2\n"
                    "msg local.rr 1 2 2 7 d/0 p0\n"
                    "msg local.rr 2 1 0 0 d/1 p1\n")
        r = self.remote()
        sub = self.client(r.port, "sub")
        sub.subscribe("d/#", 2)
        m = self.midge(self.bridge_block("rr", r.port, "topic d/# out 2\n"),
                       extra=["plugin " + so, "plugin_opt_events " + events,
                              "plugin_opt_restore " + restore])
        p = sub.recv_publish()
        self.assertEqual((p.topic, p.payload), ("d/1", b"p1"))
        sub.no_publish()
        wait_until(lambda: "Received PUBREL from rr (Mid: 7)" in r.log_text(),
                   what="the PUBREL of the restored released message at the remote")
        self.assertNotIn("'d/0'", r.log_text())

        def done():
            with open(events) as f:
                return any(l.split()[1:4] == ["10", "local.rr", "1"] for l in f)
        wait_until(done, what="delivery 1 finished (MSG_DONE) after PUBCOMP")
        # A live QoS 2 message: the remote's PUBREC is recorded (MSG_RELEASED persisted)
        # before its PUBREL, so a restart from here would release it, not send it again.
        self.client(m.port, "pub").publish("d/2", b"p2", qos=2)
        self.assertEqual(sub.recv_publish().payload, b"p2")

        def released():
            with open(events) as f:
                return any(l.split()[1:3] == ["9", "local.rr"] for l in f)
        wait_until(released, what="MSG_RELEASED of the live QoS 2 message")


def _sqlite_so():
    base = os.path.dirname(os.path.dirname(os.path.dirname(BRIDGE_SO or "/x/x/x/x")))
    p = os.path.join(base, "persist-sqlite", ".libs", "persist-sqlite.so")
    return p if os.path.exists(p) else None


@only_midge("the bridge plugin with persist-sqlite")
@need_bridge
class BridgeSqlite(BridgeBase):

    def test_midge_restarted_while_remote_down_every_queued_message_arrives(self):
        """persist-sqlite keeps the bridge's session and queue: numbered QoS 1 messages
        acknowledged while the remote was down survive SIGKILL of midge and arrive, in
        order, once both are up again (the outgoing queue is an ordinary session)."""
        so = _sqlite_so()
        if so is None:
            self.skipTest("persist-sqlite.so not built")
        db = os.path.join(tempfile.mkdtemp(dir=tmp_root()), "midge.db")
        r = self.stopped_remote_with_subscriber("sub", "s/#")
        m = self.midge(self.bridge_block("sq", r.port, "topic s/# out 1\n"),
                       extra=["plugin " + so, "plugin_opt_db " + db])
        m.wait_log(lambda l: "bridge=sq connection failed" in l)
        pub = self.client(m.port, "pub")
        for i in range(100):
            pub.publish("s/%d" % i, b"%d" % i, qos=1)   # each PUBACK waits for durability
        pub.close()
        m.kill()                                         # no clean shutdown
        m.start()
        m.wait_log(lambda l: "bridge=sq session local.sq open present=1" in l,
                   what="the bridge's session restored from the database")
        r.start()
        self.wait_connected(m, "sq")
        sub = self.client(r.port, "sub", clean=False)
        got = [int(p.payload) for p in sub.recv_publishes(100, timeout=TIMEOUT * 3)]
        self.assertEqual(got, list(range(100)))
        sub.no_publish()


    def test_incoming_qos1_acknowledged_to_the_remote_only_once_durable(self):
        """Remote -> midge with persist-sqlite: numbered QoS 1 messages flow from mosquitto
        over the bridge to a persistent local subscriber (offline: every message is queued
        for it); midge is SIGKILLed mid-stream and restarted. Every message mosquitto got a
        PUBACK for from the bridge is there for the subscriber, and the rest arrive too
        (mosquitto sends the unacknowledged ones again)."""
        so = _sqlite_so()
        if so is None:
            self.skipTest("persist-sqlite.so not built")
        db = os.path.join(tempfile.mkdtemp(dir=tmp_root()), "midge.db")
        r = self.remote(["max_queued_messages 0", "max_inflight_messages 100"])
        m = self.midge(self.bridge_block("dur", r.port, "topic in/# in 1\n"),
                       extra=["plugin " + so, "plugin_opt_db " + db,
                              "max_queued_messages 0"])
        self.wait_connected(m, "dur")
        keeper = self.client(m.port, "keeper", clean=False)
        keeper.subscribe("in/#", 1)
        keeper.close()
        n = 3000
        rpub = self.client(r.port, "rpub")
        for i in range(n):
            rpub.publish("in/%d" % i, b"%d" % i, qos=1, wait_ack=False)
        wait_until(lambda: r.log_text().count("Received PUBACK from dur ") >= 300,
                   TIMEOUT * 3, interval=0.01, what="the bridge acknowledging")
        m.kill()                                     # mid-stream, no clean shutdown
        wait_until(lambda: any(w in r.log_text() for w in
                               ("Socket error on client dur", "Client dur closed",
                                "Client dur disconnected")),
                   what="mosquitto noticing the bridge is gone")
        text = r.log_text()
        topic_of = {}
        for mid, topic in re.findall(r"Sending PUBLISH to dur \(d0, q1, r\d, m(\d+), '([^']+)'",
                                     text):
            topic_of.setdefault(int(mid), topic)
        acked = {int(topic_of[int(mid)].split("/")[1])
                 for mid in re.findall(r"Received PUBACK from dur \(Mid: (\d+), RC:0\)", text)}
        self.assertGreaterEqual(len(acked), 300)
        self.assertLess(len(acked), n, "midge was killed too late to test anything")
        m.start()
        self.wait_connected(m, "dur", count=2)
        keeper = self.client(m.port, "keeper", clean=False)
        got = set()
        deadline = time.monotonic() + TIMEOUT * 6
        while len(got) < n and time.monotonic() < deadline:
            try:
                got.add(int(keeper.recv_publish(timeout=1).payload))
            except AssertionError:
                pass
        self.assertEqual(sorted(acked - got), [], "acknowledged to the remote, then lost")
        self.assertEqual(sorted(set(range(n)) - got), [])


def start_on_port(broker, port):
    """Starts a midge Broker on a port chosen in advance (its peers' bridges name it)."""
    broker.port = port
    broker.write_config()
    broker.log = open(broker.logpath, "ab")
    broker.proc = subprocess.Popen([midge_bin(), "-c", broker.conf, "-v"], stdout=broker.log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    broker.wait_port()
    return broker


@only_midge("the bridge plugin")
@need_bridge
class BridgeMesh(BridgeBase):
    """Loop prevention between midge brokers over MQTT 5 (midge-origin user property)."""

    def mesh(self, names, topics, pairs=None, extra=()):
        """midges `names`, with a bridge from each to each other (or only `pairs` (from, to))
        carrying the topic lines `topics` over MQTT 5."""
        pairs = pairs or [(n, peer) for n in names for peer in names if peer != n]
        ports = {n: free_port() for n in names}
        brokers = {}
        for n in names:
            text = ""
            for src, peer in pairs:
                if src == n:
                    text += ("connection %s-to-%s\naddress 127.0.0.1:%d\nremote_clientid %s-to-%s\n"
                             "bridge_protocol_version mqttv50\nrestart_timeout 1 2\n%s\n"
                             % (n, peer, ports[peer], n, peer, topics))
            path = self.write_bridges(text)
            b = Broker(["plugin " + BRIDGE_SO, "plugin_opt_bridges " + path] + list(extra))
            self._brokers.append(b)
            brokers[n] = start_on_port(b, ports[n])
        for src, peer in pairs:
            self.wait_connected(brokers[src], "%s-to-%s" % (src, peer))
        return brokers

    def bridge_counters(self, brokers):
        """messages_sent + messages_received of every broker's bridge plugin ($SYS, sys_interval 1)."""
        out = {}
        for n, b in brokers.items():
            c = RawClient(b.port, 5)
            c.connect("probe-%s-%f" % (n, time.monotonic()))
            c.subscribe([("$SYS/broker/plugin/+/metric/messages_sent", 0),
                         ("$SYS/broker/plugin/+/metric/messages_received", 0)])
            vals = {}
            while len(vals) < 2:
                p = c.recv_publish(timeout=3)
                if not p.retain:          # a live value, not the retained one from before
                    vals[p.topic] = int(p.payload)
            c.close()
            out[n] = sum(vals.values())
        return out

    def assert_once_everywhere_then_quiet(self, brokers, prefix, per_broker, qos):
        subs = {}
        for n in brokers:
            subs[n] = self.client(brokers[n].port, "sub-" + n, version=5)
            subs[n].subscribe(prefix + "#", qos)
        for n in brokers:
            pub = self.client(brokers[n].port, "pub-" + n, version=5)
            for i in range(per_broker):
                pub.publish("%s%s/%d" % (prefix, n, i), b"%s%d" % (n.encode(), i), qos=qos)
        want = sorted(b"%s%d" % (n.encode(), i) for n in brokers for i in range(per_broker))
        for n in brokers:
            got = sorted(p.payload for p in subs[n].recv_publishes(len(want), timeout=TIMEOUT * 3))
            self.assertEqual(got, want, "subscriber on %s" % n)
        before = self.bridge_counters(brokers)
        for n in brokers:
            subs[n].no_publish(QUIET)     # no duplicates, and the counters do not move:
        self.assertEqual(self.bridge_counters(brokers), before, "bridges still busy")

    def test_ring_of_three_with_both_delivers_once_and_goes_quiet(self):
        """a -> b -> c -> a, one bridge per pair, each with `both`: messages go both ways
        round the ring; each subscriber gets each message once and the bridges go quiet."""
        names = ("a", "b", "c")
        brokers = self.mesh(names, "topic ring/# both 1", pairs=[("a", "b"), ("b", "c"), ("c", "a")],
                            extra=["sys_interval 1"])
        self.assert_once_everywhere_then_quiet(brokers, "ring/", 20, 1)

    def test_triangle_with_both_qos2_delivers_once_and_goes_quiet(self):
        """Three midges, each bridged to both others with `both` (six bridges, two per pair),
        QoS 2: each subscriber gets each message once and the bridges go quiet."""
        names = ("a", "b", "c")
        brokers = self.mesh(names, "topic tri2/# both 2", extra=["sys_interval 1"])
        self.assert_once_everywhere_then_quiet(brokers, "tri2/", 20, 2)

    def test_triangle_delivers_once_per_subscriber_and_goes_quiet(self):
        """Three midges, each pushing tri/# to the two others: every message once everywhere."""
        names = ("a", "b", "c")
        brokers = self.mesh(names, "topic tri/# out 1")
        subs = {}
        for n in names:
            subs[n] = self.client(brokers[n].port, "sub-" + n, version=5)
            subs[n].subscribe("tri/#", 1)
        for n in names:
            self.client(brokers[n].port, "pub-" + n, version=5).publish("tri/" + n, n.encode(),
                                                                         qos=1)
        for n in names:
            got = sorted(p.payload for p in subs[n].recv_publishes(3))
            self.assertEqual(got, [b"a", b"b", b"c"], "subscriber on %s" % n)
        for n in names:
            subs[n].no_publish(QUIET * 2)   # no duplicates, and the bridges went quiet

    def test_qos0_and_retained_in_triangle(self):
        names = ("x", "y", "z")
        brokers = self.mesh(names, "topic r/# out 1")
        self.client(brokers["x"].port, "pub", version=5).publish("r/k", b"v", qos=0, retain=True)
        for n in ("y", "z"):
            p = self.retained_on(brokers[n], "r/#")
            self.assertEqual((p.payload, p.retain), (b"v", True))


@only_midge("the bridge plugin")
@need_bridge
class BridgeTLS(BridgeBase):
    """TLS to mosquitto: CA, server and client certificates made here with openssl."""

    def make_pki(self):
        d = tempfile.mkdtemp(prefix="pki-", dir=tmp_root())

        def run(*args):
            subprocess.run(["openssl"] + list(args), cwd=d, check=True,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", "2", "-subj", "/CN=midge test CA")
        for name, san in (("server", "DNS:localhost,IP:127.0.0.1"), ("client", "DNS:bridge")):
            run("req", "-newkey", "rsa:2048", "-nodes", "-keyout", name + ".key", "-out",
                name + ".csr", "-subj", "/CN=" + name)
            with open(os.path.join(d, name + ".ext"), "w") as f:
                f.write("subjectAltName=%s\n" % san)
            run("x509", "-req", "-in", name + ".csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".pem", "-days", "2", "-extfile", name + ".ext")
        return d

    def tls_remote(self, d):
        port = free_port()
        return self.remote(["listener %d %s" % (port, HOST), "cafile %s/ca.pem" % d,
                            "certfile %s/server.pem" % d, "keyfile %s/server.key" % d,
                            "require_certificate true"], port=port)

    def test_tls_with_client_certificate(self):
        d = self.make_pki()
        r = self.tls_remote(d)
        m = self.midge(self.bridge_block("tls", r.port, "topic sec/# both 1\n",
                                         "bridge_cafile %s/ca.pem\nbridge_certfile %s/client.pem\n"
                                         "bridge_keyfile %s/client.key\nbridge_alpn mqtt\n"
                                         % (d, d, d)))
        self.wait_connected(m, "tls")
        # The remote side speaks TLS only: check with mosquitto_sub using the same PKI.
        out = subprocess.Popen(["mosquitto_sub", "-h", "127.0.0.1", "-p", str(r.port), "-t",
                                "sec/#", "-C", "1", "-W", "10", "--cafile", d + "/ca.pem",
                                "--cert", d + "/client.pem", "--key", d + "/client.key"],
                               stdout=subprocess.PIPE, text=True)
        try:
            wait_until(lambda: r.log_text().count("Sending SUBACK") >= 2, 5,
                       what="mosquitto_sub subscribed")
            self.client(m.port, "pub").publish("sec/1", b"over tls", qos=1)
            self.assertEqual(out.communicate(timeout=10)[0].strip(), "over tls")
        finally:
            if out.poll() is None:
                out.kill()
                out.wait()

    def test_tls_psk(self):
        """bridge_identity / bridge_psk against a mosquitto psk_file listener."""
        d = tempfile.mkdtemp(prefix="psk-", dir=tmp_root())
        with open(os.path.join(d, "psk"), "w") as f:
            f.write("edge:0123456789abcdef\n")
        tls_port = free_port()
        plain = free_port()
        r = self.remote(["listener %d %s" % (plain, HOST),
                         "listener %d %s" % (tls_port, HOST), "psk_hint midge-test",
                         "psk_file %s/psk" % d, "use_identity_as_username false"], port=plain)
        m = self.midge(self.bridge_block("psk", tls_port, "topic p/# out 1\n",
                                         "bridge_identity edge\nbridge_psk 0123456789abcdef\n"))
        self.wait_connected(m, "psk")
        sub = self.client(plain, "sub")
        sub.subscribe("p/#", 1)
        self.client(m.port, "pub").publish("p/1", b"psk", qos=1)
        self.assertEqual(sub.recv_publish().payload, b"psk")

    def test_tls_wrong_ca_is_refused(self):
        d = self.make_pki()
        other = self.make_pki()
        r = self.tls_remote(d)
        m = self.midge(self.bridge_block("badca", r.port, "topic sec/# out 1\n",
                                         "bridge_cafile %s/ca.pem\nbridge_certfile %s/client.pem\n"
                                         "bridge_keyfile %s/client.key\n" % (other, d, d)))
        line = m.wait_log(lambda l: "bridge=badca connection failed" in l)
        self.assertIn("certificate verify failed", line)
        self.assertNotIn("bridge=badca connected", m.log_text())


if __name__ == "__main__":
    unittest.main()
