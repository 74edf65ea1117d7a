"""Sessions: queued messages across disconnects, expiry, clean start, queue limits."""

import time

from midgetest import BrokerTest, Broker, PUBLISH, mosquitto_deviation, only_midge, wait_until


def sess_props(v, expiry=60):
    return [("session_expiry", expiry)] if v == 5 else None


class Resume(BrokerTest):

    def _queued(self, v):
        cid = "q-%d" % v
        sub = self.raw(v, client_id=cid, clean=False, props=sess_props(v))
        sub.subscribe("sess/#", 2)
        sub.disconnect()
        pub = self.raw(v)
        pub.publish("sess/a", b"q1", qos=1)
        pub.publish("sess/b", b"q2", qos=2)
        pub.publish("sess/c", b"q0", qos=0)
        pub.publish("sess/a", b"q1-2", qos=1)
        sub = self.raw(v, connect=False)
        ca = sub.connect(cid, clean=False, props=sess_props(v))
        self.assertTrue(ca.session_present)
        got = sub.recv_publishes(3)
        self.assertEqual([(p.payload, p.qos) for p in got], [(b"q1", 1), (b"q2", 2), (b"q1-2", 1)])
        # the subscription itself is part of the session: live messages flow without SUBSCRIBE
        pub.publish("sess/live", b"live", qos=1)
        self.assertEqual(sub.recv_publish().payload, b"live", "no QoS 0 queued unless queue_qos0_messages")

    def test_queued_qos1_qos2_delivered_on_resume_v4(self):
        """CleanSession 0: QoS 1/2 messages arriving while offline are stored and delivered on resume
        [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-4.5.0-1]; QoS 0 not stored by default."""
        self._queued(4)

    def test_queued_qos1_qos2_delivered_on_resume_v5(self):
        """Session Expiry > 0: state kept after close [MQTT-3.1.2-23], resumed [MQTT-3.1.2-5], queued
        QoS 1/2 delivered [MQTT-4.5.0-1]."""
        self._queued(5)

    def test_clean_start_discards_session(self):
        """Clean session / Clean Start 1 discards queued messages and subscriptions [MQTT-3.1.2-6 (3.1.1)] [MQTT-3.1.2-4 (5.0)]."""
        for v in (4, 5):
            cid = "cs-%d" % v
            sub = self.raw(v, client_id=cid, clean=False, props=sess_props(v))
            sub.subscribe("cs/t", 1)
            sub.disconnect()
            pub = self.raw(v)
            pub.publish("cs/t", b"queued", qos=1)
            sub = self.raw(v, connect=False)
            ca = sub.connect(cid, clean=True, props=sess_props(v))
            self.assertFalse(ca.session_present)
            sub.subscribe("cs/marker", 1)
            self.assertEqual(self.marker(pub, sub, "cs/marker"), [])
            pub.publish("cs/t", b"after", qos=1)
            self.assertEqual(self.marker(pub, sub, "cs/marker"), [], "old subscription must be gone")

    def test_paho_session_resume(self):
        """paho 3.1.1 client with clean_session False gets messages queued while it was away [MQTT-3.1.2-5 (3.1.1)]."""
        c = self.paho("paho-sess", version=4, clean=False)
        c.subscribe("ps/t", 1)
        c.disconnect()
        pub = self.paho("paho-pub", version=4)
        pub.publish("ps/t", b"while away", qos=1)
        c = self.paho("paho-sess", version=4, clean=False, connect=False)
        flags, rc, _ = c.connect()
        self.assertEqual(flags.get("session present"), 1)
        self.assertEqual(c.get().payload, b"while away")


class Expiry(BrokerTest):

    def test_session_expiry_v5(self):
        """Session Expiry Interval 1 s: 2.5 s later the session is gone (Session Present 0, no
        queued messages) [MQTT-4.1.0-2] [MQTT-3.1.2-23]."""
        sub = self.raw(5, client_id="exp1", clean=False, props=[("session_expiry", 1)])
        sub.subscribe("exp/t", 1)
        sub.disconnect()
        pub = self.raw(5)
        pub.publish("exp/t", b"lost", qos=1)
        # The interval under test must pass; brokers check expiry on a timer (midge and
        # mosquitto: once a second), so allow it one more tick and some slack.
        time.sleep(2.5)
        sub = self.raw(5, connect=False)
        ca = sub.connect("exp1", clean=False, props=[("session_expiry", 60)])
        self.assertFalse(ca.session_present)
        sub.subscribe("exp/marker", 1)
        self.assertEqual(self.marker(pub, sub, "exp/marker"), [])

    def test_session_kept_within_expiry_v5(self):
        """Within the Session Expiry Interval the session is resumed [MQTT-3.1.2-23] [MQTT-3.1.2-5]."""
        sub = self.raw(5, client_id="exp5", clean=False, props=[("session_expiry", 5)])
        sub.subscribe("exp5/t", 1)
        sub.close()
        pub = self.raw(5)
        pub.publish("exp5/t", b"kept", qos=1)
        sub = self.raw(5, connect=False)
        self.assertTrue(sub.connect("exp5", clean=False, props=[("session_expiry", 5)]).session_present)
        self.assertEqual(sub.recv_publish().payload, b"kept")

    def test_disconnect_sets_session_expiry_zero(self):
        """DISCONNECT with Session Expiry Interval 0 ends the session at close (3.14.2.2.2) [MQTT-4.1.0-2]."""
        c = self.raw(5, client_id="dexp", clean=False, props=[("session_expiry", 60)])
        c.subscribe("dexp/t", 1)
        c.disconnect(0, [("session_expiry", 0)])
        c = self.raw(5, connect=False)
        ca = c.connect("dexp", clean=False, props=[("session_expiry", 60)])
        self.assertFalse(ca.session_present)

    def test_disconnect_then_reconnect_at_once(self):
        """A DISCONNECT sent before the next CONNECT counts first, though the two arrive on different
        sockets: Session Expiry 0 ends the session (3.14.2.2.2) [MQTT-4.1.0-2] and its will is discarded,
        not published by a takeover [MQTT-3.14.4-3] [MQTT-3.1.2-10]."""
        watch = self.raw(5)
        watch.subscribe("dnow/#", 0)
        for i in range(25):
            c = self.raw(5, client_id="dnow", clean=False, props=[("session_expiry", 60)],
                         will={"topic": "dnow/will", "payload": b"%d" % i})
            c.disconnect(0, [("session_expiry", 0)], wait=False)
            c = self.raw(5, connect=False)
            ca = c.connect("dnow", clean=False, props=[("session_expiry", 60)])
            self.assertFalse(ca.session_present, "round %d: session outlived DISCONNECT with expiry 0" % i)
            c.disconnect(0, [("session_expiry", 0)])
        pub = self.raw(5)
        self.assertEqual(self.marker(pub, watch, "dnow/marker"), [], "a will was published")


class QueueLimits(BrokerTest):
    CONFIG = ["max_queued_messages 3", "sys_interval 1"]

    def test_max_queued_messages(self):
        """max_queued_messages 3: an offline session keeps 3 of 6 QoS 1 messages; drops are counted in
        $SYS/broker/publish/messages/dropped (issue #3)."""
        sub = self.raw(4, client_id="qlim", clean=False)
        sub.subscribe("ql/t", 1)
        sub.disconnect()
        pub = self.raw(4)
        for i in range(6):
            pub.publish("ql/t", b"%d" % i, qos=1)
        sub = self.raw(4, connect=False)
        sub.connect("qlim", clean=False)
        got = sub.recv_publishes(3)
        sub.no_publish(0.5)
        self.assertEqual(len(got), 3)
        mon = self.raw(4)
        mon.subscribe("$SYS/broker/publish/messages/dropped", 0)

        def dropped():
            p = mon.recv_publish(timeout=3)
            return int(p.payload.split()[0]) >= 3
        wait_until(dropped, timeout=5, what="$SYS/broker/publish/messages/dropped >= 3")

    @only_midge("log format")
    def test_queue_drop_logged(self):
        """Every queue drop is logged with the client id (issue #3)."""
        sub = self.raw(4, client_id="qlog", clean=False)
        sub.subscribe("qlog/t", 1)
        sub.disconnect()
        pub = self.raw(4)
        for i in range(5):
            pub.publish("qlog/t", b"%d" % i, qos=1)
        self.broker.wait_log(lambda l: "client=qlog" in l and "drop" in l.lower(), what="drop log line with client=qlog")


class QueueBytes(BrokerTest):
    CONFIG = ["max_queued_bytes 100"]

    def test_max_queued_bytes(self):
        """max_queued_bytes 100: 5 offline messages of 60 bytes are not all kept (at least one, fewer than 5)."""
        sub = self.raw(4, client_id="qbytes", clean=False)
        sub.subscribe("qb/t", 1)
        sub.disconnect()
        pub = self.raw(4)
        for i in range(5):
            pub.publish("qb/t", b"%d" % i + b"x" * 59, qos=1)
        sub = self.raw(4, connect=False)
        sub.connect("qbytes", clean=False)
        got = []
        try:
            while True:
                got.append(sub.recv_publish(timeout=0.5))
        except AssertionError:
            pass
        self.assertTrue(1 <= len(got) < 5, "kept %d messages" % len(got))


class QueueQos0(BrokerTest):
    CONFIG = ["queue_qos0_messages true"]

    def test_queue_qos0_messages(self):
        """queue_qos0_messages true: QoS 0 messages are queued for offline sessions too (mosquitto's option)."""
        sub = self.raw(4, client_id="q0q", clean=False)
        sub.subscribe("q0q/t", 1)
        sub.disconnect()
        pub = self.raw(4)
        pub.publish("q0q/t", b"zero", qos=0)
        pub.publish("q0q/t", b"one", qos=1)
        sub = self.raw(4, connect=False)
        sub.connect("q0q", clean=False)
        got = sub.recv_publishes(2)
        self.assertEqual([(p.payload, p.qos) for p in got], [(b"zero", 0), (b"one", 1)])
