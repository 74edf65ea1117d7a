"""cluster-redis (issue 11, plugins/cluster-redis, docs/cluster-redis.md): three midge
nodes and one redis-server (Debian's, started here on a free loopback port with
appendonly yes and appendfsync always, in a temp dir), driven by paho clients.

Cross-node publish/subscribe at QoS 0/1/2, wildcards, retained messages from any node,
a publisher's node SIGKILLed while numbered QoS 1 messages flow (every acknowledged
message arrives), and Redis restarted mid-stream.
"""

import os
import queue
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import unittest

import midgetest
from midgetest import (Broker, PahoClient, RawClient, free_port, only_midge, paho_props, tmp_root,
                       wait_until, HOST, QUIET, TIMEOUT)

REDIS_BIN = shutil.which("redis-server") or "/usr/bin/redis-server"


def _plugin_so():
    for base in (os.environ.get("MIDGE_BUILDDIR"),
                 os.path.join(os.environ.get("MIDGE_SRCDIR",
                                             os.path.join(os.path.dirname(__file__), "..", "..")),
                              "build")):
        if base:
            p = os.path.join(base, "plugins", "cluster-redis", ".libs", "cluster-redis.so")
            if os.path.exists(p):
                return os.path.abspath(p)
    return None


PLUGIN_SO = _plugin_so()
if not os.path.exists(REDIS_BIN):
    print("SKIP test_cluster_redis: redis-server is not installed (apt-get install redis-server)")
need_cluster = unittest.skipUnless(PLUGIN_SO and os.path.exists(REDIS_BIN),
                                   "cluster-redis plugin not built or redis-server missing")


class Redis:
    """A redis-server on a loopback port that stays the same across restarts."""

    def __init__(self):
        self.dir = tempfile.mkdtemp(prefix="redis-", dir=tmp_root())
        self.port = free_port()
        self.proc = None

    def start(self):
        self.log = open(os.path.join(self.dir, "redis.log"), "ab")
        self.proc = subprocess.Popen(
            [REDIS_BIN, "--port", str(self.port), "--bind", HOST, "--dir", self.dir,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--daemonize", "no", "--protected-mode", "no"],
            stdout=self.log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        wait_until(self.ping, 5.0, what="redis-server answering PING")
        return self

    def ping(self):
        try:
            with socket.create_connection((HOST, self.port), timeout=0.5) as s:
                s.sendall(b"PING\r\n")
                return s.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def command(self, *args):
        """One command, its raw reply (enough for integers and simple strings)."""
        with socket.create_connection((HOST, self.port), timeout=2) as s:
            out = b"*%d\r\n" % len(args)
            for a in args:
                a = a.encode() if isinstance(a, str) else a
                out += b"$%d\r\n%s\r\n" % (len(a), a)
            s.sendall(out)
            return s.recv(65536)

    def stop(self, sig=signal.SIGTERM):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def kill(self):
        self.stop(signal.SIGKILL)


class Node(Broker):
    """A midge with the cluster plugin; keeps its port across restarts."""

    def __init__(self, redis, node_id, extra=()):
        super().__init__(config=["plugin %s" % PLUGIN_SO,
                                 "plugin_opt_redis %s:%d" % (HOST, redis.port),
                                 "plugin_opt_node_id %s" % node_id,
                                 "plugin_opt_node_timeout 5", "sys_interval 1",
                                 # a slow paho subscriber must not hit the default 1000-message
                                 # queue limit (a drop by design, not the cluster's)
                                 "max_queued_messages 0"] + list(extra))
        self.node_id = node_id

    def start(self, timeout=5.0):
        if self.port is None:
            super().start(timeout)
        else:
            self.write_config()
            self.log = open(self.logpath, "ab")
            self.proc = subprocess.Popen([midgetest.broker_bin(), "-c", self.conf, "-v"],
                                         stdout=self.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)
            midgetest._started.append(self)
            self.wait_port(timeout)
        return self

    def joined(self, count=1):
        """Started COUNT times and ready each time: the node hears every cluster channel and
        read the retained hash (logged once per start, after both)."""
        return len(re.findall(r"loaded \d+ retained messages from redis", self.log_text())) >= count


def client(node, cid="", clean=True, version=4):
    c = PahoClient(node.port, client_id=cid, clean=clean, version=version)
    c.connect()
    return c


def wait_route(pub_node, topic, sub, timeout=10.0):
    """Publishes QoS 0 probes on pub_node until `sub` gets one: the route has reached it."""
    p = client(pub_node)
    try:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            p.publish(topic, b"probe")
            try:
                m = sub.messages.get(timeout=0.1)
                if m.payload == b"probe":
                    break
            except queue.Empty:
                pass
        else:
            raise AssertionError("route for %s never reached node %s" % (topic, pub_node.node_id))
        # Probes still on their way: QoS 0 from one publisher keeps its order on the way to a
        # node, so they all come before this last one.
        p.publish(topic, b"probe-end")
        while True:
            try:
                m = sub.messages.get(timeout=timeout)
            except queue.Empty:
                raise AssertionError("the last probe for %s never arrived" % topic)
            if m.payload == b"probe-end":
                return
            assert m.payload == b"probe", "unexpected %r" % m.payload
    finally:
        p.disconnect()


def drain_payloads(sub, n, timeout):
    """Payloads until n distinct non-probe ones arrived (or timeout); returns the list of all."""
    got = []
    end = time.monotonic() + timeout
    while len(set(got)) < n and time.monotonic() < end:
        try:
            m = sub.messages.get(timeout=0.1)
        except queue.Empty:
            continue
        if not m.payload.startswith(b"probe"):
            got.append(m.payload)
    return got


def retained_on(node, topic):
    """The retained message a new subscriber on node gets for topic, or None."""
    s = client(node)
    try:
        s.subscribe(topic, 1)
        try:
            return s.messages.get(timeout=0.3)
        except queue.Empty:
            return None
    finally:
        s.disconnect()


def stream_consumed(redis, node_id):
    """Node node_id read, published and acknowledged every entry of its stream (XINFO
    GROUPS: nothing pending, lag 0)."""
    r = redis.command("XINFO", "GROUPS", "midge:stream:%s" % node_id)
    return b"pending\r\n:0\r\n" in r and b"lag\r\n:0\r\n" in r


@need_cluster
@only_midge("cluster-redis is a midge plugin")
class ClusterTest(unittest.TestCase):
    nodes_n = 3

    def setUp(self):
        self.redis = Redis().start()
        self.nodes = []
        self.clients = []
        for i in range(self.nodes_n):
            n = Node(self.redis, "n%d" % (i + 1))
            n.start()
            self.nodes.append(n)
        for n in self.nodes:
            wait_until(n.joined, 5.0, what="node %s joined" % n.node_id)

    def tearDown(self):
        for c in self.clients:
            try:
                c.disconnect()
            except Exception:
                pass
        for n in self.nodes:
            if n.alive():
                n.stop()
            for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                           "WARNING: ThreadSanitizer", "runtime error:"):
                self.assertNotIn(marker, n.log_text(), "sanitizer report in %s" % n.logpath)
        self.redis.stop()

    def wait_metrics(self, node, want, timeout=8.0):
        """Waits until the plugin's $SYS metrics on node satisfy want (name -> predicate on
        the value); they are published once a second, the first one retained."""
        base = "$SYS/broker/plugin/cluster-redis/metric/"
        w = self.c(node)
        w.subscribe(base + "#", 0)
        seen = {}

        def all_good():
            try:
                m = w.messages.get(timeout=0.2)
                seen[m.topic[len(base):]] = m.payload.decode()
            except queue.Empty:
                pass
            return all(n in seen and ok(seen[n]) for n, ok in want.items())
        wait_until(all_good, timeout, what="metrics %s on %s (seen %r)"
                   % (sorted(want), node.node_id, seen))
        w.disconnect()

    def c(self, node, **kw):
        cl = client(node, **kw)
        self.clients.append(cl)
        return cl

    def test_cross_node_qos_0_1_2(self):
        """A publish on one node reaches a subscriber on another at the QoS asked for
        [MQTT-3.3.4-1], min(publish QoS, granted QoS)."""
        a, b = self.nodes[0], self.nodes[1]
        sub = self.c(b)
        sub.subscribe("q/+", 2)
        wait_route(a, "q/probe", sub)
        pub = self.c(a)
        for qos in (0, 1, 2):
            pub.publish("q/%d" % qos, b"m%d" % qos, qos)
            m = sub.get(what="QoS %d message" % qos)
            self.assertEqual((m.topic, m.payload, m.qos), ("q/%d" % qos, b"m%d" % qos, qos))
        sub.none()

    def test_forwarded_only_to_matching_nodes(self):
        """Node 3 has no subscriber: nothing is forwarded to it (its received counter
        stays 0), while node 2 gets what matches its wildcard filter."""
        a, b, c = self.nodes
        sub = self.c(b)
        sub.subscribe("w/+/x/#", 1)
        wait_route(a, "w/p/x", sub)
        pub = self.c(a)
        pub.publish("w/1/x/deep/er", b"yes", 1)
        pub.publish("w/1/y", b"no", 1)
        m = sub.get()
        self.assertEqual((m.topic, m.payload), ("w/1/x/deep/er", b"yes"))
        sub.none()
        # Nothing in node 3's stream: only matching nodes get XADDs.
        self.assertIn(b":0\r\n", self.redis.command("XLEN", "midge:stream:n3"))
        self.assertNotIn(b":0\r\n", self.redis.command("XLEN", "midge:stream:n2"))

    def test_no_loop_between_nodes(self):
        """Subscribers on both nodes get a message exactly once: what a node received from
        the cluster is not forwarded back."""
        a, b = self.nodes[0], self.nodes[1]
        sa = self.c(a)
        sa.subscribe("loop/#", 1)
        sb = self.c(b)
        sb.subscribe("loop/#", 1)
        wait_route(a, "loop/probe", sb)
        wait_route(b, "loop/probe", sa)
        self.c(a).publish("loop/x", b"once", 1)
        self.assertEqual(drain_payloads(sa, 1, TIMEOUT), [b"once"])
        self.assertEqual(drain_payloads(sb, 1, TIMEOUT), [b"once"])
        self.assertEqual(drain_payloads(sa, 2, QUIET), [], "a second copy on n1")
        self.assertEqual(drain_payloads(sb, 2, QUIET), [], "a second copy on n2")

    def test_retained_from_any_node(self):
        """A retained message set on node 1 is served by nodes 2 and 3 to new subscribers
        [MQTT-3.3.1-6]; cleared on node 3 with an empty payload [MQTT-3.3.1-10], it is gone
        everywhere; a node started later loads it from Redis."""
        a, b, c = self.nodes
        self.c(a).publish("ret/t", b"kept", 1, retain=True)
        for n in (b, c):
            m = wait_until(lambda: retained_on(n, "ret/t"), 5.0,
                           what="retained message on %s" % n.node_id)
            self.assertEqual((m.payload, m.retain), (b"kept", 1))
        # A fourth node started now loads it from Redis.
        d = Node(self.redis, "n4").start()
        self.nodes.append(d)
        wait_until(lambda: "loaded 1 retained" in d.log_text(), 5.0, what="retained loaded")
        self.assertEqual(retained_on(d, "ret/t").payload, b"kept")
        # Cleared on node 3: gone on node 2 too.
        self.c(c).publish("ret/t", b"", 1, retain=True)
        wait_until(lambda: retained_on(b, "ret/t") is None, 5.0,
                   what="retained message cleared on n2")
        self.assertIn(b":0\r\n", self.redis.command("HLEN", "midge:retained"))

    def test_publisher_node_killed_nothing_acknowledged_lost(self):
        """Numbered QoS 1 messages flow from a publisher on node 1 to a subscriber on node 3;
        node 1 is SIGKILLed mid-stream, the publisher moves to node 2 and sends again what
        was not acknowledged: every acknowledged number arrives (the PUBACK came after the
        XADD) [MQTT-4.3.2-2]."""
        a, b, c = self.nodes
        sub = self.c(c, cid="numbers-sub")
        sub.subscribe("num/#", 1)
        wait_route(a, "num/probe", sub)
        wait_route(b, "num/probe", sub)
        acked = set()
        pub = client(a)
        total = 3000
        # paho sends them with its in-flight window (20); node 1 dies with most unacknowledged.
        infos = [pub.c.publish("num/x", b"%d" % i, 1) for i in range(total)]
        wait_until(lambda: sum(1 for i in infos if i.is_published()) >= 100, 10.0,
                   what="100 acknowledged")
        a.kill()  # SIGKILL
        pub.c.loop_stop()
        acked = {i for i, info in enumerate(infos) if info.is_published()}
        self.assertLess(len(acked), total, "everything acknowledged before the kill")
        pub2 = self.c(b)
        resend = [pub2.c.publish("num/x", b"%d" % i, 1) for i in range(total) if i not in acked]
        wait_until(lambda: all(i.is_published() for i in resend), 15.0, what="resend acknowledged")
        got = drain_payloads(sub, total, 15.0)
        numbers = {int(p) for p in got}
        self.assertEqual(set(range(total)) - numbers, set(), "acknowledged messages lost")
        # Duplicates only from the publisher's resend of unacknowledged ones [MQTT-4.3.2-1].
        self.assertLessEqual(len(got) - len(numbers), total - len(acked))
        # Node 1 restarted with its node id: it rejoins and forwards again.
        a.start()
        wait_until(lambda: a.joined(2), 5.0, what="n1 joined again")
        wait_route(a, "num/probe", sub)

    def test_node_restarted_rejoins_without_duplicates(self):
        """Node 2 is SIGKILLed and restarted with the same node id: it announces its routes
        from scratch (what Redis had is from before the crash), reads its stream again, and
        its new subscriber gets each QoS 1 message exactly once."""
        a, b = self.nodes[0], self.nodes[1]
        sub = client(b)
        sub.subscribe("bk/#", 1)
        wait_route(a, "bk/probe", sub)
        b.kill()
        b.start()
        wait_until(lambda: b.joined(2), 5.0, what="n2 joined again")
        self.assertIn(b":0\r\n", self.redis.command("SCARD", "midge:routes:n2"))
        sub = self.c(b)
        sub.subscribe("bk/#", 1)
        wait_route(a, "bk/probe", sub)
        pub = self.c(a)
        for i in range(50):
            pub.publish("bk/x", b"%d" % i, 1)
        got = drain_payloads(sub, 50, 10.0)
        self.assertEqual({int(p) for p in got}, set(range(50)))
        self.assertEqual(drain_payloads(sub, 1, QUIET), [], "duplicates delivered")
        self.assertEqual(len(got), 50, "duplicates delivered")

    def test_takeover_across_nodes_drops_old_connection(self):
        """A client id connected on node 1 connects again on node 2: node 1 drops the old
        connection, MQTT 5 with DISCONNECT 0x8E Session taken over [MQTT-3.1.4-3]."""
        a, b = self.nodes[0], self.nodes[1]
        old = RawClient(a.port, version=5)
        old.connect(client_id="roamer")
        new = RawClient(b.port, version=5)
        new.connect(client_id="roamer")
        old.expect_disconnect(rc=0x8E, timeout=5.0)
        self.assertTrue(new.is_open(), "the new connection must stay")
        new.close()

    def persistent(self, node, cid, version):
        """A paho client with a session that outlives its connection: MQTT 3.1.1 clean
        session 0, or MQTT 5 clean start 0 with a Session Expiry Interval."""
        props = paho_props("CONNECT", SessionExpiryInterval=300) if version == 5 else None
        cl = PahoClient(node.port, client_id=cid, clean=False, version=version, props=props)
        cl.connect()
        self.clients.append(cl)
        return cl

    def _takeover_queued(self, version):
        a, b = self.nodes[0], self.nodes[1]
        cid = "roam-%d" % version
        topic = "tk%d" % version
        sub = self.persistent(a, cid, version)
        sub.subscribe(topic + "/#", 1)
        wait_route(b, topic + "/probe", sub)
        sub.disconnect()
        # Numbered QoS 1 messages while the client is away, from a publisher on node 2
        # (carried to node 1's session through its stream) and one on node 1.
        n = 20
        pb, pa = self.c(b), self.c(a)
        for i in range(n // 2):
            pb.publish(topic + "/x", b"b%d" % i, 1)
        for i in range(n // 2):
            pa.publish(topic + "/x", b"a%d" % i, 1)
        # Node 1 took the cross-node ones into the session: not in transit any more (see
        # docs/cluster-redis.md: a message still in transit to the old node is not moved).
        wait_until(lambda: stream_consumed(self.redis, a.node_id), 10.0,
                   what="node 1 consumed its stream")
        # The client comes back on node 2, clean start 0, and does not subscribe again.
        back = self.persistent(b, cid, version)
        got = [m.payload for m in back.get_n(n, timeout=10.0)]
        for origin in (b"a", b"b"):
            # Per publisher in publish order [MQTT-4.6.0-5]; the queued ones, all of them,
            # once [MQTT-4.4.0-1 on the new node: the session's unacknowledged messages].
            self.assertEqual([p for p in got if p.startswith(origin)],
                             [origin + b"%d" % i for i in range(n // 2)])
        back.none()
        wait_until(lambda: "ends the session of client=%s" % cid in a.log_text(), 5.0,
                   what="node 1 ended its copy of the session")
        # Its subscription moved too: a new message from node 1 reaches it on node 2.
        wait_route(a, topic + "/probe", back)
        pa.publish(topic + "/x", b"after", 1)
        self.assertEqual(back.get(what="message after the takeover").payload, b"after")
        back.none()
        back.disconnect()
        # Back on node 1: node 2's session (nothing unacknowledged) comes along, no
        # duplicates of what node 1 had queued, and the subscription still works.
        again = self.persistent(a, cid, version)
        again.none()
        wait_until(lambda: "ends the session of client=%s" % cid in b.log_text(), 5.0,
                   what="node 2 ended its copy of the session")
        wait_route(b, topic + "/probe", again)
        pb.publish(topic + "/x", b"again", 1)
        self.assertEqual(again.get(what="message after moving back").payload, b"again")
        again.none()

    def test_session_takeover_across_nodes_with_queued_qos1_v311(self):
        """A clean-session-0 client subscribed on node 1 comes back on node 2: its
        subscription and the QoS 1 messages queued for it on node 1 move with it
        [MQTT-3.1.2-4], [MQTT-4.4.0-1]; node 1's session is gone."""
        self._takeover_queued(4)

    def test_session_takeover_across_nodes_with_queued_qos1_v5(self):
        """The same with MQTT 5 clean start 0 and a Session Expiry Interval
        [MQTT-3.1.2-4], [MQTT-3.1.2-23]."""
        self._takeover_queued(5)

    def test_takeover_while_connected_moves_subscriptions(self):
        """The client is still connected on node 1 when it connects on node 2 with clean
        start 0: node 1 sends DISCONNECT 0x8E Session taken over [MQTT-3.1.4-3] and its
        subscriptions (with their options) and unacknowledged messages move to node 2."""
        a, b = self.nodes[0], self.nodes[1]
        props = [("session_expiry", 300)]
        old = RawClient(a.port, version=5)
        old.connect(client_id="roamer5", clean=False, props=props)
        # No Local (0x04) on a filter the client also publishes to.
        old.subscribe("own/#", opts=0x01 | 0x04)
        wait_route_raw = self.c(b)
        wait_route_raw.subscribe("own/#", 1)
        wait_route(a, "own/probe", wait_route_raw)
        # A message the old connection does not acknowledge: it moves as unacknowledged.
        self.c(a).publish("own/pending", b"unacked", 1)
        first = old.recv_publish(ack=False, topic="own/pending")
        self.assertEqual(first.payload, b"unacked")
        new = PahoClient(b.port, client_id="roamer5", clean=False, version=5,
                         props=paho_props("CONNECT", SessionExpiryInterval=300))
        new.connect()
        self.clients.append(new)
        old.expect_disconnect(rc=0x8E, timeout=5.0)
        m = new.get(what="the message node 1 had sent and not seen acknowledged")
        self.assertEqual(m.payload, b"unacked")
        new.none()
        # The subscription moved with its No Local option [MQTT-3.8.3-3].
        new.publish("own/self", b"mine", 1)
        self.c(a).publish("own/other", b"theirs", 1)
        self.assertEqual(new.get(what="a message from another client").payload, b"theirs")
        new.none()

    def test_mqtt5_properties_cross_nodes(self):
        """An MQTT 5 PUBLISH's properties reach a subscriber on another node unaltered:
        user properties in order [MQTT-3.3.2-17], [MQTT-3.3.2-18], content type
        [MQTT-3.3.2-20], response topic and correlation data [MQTT-3.3.2-15],
        [MQTT-3.3.2-16], payload format indicator [MQTT-3.3.2-4]; the Message Expiry
        Interval is what is left of it [MQTT-3.3.2-6]. QoS 0 and QoS 1 take different
        paths (pub/sub, stream): both carry them."""
        a, b = self.nodes[0], self.nodes[1]
        sub = PahoClient(b.port, version=5)
        sub.connect()
        self.clients.append(sub)
        sub.subscribe("props/#", 1)
        wait_route(a, "props/probe", sub)
        pub = PahoClient(a.port, version=5)
        pub.connect()
        self.clients.append(pub)
        for qos in (0, 1):
            props = paho_props("PUBLISH", UserProperty=[("k1", "v1"), ("k2", "v2"), ("k1", "v3")],
                               ContentType="text/plain", ResponseTopic="reply/here",
                               CorrelationData=b"\x00corr\xff", PayloadFormatIndicator=1,
                               MessageExpiryInterval=60)
            pub.publish("props/q%d" % qos, b"hello", qos, props=props)
            m = sub.get(what="QoS %d message with properties" % qos)
            self.assertEqual((m.topic, m.payload), ("props/q%d" % qos, b"hello"))
            p = m.properties
            self.assertEqual(p.UserProperty, [("k1", "v1"), ("k2", "v2"), ("k1", "v3")])
            self.assertEqual(p.ContentType, "text/plain")
            self.assertEqual(p.ResponseTopic, "reply/here")
            self.assertEqual(p.CorrelationData, b"\x00corr\xff")
            self.assertEqual(p.PayloadFormatIndicator, 1)
            self.assertTrue(0 < p.MessageExpiryInterval <= 60, p.MessageExpiryInterval)
        # Without properties nothing is added.
        pub.publish("props/plain", b"bare", 1)
        m = sub.get(what="message without properties")
        self.assertFalse(hasattr(m.properties, "UserProperty"))
        self.assertFalse(hasattr(m.properties, "MessageExpiryInterval"))
        sub.none()

    def test_will_reaches_other_nodes(self):
        """A client on node 1 loses its connection: its will is published [MQTT-3.1.2-8]
        to subscribers on node 2 too, with its QoS and MQTT 5 properties; a retained will
        is served as retained by node 3 [MQTT-3.1.2-17]."""
        a, b, c = self.nodes
        sub = PahoClient(b.port, version=5)
        sub.connect()
        self.clients.append(sub)
        sub.subscribe("wills/#", 1)
        wait_route(a, "wills/probe", sub)
        dying = PahoClient(a.port, client_id="dying", version=5,
                           will={"topic": "wills/dying", "payload": b"gone", "qos": 1,
                                 "retain": True,
                                 "props": paho_props("WILLMESSAGE", ContentType="text/x-will",
                                                     UserProperty=[("why", "crash")])})
        dying.connect()
        dying.drop()  # no DISCONNECT: the will goes
        m = sub.get(what="the will from node 1")
        self.assertEqual((m.topic, m.payload, m.qos), ("wills/dying", b"gone", 1))
        self.assertEqual(m.properties.ContentType, "text/x-will")
        self.assertEqual(m.properties.UserProperty, [("why", "crash")])
        sub.none()
        r = wait_until(lambda: retained_on(c, "wills/dying"), 5.0, what="retained will on n3")
        self.assertEqual((r.payload, r.retain), (b"gone", 1))

    def test_routes_resynced_after_redis_lost_its_data(self):
        """Redis replaced by an empty one (its data lost): the nodes reconnect, announce
        their routes again and recreate their streams' groups; cross-node QoS 0 and 1 work."""
        a, b = self.nodes[0], self.nodes[1]
        sub = self.c(b)
        sub.subscribe("lost/#", 1)
        wait_route(a, "lost/probe", sub)
        port = self.redis.port
        self.redis.kill()
        wait_until(lambda: "redis unavailable" in a.log_text() and
                   "redis unavailable" in b.log_text(), 5.0, what="outage seen")
        fresh = Redis()
        fresh.port = port
        self.redis = fresh.start()
        wait_until(lambda: "redis is back" in a.log_text() and "redis is back" in b.log_text(),
                   10.0, what="both nodes reconnected")
        # The resync is queued right after that line: wait for it to reach Redis.
        wait_until(lambda: b"lost/#" in self.redis.command("SMEMBERS", "midge:routes:n2"), 5.0,
                   what="n2's routes announced again")
        wait_route(a, "lost/probe", sub)
        pub = self.c(a)
        pub.publish("lost/x", b"q1", 1)
        self.assertEqual(drain_payloads(sub, 1, 5.0), [b"q1"])

    def test_shared_subscription_one_delivery_per_group_cluster_wide(self):
        """$share/g/jobs/# with a member on node 2 and one on node 3, publisher on node 1:
        each message goes to exactly one member of the group across the cluster
        [MQTT-4.8.2-3 (v5 4.8.2: one session of the group)], and both members get some."""
        a, b, c = self.nodes
        m2 = self.c(b, version=5)
        m2.subscribe("$share/g/jobs/#", 1)
        m3 = self.c(c, version=5)
        m3.subscribe("$share/g/jobs/#", 1)
        # Both members' routes reached node 1 (and each other's node: the owner choice).
        for n in (a, b, c):
            wait_until(lambda: all(
                b"$share/g/jobs/#" in self.redis.command("SMEMBERS", "midge:routes:%s" % x.node_id)
                for x in (b, c)), 5.0, what="group routes in redis")
        # The nodes' copies follow the announcements: node 1 knows both members' filter, and
        # nodes 2 and 3 each other's (the owner choice needs it).
        for node, n in ((a, 2), (b, 1), (c, 1)):
            self.wait_metrics(node, {"routes_remote": lambda v, n=n: int(v) == n})
        pub = self.c(a)
        total = 60
        for i in range(total):
            pub.publish("jobs/x", b"%d" % i, 1)
        got2 = drain_payloads(m2, total, 3.0)
        got3 = drain_payloads(m3, total, 1.0)
        both = sorted(int(p) for p in got2 + got3)
        self.assertEqual(both, list(range(total)), "each message once to the group")
        self.assertTrue(got2 and got3, "both members get a share (n2 %d, n3 %d)"
                        % (len(got2), len(got3)))

    def test_metrics_under_sys(self):
        """$SYS/broker/plugin/cluster-redis/metric/...: nodes seen, forwarded and received
        counts, redis up, and the Redis round-trip histogram."""
        a, b = self.nodes[0], self.nodes[1]
        sub = self.c(b)
        sub.subscribe("met/#", 1)
        wait_route(a, "met/probe", sub)
        pub = self.c(a)
        for i in range(5):
            pub.publish("met/x", b"%d" % i, 1)
        self.assertEqual(len(drain_payloads(sub, 5, TIMEOUT)), 5)
        self.wait_metrics(a, {"forwarded": lambda v: int(v) >= 5,
                              "nodes_seen": lambda v: int(v) == 3,
                              "redis_up": lambda v: int(v) == 1,
                              "redis_latency/count": lambda v: int(v) >= 1})
        self.wait_metrics(b, {"received": lambda v: int(v) >= 5})

    def test_redis_restarted_mid_stream(self):
        """Redis stopped while numbered QoS 1 messages flow: the nodes keep serving local
        traffic, log the outage once, buffer cross-node messages, reconnect and resync
        routes; every acknowledged message reaches the other node's subscriber."""
        a, b = self.nodes[0], self.nodes[1]
        sub = self.c(b)
        sub.subscribe("rs/#", 1)
        local = self.c(a)
        local.subscribe("rs/#", 1)
        wait_route(a, "rs/probe", sub)
        pub = self.c(a)
        total = 300
        for i in range(total):
            if i == 100:
                self.redis.stop()
                wait_until(lambda: "redis unavailable" in a.log_text(), 5.0, what="outage logged")
            if i == 200:
                self.redis.start()
            pub.publish("rs/x", b"%d" % i, 1, timeout=10)
        # The local subscriber got everything, outage or not.
        got_local = drain_payloads(local, total, 10.0)
        self.assertEqual({int(p) for p in got_local}, set(range(total)))
        got = drain_payloads(sub, total, 15.0)
        self.assertEqual(set(range(total)) - {int(p) for p in got}, set(),
                         "acknowledged messages lost across the redis restart")
        self.assertEqual(a.log_text().count("redis unavailable"), 1, "outage logged once")
        wait_until(lambda: "redis is back" in a.log_text(), 10.0, what="reconnect logged")


if __name__ == "__main__":
    unittest.main()
