"""CONNECT / CONNACK, keep alive, takeover, first-packet rules."""

import struct
import time

from midgetest import (BrokerTest, RawClient, connect_packet, publish_packet, packet, auth_packet,
                       CONNACK, DISCONNECT, PINGREQ, PINGRESP, PUBLISH, IS_MOSQUITTO, only_midge,
                       mosquitto_deviation, paho_props, HOST, bstr, enc_props)


class ConnectBasics(BrokerTest):

    def _clean_connect(self, v):
        c = self.raw(v, connect=False)
        ca = c.connect("basic-%d" % v, clean=True)
        self.assertEqual(ca.rc, 0)
        self.assertFalse(ca.session_present)
        self.assertTrue(c.is_open())

    def test_clean_connect_v4(self):
        """CONNACK 0 with Session Present 0 on clean session [MQTT-3.2.2-1] [MQTT-3.1.4-4]."""
        self._clean_connect(4)

    def test_clean_connect_v5(self):
        """CONNACK 0x00 with Session Present 0 on clean start [MQTT-3.2.2-2] [MQTT-3.1.4-5]."""
        self._clean_connect(5)

    def test_mqtt31_connect_and_publish(self):
        """MQTT 3.1 (MQIsdp, level 3) is accepted and routes messages to a 3.1.1 subscriber."""
        sub = self.raw(4)
        sub.subscribe("v31/t", 0)
        c = self.raw(3, connect=False)
        ca = c.connect("v31client")
        self.assertEqual(ca.rc, 0)
        c.publish("v31/t", b"from 3.1")
        self.assertEqual(sub.recv_publish().payload, b"from 3.1")

    def _session_present(self, v):
        props = [("session_expiry", 60)] if v == 5 else None
        c = self.raw(v, connect=False)
        ca = c.connect("sp-%d" % v, clean=False, props=props)
        self.assertFalse(ca.session_present, "no session existed yet")
        c.disconnect()
        c = self.raw(v, connect=False)
        ca = c.connect("sp-%d" % v, clean=False, props=props)
        self.assertTrue(ca.session_present, "session must be resumed")
        c.disconnect()
        c = self.raw(v, connect=False)
        ca = c.connect("sp-%d" % v, clean=True, props=props)
        self.assertFalse(ca.session_present, "clean start discards the session")

    def test_session_present_v4(self):
        """Session Present 1 only when state exists [MQTT-3.2.2-2] [MQTT-3.2.2-3]; clean session discards it [MQTT-3.1.2-6] [MQTT-3.2.2-1]."""
        self._session_present(4)

    def test_session_present_v5(self):
        """Session Present per stored state [MQTT-3.2.2-3]; Clean Start 1 discards it [MQTT-3.1.2-4] [MQTT-3.2.2-2]."""
        self._session_present(5)

    def test_v5_no_session_expiry_ends_session(self):
        """v5 Clean Start 0 without Session Expiry Interval: the session ends with the connection
        (3.1.2.11.2; [MQTT-3.1.2-23] only keeps state when the interval is > 0)."""
        c = self.raw(5, connect=False)
        c.connect("noexp", clean=False)
        c.disconnect()
        c = self.raw(5, connect=False)
        ca = c.connect("noexp", clean=False)
        self.assertFalse(ca.session_present)

    def test_assigned_client_id_v5(self):
        """Empty ClientID: server assigns a unique one and returns it in CONNACK
        [MQTT-3.1.3-6] [MQTT-3.1.3-7] [MQTT-3.2.2-16]."""
        ids = []
        for _ in range(2):
            c = self.raw(5, connect=False)
            ca = c.connect("", clean=True)
            aid = ca.prop("assigned_client_id")
            self.assertTrue(aid, "CONNACK must carry Assigned Client Identifier: %r" % ca)
            ids.append(aid)
        self.assertNotEqual(ids[0], ids[1])

    def test_assigned_client_id_v5_paho(self):
        """paho v5 client with empty id gets an Assigned Client Identifier [MQTT-3.2.2-16]."""
        c = self.paho("", version=5)
        self.assertEqual(c.rc, 0)
        self.assertTrue(getattr(c.connack_props, "AssignedClientIdentifier", None))

    def test_empty_client_id_v4_clean(self):
        """3.1.1 zero-byte ClientId with CleanSession 1 is accepted with a unique id [MQTT-3.1.3-6]:
        two such clients do not take each other over."""
        a = self.raw(4, connect=False)
        self.assertEqual(a.connect("", clean=True).rc, 0)
        b = self.raw(4, connect=False)
        self.assertEqual(b.connect("", clean=True).rc, 0)
        self.assertTrue(a.is_open(0.5) and b.is_open(0.5))

    def test_empty_client_id_v4_persistent_rejected(self):
        """3.1.1 zero-byte ClientId with CleanSession 0: CONNACK 0x02 and close [MQTT-3.1.3-8] [MQTT-3.2.2-4] [MQTT-3.2.2-5]."""
        c = self.raw(4, connect=False)
        ca = c.connect("", clean=False, expect_rc=None)
        self.assertEqual(ca.rc, 2)
        self.assertFalse(ca.session_present)
        c.expect_closed()

    def test_paho_connect_v311(self):
        """A paho 3.1.1 client connects, subscribes and gets its own message [MQTT-3.1.4-4] [MQTT-3.8.4-1]."""
        c = self.paho("paho311", version=4)
        self.assertEqual(c.rc, 0)
        self.assertEqual(c.subscribe("paho/t", 1), (1,))
        c.publish("paho/t", b"x", qos=1)
        self.assertEqual(c.get().payload, b"x")

    def test_unsupported_protocol_level_v4(self):
        """Unsupported Protocol Level: CONNACK 0x01 (3.1.1) or 0x84 (5.0) then close
        [MQTT-3.1.2-2] (both versions)."""
        c = self.raw(4, connect=False)
        body = bstr("MQTT") + bytes([6, 0x02]) + struct.pack("!H", 60) + bstr("badlevel")
        c.send(packet(1, 0, body))
        got = c.expect_closed()
        acks = [p for p in got if p.type == CONNACK]
        self.assertTrue(acks, "expected a CONNACK before close, got %r" % got)
        self.assertIn(acks[0].body[1], (0x01, 0x84))

    @mosquitto_deviation("2.0.11 accepts a third client despite the listener's max_connections 2")
    def test_max_connections(self):
        """max_connections 2 on the listener: a third client is refused while two are connected."""
        self.broker.stop()
        from midgetest import Broker
        self.broker = Broker(["max_connections 2"]).start()
        self.port = self.broker.port
        a, b = self.raw(4), self.raw(4)
        c = RawClient(self.port, 4)
        self._clients.append(c)
        try:
            c.send(connect_packet("third"))
            got = c.expect_closed()
        except (BrokenPipeError, ConnectionResetError):
            got = []
        self.assertFalse([p for p in got if p.type == CONNACK and p.rc == 0], got)
        self.assertTrue(a.is_open() and b.is_open())

    def test_pingreq(self):
        """PINGREQ is answered with PINGRESP [MQTT-3.12.4-1] (both versions)."""
        for v in (4, 5):
            c = self.raw(v)
            c.send(packet(PINGREQ, 0, b""))
            c.expect(PINGRESP)


class Anonymous(BrokerTest):
    CONFIG = ["allow_anonymous false"]

    def test_anonymous_refused(self):
        """allow_anonymous false: CONNACK 0x05 (3.1.1) / 0x87 (5.0) then close
        [MQTT-3.2.2-5] (3.1.1) / [MQTT-3.2.2-7] (5.0)."""
        for v, rc in ((4, 5), (5, 0x87)):
            c = self.raw(v, connect=False)
            ca = c.connect("anon-%d" % v, expect_rc=None)
            self.assertEqual(ca.rc, rc)
            self.assertFalse(ca.session_present)
            c.expect_closed()


KA_DEV = "2.0.11 checks keep alive coarsely: keepalive 1 s is closed after ~6 s, not 1.5 s"


class KeepAlive(BrokerTest):

    def _keepalive(self, v):
        sub = self.raw(v)
        sub.subscribe("ka/will", 0)
        c = self.raw(v, connect=False)
        t0 = time.monotonic()
        c.connect("ka-%d" % v, keepalive=1, will={"topic": "ka/will", "payload": b"gone"})
        c.expect_closed(timeout=4)
        dt = time.monotonic() - t0
        self.assertGreaterEqual(dt, 1.0, "closed too early (%.2fs)" % dt)
        self.assertLessEqual(dt, 2.7, "closed too late (%.2fs), 1.5x keepalive is 1.5s" % dt)
        w = sub.recv_publish()
        self.assertEqual((w.topic, w.payload), ("ka/will", b"gone"))

    @mosquitto_deviation(KA_DEV)
    def test_keepalive_timeout_v4(self):
        """Silent client with keepalive 1 s is closed after 1.5x and its will is sent
        [MQTT-3.1.2-24] [MQTT-3.1.2-8]."""
        self._keepalive(4)

    @mosquitto_deviation(KA_DEV)
    def test_keepalive_timeout_v5(self):
        """Silent client with keepalive 1 s is closed after 1.5x and its will is sent
        [MQTT-3.1.2-22] [MQTT-3.1.2-8]."""
        self._keepalive(5)

    def test_keepalive_pings_keep_alive(self):
        """A client that sends PINGREQ within the keepalive stays connected [MQTT-3.1.2-23] [MQTT-3.12.4-1]."""
        c = self.raw(4, keepalive=1)
        end = time.monotonic() + 2.6
        while time.monotonic() < end:
            c.send(packet(PINGREQ, 0, b""))
            c.expect(PINGRESP, 1.0)
            time.sleep(0.4)
        self.assertTrue(c.is_open())


class ServerKeepAlive(BrokerTest):
    CONFIG = ["max_keepalive 10"]

    def test_server_keep_alive_v5(self):
        """max_keepalive 10: a v5 client asking 60 s gets Server Keep Alive 10 in CONNACK
        [MQTT-3.2.2-21] (3.2.2.3.14)."""
        c = self.raw(5, connect=False)
        ca = c.connect("ska10", keepalive=60)
        self.assertEqual(ca.prop("server_keep_alive"), 10, ca)
        c = self.raw(5, connect=False)
        ca = c.connect("ska5", keepalive=5)
        self.assertIn(ca.prop("server_keep_alive", 5), (5,), "a smaller keepalive is kept: %r" % ca)


class ServerKeepAliveEnforced(BrokerTest):
    CONFIG = ["max_keepalive 1"]

    @mosquitto_deviation("refuses max_keepalive below 10 (config), and checks keep alive coarsely")
    def test_server_keep_alive_enforced_v5(self):
        """max_keepalive 1: a v5 client asking 60 s gets Server Keep Alive 1 and the server
        enforces that value [MQTT-3.2.2-21] [MQTT-3.1.2-22] (3.2.2.3.14)."""
        c = self.raw(5, connect=False)
        t0 = time.monotonic()
        ca = c.connect("ska", keepalive=60)
        self.assertEqual(ca.prop("server_keep_alive"), 1, ca)
        c.expect_closed(timeout=4)
        self.assertLessEqual(time.monotonic() - t0, 2.7)


class FirstPacket(BrokerTest):

    def _second_connect(self, v):
        c = self.raw(v)
        c.send(connect_packet("second-%d" % v, v))
        got = c.expect_closed()
        self.assertFalse([p for p in got if p.type == CONNACK], "second CONNECT must not be acked: %r" % got)
        for p in got:
            if p.type == DISCONNECT:
                self.assertEqual(p.rc, 0x82)

    def test_second_connect_v4(self):
        """A second CONNECT is a protocol violation: disconnect [MQTT-3.1.0-2]."""
        self._second_connect(4)

    def test_second_connect_v5(self):
        """A second CONNECT is a Protocol Error: (DISCONNECT 0x82 and) close [MQTT-3.1.0-2] [MQTT-4.13.1-1]."""
        self._second_connect(5)

    def test_publish_before_connect(self):
        """First packet must be CONNECT; a PUBLISH first is closed and not delivered [MQTT-3.1.0-1] (both versions)."""
        sub = self.raw(4)
        sub.subscribe("early/t", 0)
        pub = self.raw(4)
        c = RawClient(self.port, 4)
        self._clients.append(c)
        c.send(publish_packet("early/t", b"sneaky"))
        got = c.expect_closed()
        self.assertFalse([p for p in got if p.type == CONNACK])
        before = self.marker(pub, sub, "early/t")
        self.assertEqual(before, [], "message sent before CONNECT was delivered")


class Takeover(BrokerTest):

    def _takeover(self, v):
        props = [("session_expiry", 60)] if v == 5 else None
        old = self.raw(v, client_id="dup-%d" % v, clean=False, props=props)
        old.subscribe("take/t", 1)
        new = self.raw(v, connect=False)
        ca = new.connect("dup-%d" % v, clean=False, props=props)
        self.assertTrue(ca.session_present, "takeover with clean start 0 resumes the session")
        got = old.expect_closed()
        if v == 5:
            discs = [p for p in got if p.type == DISCONNECT]
            self.assertTrue(discs, "v5 old client must get DISCONNECT 0x8E, got %r" % got)
            self.assertEqual(discs[-1].rc, 0x8E)
        pub = self.raw(4)
        pub.publish("take/t", b"after", qos=1)
        self.assertEqual(new.recv_publish().payload, b"after", "subscription must move to the new connection")

    def test_takeover_v4(self):
        """Same ClientId connects again: the existing connection is closed [MQTT-3.1.4-2]; session resumed [MQTT-3.1.2-4]."""
        self._takeover(4)

    @mosquitto_deviation("2.0.11 closes the old v5 connection without DISCONNECT 0x8E")
    def test_takeover_v5(self):
        """Same ClientID: old client gets DISCONNECT 0x8E and is closed [MQTT-3.1.4-3]; session resumed [MQTT-3.1.2-5]."""
        self._takeover(5)

    @only_midge("log format")
    def test_takeover_logged_with_client_id(self):
        """The takeover/disconnect of the old connection is logged naming client=ID."""
        old = self.raw(4, client_id="logdup")
        self.raw(4, client_id="logdup")
        old.expect_closed()
        self.broker.wait_log(lambda l: "client=logdup" in l and ("takeover" in l.lower() or "taken" in l.lower()
                                                                 or "disconnect" in l.lower() or "closed" in l.lower()),
                             what="log line about client=logdup being disconnected")


class ConnackProperties(BrokerTest):
    CONFIG = ["max_inflight_messages 7", "max_packet_size 10000", "max_topic_alias 5"]

    def test_connack_properties_v5(self):
        """CONNACK carries Receive Maximum from max_inflight_messages (3.2.2.3.3), Maximum Packet Size
        from max_packet_size (3.2.2.3.6) and Topic Alias Maximum (3.2.2.3.8) [MQTT-3.2.2-8]."""
        c = self.raw(5, connect=False)
        ca = c.connect("caprops")
        self.assertEqual(ca.prop("receive_maximum"), 7, ca)
        self.assertEqual(ca.prop("maximum_packet_size"), 10000, ca)
        self.assertEqual(ca.prop("topic_alias_maximum"), 5, ca)


class ConnackUnlimitedInflight(BrokerTest):
    CONFIG = ["max_inflight_messages 0"]

    def test_receive_maximum_unlimited(self):
        """max_inflight_messages 0 means no limit: Receive Maximum absent or 65535 (3.2.2.3.3)."""
        c = self.raw(5, connect=False)
        ca = c.connect("rmax0")
        self.assertIn(ca.prop("receive_maximum", 65535), (65535,), ca)


class Auth(BrokerTest):

    def test_connect_with_auth_method_refused(self):
        """No enhanced auth yet: CONNECT with Authentication Method gets CONNACK 0x8C and close [MQTT-4.12.0-1] [MQTT-3.2.2-7]."""
        c = self.raw(5, connect=False)
        ca = c.connect("authm", props=[("auth_method", "SCRAM-SHA-1"), ("auth_data", b"x")], expect_rc=None)
        self.assertEqual(ca.rc, 0x8C, ca)
        c.expect_closed()

    @mosquitto_deviation("2.0.11 closes without sending DISCONNECT 0x82 (a SHOULD in 4.13.1)")
    def test_auth_packet_is_protocol_error(self):
        """AUTH without an Authentication Method in CONNECT: DISCONNECT 0x82 and close (4.12, [MQTT-4.13.1-1])."""
        c = self.raw(5)
        c.send(auth_packet(0x19, [("auth_method", "SCRAM-SHA-1")]))
        c.expect_disconnect(0x82)
