"""Retained messages: set, replace, clear, Retain Handling, shared subscriptions."""

from midgetest import BrokerTest, sub_opts, IS_MOSQUITTO, mosquitto_deviation, DISCONNECT


class Retained(BrokerTest):

    def _set_replace_clear(self, v):
        pub = self.raw(v)
        pub.publish("ret/t", b"first", qos=1, retain=True)
        s1 = self.raw(v)
        s1.subscribe("ret/t", 1)
        p = s1.recv_publish()
        self.assertEqual((p.payload, p.retain, p.qos), (b"first", True, 1))
        pub.publish("ret/t", b"second", qos=1, retain=True)
        live = s1.recv_publish()
        self.assertEqual(live.payload, b"second")
        self.assertFalse(live.retain, "live delivery has RETAIN 0 (3.1.1 [MQTT-3.3.1-9]; 5.0 RAP 0 [MQTT-3.3.1-12])")
        s2 = self.raw(v)
        s2.subscribe("ret/#", 1)
        p = s2.recv_publish()
        self.assertEqual((p.payload, p.retain), (b"second", True))
        # a non-retained publish does not touch the retained message
        pub.publish("ret/t", b"transient", qos=1)
        s3 = self.raw(v)
        s3.subscribe("ret/t", 1)
        self.assertEqual(s3.recv_publish().payload, b"second")
        # clear: empty retained payload is forwarded to current subscribers, then gone
        pub.publish("ret/t", b"", qos=1, retain=True)
        cleared = s1.wait_for(lambda x: x.type == 3 and x.payload == b"", what="empty retained publish")
        self.assertEqual(cleared.topic, "ret/t")
        s4 = self.raw(v)
        s4.subscribe([("ret/t", 1), ("ret/marker", 1)])
        self.assertEqual(self.marker(pub, s4, "ret/marker"), [], "a cleared retained message is not sent")

    def test_retained_v4(self):
        """Retained set/replace/keep/clear [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8] [MQTT-3.3.1-9]
        [MQTT-3.3.1-10] [MQTT-3.3.1-11] [MQTT-3.3.1-12] (3.1.1 numbering)."""
        self._set_replace_clear(4)

    def test_retained_v5(self):
        """Retained set/replace/keep/clear [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7] [MQTT-3.3.1-8]
        [MQTT-3.3.1-9] (5.0 numbering)."""
        self._set_replace_clear(5)

    def test_retained_qos0_replaces(self):
        """A QoS 0 retained message replaces the retained message [MQTT-3.3.1-7 (3.1.1)] [MQTT-3.3.1-5 (5.0)];
        delivered at min(stored QoS, granted QoS) [MQTT-3.8.4-6]."""
        pub = self.raw(4)
        pub.publish("r0/t", b"q1", qos=1, retain=True)
        pub.publish("r0/t", b"q0", qos=0, retain=True)
        pub.publish("r0/sync", b"s", qos=1, retain=True)
        s = self.raw(4)
        s.subscribe([("r0/sync", 1)])
        s.recv_publish()
        s.subscribe("r0/t", 2)
        p = s.recv_publish()
        self.assertEqual((p.payload, p.qos), (b"q0", 0))

    def test_retained_wildcard_many(self):
        """A wildcard subscription receives every matching retained message, with RETAIN 1 [MQTT-3.3.1-6 (3.1.1)]."""
        pub = self.raw(5)
        for i in range(5):
            pub.publish("rw/%d" % i, b"%d" % i, qos=1, retain=True)
        pub.publish("other/x", b"no", qos=1, retain=True)
        s = self.raw(5)
        s.subscribe("rw/+", 1)
        got = s.recv_publishes(5)
        self.assertEqual(sorted(p.topic for p in got), ["rw/%d" % i for i in range(5)])
        self.assertTrue(all(p.retain for p in got))
        s.no_publish(0.3)

    def test_paho_retained(self):
        """paho 3.1.1 publisher and subscriber: retained message delivered with retain flag [MQTT-3.3.1-8 (3.1.1)]."""
        p = self.paho("rp", version=4)
        p.publish("pr/t", b"kept", qos=1, retain=True)
        s = self.paho("rs", version=4)
        s.subscribe("pr/t", 1)
        m = s.get()
        self.assertEqual((m.payload, m.retain), (b"kept", 1))


class RetainHandling(BrokerTest):

    def test_retain_handling(self):
        """Retain Handling 0: sent on every subscribe [MQTT-3.3.1-9] [MQTT-3.8.4-4]; 1: only if the
        subscription is new [MQTT-3.3.1-10]; 2: never [MQTT-3.3.1-11]."""
        pub = self.raw(5)
        pub.publish("rh/t", b"kept", qos=1, retain=True)
        for rh, first, again in ((0, True, True), (1, True, False), (2, False, False)):
            s = self.raw(5)
            s.subscribe("rh/marker", 1)
            s.subscribe("rh/t", opts=sub_opts(1, rh=rh))
            got = self.marker(pub, s, "rh/marker")
            self.assertEqual(len(got), 1 if first else 0, "rh=%d first subscribe: %r" % (rh, got))
            s.subscribe("rh/t", opts=sub_opts(1, rh=rh))
            got = self.marker(pub, s, "rh/marker")
            self.assertEqual(len(got), 1 if again else 0, "rh=%d re-subscribe: %r" % (rh, got))
            if got or first:
                pass

    @mosquitto_deviation("2.0.11 sends retained messages to a new shared subscription (issue #3 requires not to)")
    def test_retained_not_sent_to_shared(self):
        """Retained messages are not sent to a shared subscription when it is made (issue #3; 4.8.2 has no
        numbered statement on this)."""
        pub = self.raw(5)
        pub.publish("rs/t", b"kept", qos=1, retain=True)
        for v in (4, 5):
            s = self.raw(v)
            s.subscribe([("$share/g/rs/t", 1), ("rs/marker", 1)])
            self.assertEqual(self.marker(pub, s, "rs/marker"), [])


class RetainUnavailable(BrokerTest):
    CONFIG = ["retain_available false"]

    def test_retain_not_available(self):
        """retain_available false: CONNACK Retain Available 0 (3.2.2.3.5) and a retained PUBLISH gets
        DISCONNECT 0x9A (3.3.1.3) [MQTT-4.13.1-1]."""
        c = self.raw(5, connect=False)
        ca = c.connect("noret")
        self.assertEqual(ca.prop("retain_available"), 0, ca)
        c.publish("nr/t", b"x", qos=1, retain=True, wait_ack=False)
        c.expect_disconnect(0x9A)
