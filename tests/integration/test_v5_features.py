"""MQTT 5 features: message expiry, topic alias, maximum packet size, payload format indicator,
property pass-through."""

import time

from midgetest import (BrokerTest, publish_packet, PUBACK, PUBREC, DISCONNECT, IS_MOSQUITTO,
                       mosquitto_deviation, paho_props)


class MessageExpiry(BrokerTest):

    def test_expired_while_offline_not_delivered(self):
        """A queued message whose Message Expiry Interval passes while the subscriber is offline is dropped
        [MQTT-3.3.2-5]; one still valid is delivered with the interval decremented [MQTT-3.3.2-6]."""
        sub = self.raw(5, client_id="mexp", clean=False, props=[("session_expiry", 60)])
        sub.subscribe("mexp/t", 1)
        sub.disconnect()
        pub = self.raw(5)
        pub.publish("mexp/t", b"short", qos=1, props=[("message_expiry", 1)])
        pub.publish("mexp/t", b"long", qos=1, props=[("message_expiry", 60)])
        time.sleep(2.1)          # let the short one expire
        sub = self.raw(5, connect=False)
        sub.connect("mexp", clean=False, props=[("session_expiry", 60)])
        p = sub.recv_publish()
        self.assertEqual(p.payload, b"long", "the expired message must not be delivered")
        exp = p.prop("message_expiry")
        self.assertIsNotNone(exp, "Message Expiry Interval must be forwarded")
        self.assertLessEqual(exp, 58, "expiry must be decremented by the ~2 s waited (got %s)" % exp)
        self.assertGreaterEqual(exp, 55)
        sub.no_publish(0.3)

    def test_expiry_forwarded_live(self):
        """A live message keeps its Message Expiry Interval (at most the sent value) [MQTT-3.3.2-6]; none when absent."""
        sub = self.raw(5)
        sub.subscribe("mexl/t", 0)
        pub = self.raw(5)
        pub.publish("mexl/t", b"a", props=[("message_expiry", 30)])
        pub.publish("mexl/t", b"b")
        a, b = sub.recv_publishes(2)
        self.assertTrue(29 <= a.prop("message_expiry") <= 30, a)
        self.assertIsNone(b.prop("message_expiry"))

    def test_retained_message_expiry(self):
        """An expired retained message is not sent to new subscribers [MQTT-3.3.2-5]."""
        pub = self.raw(5)
        pub.publish("mexr/t", b"old", qos=1, retain=True, props=[("message_expiry", 1)])
        time.sleep(1.6)
        s = self.raw(5)
        s.subscribe([("mexr/t", 1), ("mexr/marker", 1)])
        self.assertEqual(self.marker(pub, s, "mexr/marker"), [])


class TopicAlias(BrokerTest):
    CONFIG = ["max_topic_alias 10"]

    def test_inbound_topic_alias(self):
        """Alias 1 set with a topic, then used with an empty topic: delivered under the full topic to v5 and
        3.1.1 subscribers [MQTT-3.3.2-12] (3.3.2.3.4)."""
        s5 = self.raw(5)
        s5.subscribe("alias/full/topic", 0)
        s4 = self.raw(4)
        s4.subscribe("alias/full/topic", 0)
        pub = self.raw(5, connect=False)
        ca = pub.connect("aliaser")
        self.assertGreaterEqual(ca.prop("topic_alias_maximum", 0), 1, ca)
        pub.publish("alias/full/topic", b"1", props=[("topic_alias", 1)])
        pub.publish("", b"2", props=[("topic_alias", 1)])
        pub.publish("", b"3", qos=1, props=[("topic_alias", 1)])
        for s in (s5, s4):
            got = s.recv_publishes(3)
            self.assertEqual([(p.topic, p.payload) for p in got],
                             [("alias/full/topic", b"1"), ("alias/full/topic", b"2"), ("alias/full/topic", b"3")])
            if s is s5:
                self.assertTrue(all(p.prop("topic_alias") is None for p in got),
                                "subscriber did not allow aliases [MQTT-3.1.2-27]")

    def test_topic_alias_remapped(self):
        """An alias can be re-pointed to another topic (3.3.2.3.4)."""
        s = self.raw(5)
        s.subscribe("ar/#", 0)
        pub = self.raw(5)
        pub.publish("ar/one", b"a", props=[("topic_alias", 2)])
        pub.publish("ar/two", b"b", props=[("topic_alias", 2)])
        pub.publish("", b"c", props=[("topic_alias", 2)])
        self.assertEqual([p.topic for p in s.recv_publishes(3)], ["ar/one", "ar/two", "ar/two"])

    def test_topic_alias_above_maximum(self):
        """Alias above the Topic Alias Maximum: DISCONNECT 0x94 (3.3.4: "A Topic Alias value of 0 or greater than
        the Maximum Topic Alias is a Protocol Error ... 0x94") [MQTT-3.3.2-9] [MQTT-4.13.1-1]."""
        pub = self.raw(5)
        pub.publish("ab/t", b"x", props=[("topic_alias", 11)])
        pub.expect_disconnect(0x94)

    @mosquitto_deviation("2.0.11 answers alias 0 with DISCONNECT 0x81 instead of 0x94")
    def test_topic_alias_zero(self):
        """Alias 0 is not allowed: DISCONNECT 0x94 (3.3.4, same sentence as above) [MQTT-3.3.2-8]."""
        pub = self.raw(5)
        pub.publish("az/t", b"x", props=[("topic_alias", 0)])
        pub.expect_disconnect(0x94)

    def test_topic_alias_not_carried_over(self):
        """Aliases do not survive a reconnect [MQTT-3.3.2-7]: empty topic with an unknown alias is a
        Protocol Error (DISCONNECT 0x82)."""
        pub = self.raw(5, client_id="alias-rc")
        pub.publish("anc/t", b"x", props=[("topic_alias", 3)])
        pub.disconnect(0)
        pub = self.raw(5, client_id="alias-rc")
        pub.publish("", b"y", props=[("topic_alias", 3)])
        pub.expect_disconnect(0x82)


class InboundReceiveMaximum(BrokerTest):
    CONFIG = ["max_inflight_messages 2"]

    @mosquitto_deviation("2.0.11 answers the excess PUBLISH with PUBREC 0x97 instead of DISCONNECT 0x93")
    def test_client_exceeds_receive_maximum(self):
        """CONNACK Receive Maximum 2; a client with 3 unfinished QoS 2 flows (no PUBREL) exceeds it:
        DISCONNECT 0x93 (3.3.4) [MQTT-3.3.4-7] [MQTT-4.9.0-2]."""
        pub = self.raw(5, connect=False)
        self.assertEqual(pub.connect("rmx").prop("receive_maximum"), 2)
        for pid in (1, 2):
            pub.send(publish_packet("rmx/t", b"x", qos=2, pid=pid, version=5))
            pub.expect(PUBREC, pid=pid)
        pub.send(publish_packet("rmx/t", b"x", qos=2, pid=3, version=5))
        pub.expect_disconnect(0x93)


class MaxPacketSize(BrokerTest):
    CONFIG = ["max_packet_size 1000"]

    def test_client_maximum_packet_size(self):
        """Client's Maximum Packet Size 200: a larger message is skipped for it, smaller ones still delivered
        [MQTT-3.1.2-24] [MQTT-3.1.2-25]; other clients get the large one."""
        small = self.raw(5, connect=False)
        small.connect("mps", props=[("maximum_packet_size", 200)])
        small.subscribe("mps/t", 1)
        big = self.raw(5)
        big.subscribe("mps/t", 1)
        pub = self.raw(5)
        pub.publish("mps/t", b"x" * 500, qos=1)
        pub.publish("mps/t", b"small", qos=1)
        p = small.recv_publish()
        self.assertEqual(p.payload, b"small")
        self.assertEqual([len(x.payload) for x in big.recv_publishes(2)], [500, 5])
        pub.publish("mps/t", b"after", qos=1)
        self.assertEqual(small.recv_publish().payload, b"after", "skipped message treated as sent")

    def test_server_max_packet_size_v5(self):
        """Inbound PUBLISH over the broker's max_packet_size: DISCONNECT 0x95 (3.2.2.3.6) [MQTT-4.13.1-1]."""
        s = self.raw(4)
        s.subscribe("mpsb/t", 0)
        pub = self.raw(5, connect=False)
        ca = pub.connect("toobig")
        self.assertEqual(ca.prop("maximum_packet_size"), 1000)
        pub.publish("mpsb/t", b"x" * 2000, qos=1, wait_ack=False)
        pub.expect_disconnect(0x95)
        s.no_publish(0.3)

    def test_server_max_packet_size_v4(self):
        """3.1.1 client sending a PUBLISH over max_packet_size is disconnected and the message dropped."""
        s = self.raw(4)
        s.subscribe("mpsb4/t", 0)
        pub = self.raw(4)
        pub.publish("mpsb4/t", b"x" * 2000, qos=1, wait_ack=False)
        pub.expect_closed()
        s.no_publish(0.3)


class PayloadFormat(BrokerTest):

    @mosquitto_deviation("2.0.11 does not check the payload against the Payload Format Indicator (a MAY in 3.3.2.3.2; issue #3 requires it)")
    def test_invalid_utf8_with_format_indicator(self):
        """Payload Format Indicator 1 with invalid UTF-8: PUBACK 0x99 or DISCONNECT 0x99, not delivered (3.3.2.3.2)."""
        s = self.raw(5)
        s.subscribe("pfi/t", 1)
        pub = self.raw(5)
        pid = pub.pid()
        pub.send(publish_packet("pfi/t", b"\xff\xfe bad", qos=1, pid=pid, props=[("payload_format", 1)], version=5))
        r = pub.wait_for(lambda p: p.type in (PUBACK, DISCONNECT), what="PUBACK or DISCONNECT")
        self.assertEqual(r.rc, 0x99, r)
        s.no_publish(0.3)

    def test_valid_utf8_with_format_indicator(self):
        """Payload Format Indicator forwarded unaltered [MQTT-3.3.2-4]."""
        s = self.raw(5)
        s.subscribe("pfv/t", 1)
        pub = self.raw(5)
        ack = pub.publish("pfv/t", "héllo".encode(), qos=1, props=[("payload_format", 1)])
        self.assertEqual(ack.rc, 0)
        p = s.recv_publish()
        self.assertEqual((p.payload, p.prop("payload_format")), ("héllo".encode(), 1))


class Properties(BrokerTest):

    PROPS = [("payload_format", 0), ("content_type", "application/x-test"), ("response_topic", "reply/here"),
             ("correlation_data", b"\x00\xffcorr"), ("user_property", ("z", "1")), ("user_property", ("a", "2")),
             ("user_property", ("z", "3")), ("user_property", ("empty", ""))]

    def test_properties_passed_unchanged(self):
        """Content Type, Response Topic, Correlation Data, Payload Format and user properties (in order, with
        repeats) reach a v5 subscriber unchanged [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16]
        [MQTT-3.3.2-17] [MQTT-3.3.2-18] [MQTT-3.3.2-20]; a 3.1.1 subscriber gets the payload."""
        s5 = self.raw(5)
        s5.subscribe("props/t", 2)
        s4 = self.raw(4)
        s4.subscribe("props/t", 2)
        pub = self.raw(5)
        for q in (0, 1, 2):
            pub.publish("props/t", b"body", qos=q, props=self.PROPS)
            p = s5.recv_publish()
            self.assertEqual(p.props_all("user_property"), [("z", "1"), ("a", "2"), ("z", "3"), ("empty", "")])
            for name in ("content_type", "response_topic", "correlation_data", "payload_format"):
                self.assertEqual(p.prop(name), dict(self.PROPS)[name], name)
            self.assertEqual(s4.recv_publish().payload, b"body")

    def test_paho_properties(self):
        """paho v5 publisher to paho v5 subscriber: user properties and correlation data arrive [MQTT-3.3.2-16] [MQTT-3.3.2-17]."""
        s = self.paho("pp-s", version=5)
        s.subscribe("pp/t", 1)
        pub = self.paho("pp-p", version=5)
        props = paho_props("PUBLISH", UserProperty=[("k1", "v1"), ("k2", "v2")], CorrelationData=b"cd",
                           ResponseTopic="pp/r")
        pub.publish("pp/t", b"x", qos=1, props=props)
        m = s.get()
        self.assertEqual(m.properties.UserProperty, [("k1", "v1"), ("k2", "v2")])
        self.assertEqual(m.properties.CorrelationData, b"cd")
        self.assertEqual(m.properties.ResponseTopic, "pp/r")
