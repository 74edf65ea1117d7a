"""Persistence, broker side (plugin ABI; issue 7): the event stream, acknowledgements
held until durable, refusing while storage fails, and restore at start-up.

Driven by tests/plugins/persist_test.c, which writes every event to a file, reports
durability automatically or on request (a publish to ptest/durable), and restores
from a small text file. The SQLite plugin has its own tests (test_persist_sqlite).

Ack order: [MQTT-4.6.0-2] PUBACKs are sent in the order the PUBLISHes were received.
"""

import os
import tempfile

from midgetest import (RawClient, only_midge, subscribe_packet, wait_until, PUBACK, PUBLISH, QUIET,
                       SUBACK, TIMEOUT)
from test_plugins import PluginTest, need_plugins, plug

SESSION, SESSION_END, SUB_ADD, SUB_REMOVE, RETAIN_SET, RETAIN_CLEAR, MSG_QUEUED, MSG_SENT, \
    MSG_RELEASED, MSG_DONE, QOS2_IN, QOS2_IN_DONE, WILL_SET, WILL_CLEAR = range(1, 15)


@only_midge("midge persistence hooks")
@need_plugins
class PersistCore(PluginTest):

    def start(self, durable="auto", restore=None):
        self.dir = tempfile.mkdtemp(prefix="midge-persist-")
        self.events_path = os.path.join(self.dir, "events")
        lines = [plug("persist_test"), "plugin_opt_events " + self.events_path,
                 "plugin_opt_durable " + durable]
        if restore is not None:
            path = os.path.join(self.dir, "restore")
            with open(path, "w") as f:
                f.write(restore)
            lines.append("plugin_opt_restore " + path)
        self.start_broker(lines)

    def client(self, cid, version=5, clean=True, expiry=None):
        c = RawClient(self.port, version)
        self._clients.append(c)
        props = [("session_expiry", expiry)] if expiry is not None and version == 5 else None
        c.connect(cid, clean=clean, props=props)
        return c

    def durable_until(self, ctl, client, ptype):
        """Asks for durability until `client` gets a `ptype` packet: the request may overtake
        the packet it is meant for (another connection, maybe another worker)."""
        end = __import__("time").monotonic() + TIMEOUT
        while True:
            ctl.publish("ptest/durable", b"", qos=0)
            try:
                return client.expect(ptype, timeout=0.2)
            except AssertionError:
                if __import__("time").monotonic() > end:
                    raise

    def events(self):
        out = []
        with open(self.events_path) as f:
            for line in f:
                seq, typ, client, delivery, pid, qos, topic = line.split()
                out.append((int(seq), int(typ), client, int(delivery), int(pid), int(qos), topic))
        return out

    def wait_events(self, pred, what):
        return wait_until(lambda: [e for e in self.events() if pred(e)] or None, what=what)

    def test_persistent_session_emits_events_in_order(self):
        self.start()
        c = self.client("ps1", expiry=60)
        c.subscribe("pc/t", 1)
        c.disconnect()
        self.wait_events(lambda e: e[1] == SESSION and e[2] == "ps1" and True, "session event")
        clean = self.client("clean1")  # expiry 0: never persisted
        clean.subscribe("pc/t", 1)
        pub = self.client("pub")
        for i in range(3):
            pub.publish("pc/t", b"m%d" % i, qos=1)
        queued = self.wait_events(lambda e: e[1] == MSG_QUEUED, "3 queued events")
        wait_until(lambda: len([e for e in self.events() if e[1] == MSG_QUEUED]) == 3,
                   what="3 queued events")
        ev = self.events()
        self.assertEqual([e[0] for e in ev], sorted(e[0] for e in ev), "seq order")
        self.assertFalse([e for e in ev if e[2] in ("clean1", "pub")],
                         "sessions without expiry produce no events")
        subs = [e for e in ev if e[1] == SUB_ADD]
        self.assertEqual([(e[2], e[6], e[5]) for e in subs][:1], [("ps1", "pc/t", 0)])
        queued = [e for e in ev if e[1] == MSG_QUEUED]
        self.assertEqual([(e[2], e[5], e[6]) for e in queued], [("ps1", 1, "pc/t")] * 3)
        ids = [e[3] for e in queued]
        self.assertEqual(len(set(ids)), 3)
        # The client comes back: sent with a packet id, then done when acknowledged.
        c = self.client("ps1", clean=False, expiry=60)
        got = c.recv_publishes(3)
        self.assertEqual([p.payload for p in got], [b"m0", b"m1", b"m2"])
        wait_until(lambda: {e[3] for e in self.events() if e[1] == MSG_DONE} >= set(ids),
                   what="done events for the 3 deliveries")
        sent = {e[3]: e[4] for e in self.events() if e[1] == MSG_SENT}
        self.assertEqual(set(sent), set(ids))
        self.assertEqual(sorted(sent.values()), sorted(p.pid for p in got))

    def test_suback_waits_until_the_subscription_is_durable(self):
        self.start(durable="manual")
        ctl = self.client("dur-ctl")
        s = self.client("dur-sub", expiry=60)
        pid = s.pid()
        s.send(subscribe_packet(pid, [("pd/stored", 1)], None, 5))
        self.assertRaises(AssertionError, s.expect, SUBACK, QUIET)
        self.assertEqual(self.durable_until(ctl, s, SUBACK).codes, [1])
        # A client without a persistent session gets its SUBACK at once.
        plain = self.client("dur-plain")
        plain.subscribe("pd/x", 1)

    def test_puback_waits_until_durable_and_keeps_order(self):
        self.start(durable="manual")
        ctl = self.client("dur-ctl")
        s = self.client("dur-sub", expiry=60)
        pid = s.pid()
        s.send(subscribe_packet(pid, [("pd/stored", 1)], None, 5))
        self.durable_until(ctl, s, SUBACK)
        s.disconnect()
        pub = self.client("dur-pub")
        # A QoS 1 publish for nobody persistent is acknowledged at once...
        self.assertEqual(pub.publish("pd/nobody", b"x", qos=1).rc, 0)
        # ...one stored for the offline persistent session waits for durability,
        pid1 = pub.publish("pd/stored", b"a", qos=1, wait_ack=False)
        # and a later ack must not overtake it [MQTT-4.6.0-2].
        pid2 = pub.publish("pd/nobody", b"b", qos=1, wait_ack=False)
        self.assertRaises(AssertionError, pub.expect, PUBACK, QUIET)
        a1 = self.durable_until(ctl, pub, PUBACK)
        a2 = pub.expect(PUBACK)
        self.assertEqual((a1.pid, a2.pid), (pid1, pid2))

    def test_failing_storage_refuses_qos1_and_recovers(self):
        self.start()
        ctl = self.client("f-ctl")
        v5 = self.client("f-v5")
        v3 = self.client("f-v3", version=4)
        sub = self.client("f-sub")
        sub.subscribe("pf/#", 1)
        ctl.publish("ptest/fail", b"", qos=0)
        self.broker.wait_log(lambda l: "reports failing storage" in l, what="failing logged")
        self.assertEqual(v5.publish("pf/a", b"x", qos=1).rc, 0x97)
        v3.publish("pf/b", b"x", qos=1, wait_ack=False)
        self.assertRaises(AssertionError, v3.expect, PUBACK, QUIET)
        v5.publish("pf/qos0", b"still", qos=0)
        self.assertEqual(sub.recv_publish().payload, b"still")
        ctl.publish("ptest/recover", b"", qos=0)
        self.broker.wait_log(lambda l: "storage works again" in l, what="recovery logged")
        self.assertEqual(v5.publish("pf/c", b"y", qos=1).rc, 0)
        self.assertEqual(sub.recv_publish().payload, b"y")

    def test_restore_brings_sessions_messages_and_retained_back(self):
        self.start(restore="\n".join([
            "session rs1 300 5 300",
            "sub rs1 r/# 1",
            "msg rs1 9 1 1 12 r/inflight first",
            "msg rs1 10 1 0 0 r/a hello",
            "msg rs1 11 2 0 0 r/b world",
            "retained r/ret kept",
            "qos2 rs1 7",
            "msg nobody 12 1 0 0 r/x orphan",
        ]) + "\n")
        # The plugin handed over 8 items; the broker skipped the one of an unknown session.
        self.assertIn("restore: 8 ok, 0 refused", self.broker.log_text())
        self.assertIn("restored 7 items (1 skipped)", self.broker.log_text())
        c = RawClient(self.port, 5)
        self._clients.append(c)
        ca = c.connect("rs1", clean=False, props=[("session_expiry", 300)])
        self.assertTrue(ca.session_present)
        # Inflight first, again with its packet id and DUP [MQTT-4.4.0-1], then the queue.
        first = c.recv_publish()
        self.assertEqual((first.topic, first.pid, first.dup), ("r/inflight", 12, True))
        rest = c.recv_publishes(2)
        self.assertEqual([(p.topic, p.payload, p.qos) for p in rest],
                         [("r/a", b"hello", 1), ("r/b", b"world", 2)])
        # The subscription is back: live messages arrive.
        pub = self.client("rs-pub")
        pub.publish("r/live", b"now", qos=1)
        self.assertEqual(c.recv_publish().payload, b"now")
        # The retained message is served to new subscribers.
        other = self.client("rs-other")
        other.subscribe("r/ret", 1)
        self.assertEqual(other.recv_publish().payload, b"kept")
