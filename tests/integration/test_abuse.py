"""Raw-socket abuse: malformed and hostile input. One broker for the whole class, with a steady
QoS 1 stream between two other clients that must survive everything (checked last)."""

import socket
import struct
import threading
import time
import unittest

from midgetest import (Broker, RawClient, BrokerTest, connect_packet, publish_packet, subscribe_packet, packet,
                       bstr, varint, CONNACK, DISCONNECT, PUBLISH, SUBACK, IS_MOSQUITTO, only_midge,
                       mosquitto_deviation, HOST, wait_until)


class Stream:
    """A publisher thread sending seq numbers at QoS 1 every 10 ms, and a subscriber collecting them."""

    def __init__(self, port):
        self.sub = RawClient(port, 5)
        self.sub.connect("stream-sub")
        self.sub.subscribe("stream/seq", 1)
        self.pub = RawClient(port, 4)
        self.pub.connect("stream-pub")
        self.seq = 0
        self.stop_flag = False
        self.error = None
        self.got = []
        self.t_pub = threading.Thread(target=self._publish, daemon=True)
        self.t_sub = threading.Thread(target=self._receive, daemon=True)
        self.t_pub.start()
        self.t_sub.start()

    def _publish(self):
        try:
            while not self.stop_flag:
                self.pub.publish("stream/seq", b"%d" % self.seq, qos=1)
                self.seq += 1
                time.sleep(0.01)
        except Exception as e:  # noqa
            self.error = "publisher: %r" % e

    def _receive(self):
        try:
            while True:
                p = self.sub.recv_publish(timeout=30)
                self.got.append(int(p.payload))
        except Exception as e:  # noqa
            if not self.stop_flag:
                self.error = "subscriber: %r" % e

    def finish(self):
        self.stop_flag = True
        self.t_pub.join(5)
        sent = self.seq
        wait_until(lambda: len(self.got) >= sent, timeout=5, what="stream to catch up (%d sent)" % sent)
        return sent


class Abuse(unittest.TestCase):
    """Tests run in name order; test_zz_* checks the broker and the stream at the end."""

    @classmethod
    def setUpClass(cls):
        cls.broker = Broker(["connect_timeout 1", "max_packet_size 100000"]).start()
        cls.port = cls.broker.port
        cls.stream = Stream(cls.port)

    @classmethod
    def tearDownClass(cls):
        cls.stream.stop_flag = True
        for c in (cls.stream.pub, cls.stream.sub):
            c.close()
        cls.broker.stop()

    def setUp(self):
        self._clients = []
        self._broker_log = None

    def tearDown(self):
        for c in self._clients:
            c.close()
        self._broker_log = self.broker.log_text()

    def raw(self, version=4, connect=True, client_id=None):
        c = RawClient(self.port, version)
        self._clients.append(c)
        if connect:
            c.connect(client_id or "abuse-%d" % id(c))
        return c

    def closes(self, c, data, v5_rc=None, timeout=3):
        """Send data; the broker must close (v5: optionally after DISCONNECT v5_rc); never CONNACK 0 after."""
        try:
            c.send(data)
        except (BrokenPipeError, ConnectionResetError):
            return []
        got = c.expect_closed(timeout)
        if v5_rc is not None and c.version == 5:
            d = [p for p in got if p.type == DISCONNECT]
            if d:
                want = v5_rc if isinstance(v5_rc, tuple) else (v5_rc,)
                self.assertIn(d[-1].rc, want, got)
        return got

    def test_garbage_before_connect(self):
        """Random bytes instead of CONNECT: closed without CONNACK [MQTT-3.1.0-1] [MQTT-3.1.4-1]."""
        c = self.raw(connect=False)
        got = self.closes(c, bytes(range(256)) * 4)
        self.assertFalse([p for p in got if p.type == CONNACK and p.rc == 0])

    def test_garbage_after_connect(self):
        """Reserved packet type 0 after CONNECT: closed (3.1.1 [MQTT-4.8.0-1]; 5.0 DISCONNECT 0x81/0x82 [MQTT-4.13.1-1])."""
        for v in (4, 5):
            self.closes(self.raw(v), b"\x00\x05hello", v5_rc=(0x81, 0x82))

    def test_truncated_packets(self):
        """Half a CONNECT, half a PUBLISH, then the socket closes: the broker survives (no reply needed)."""
        c = self.raw(connect=False)
        c.send(connect_packet("trunc")[:7])
        c.close()
        c = self.raw()
        c.send(publish_packet("t/x", b"y" * 100, qos=1, pid=1)[:40])
        c.close()
        self.assertTrue(self.raw().is_open(1))

    def test_remaining_length_too_big(self):
        """Remaining length 268435456 (FF FF FF FF 01, five bytes) is malformed: disconnect
        (3.1.1 2.2.3 [MQTT-4.8.0-1]; 5.0 1.5.5 / DISCONNECT 0x81 [MQTT-4.13.1-1])."""
        for v in (4, 5):
            self.closes(self.raw(v), b"\x30\xff\xff\xff\xff\x01" + b"x" * 64, v5_rc=0x81)
        self.closes(self.raw(connect=False), b"\x10\xff\xff\xff\xff\x01")

    def test_huge_declared_length_not_sent(self):
        """A PUBLISH declaring 200 MB (over max_packet_size) is refused without waiting for the body
        (3.2.2.3.6; v5 DISCONNECT 0x95)."""
        for v in (4, 5):
            self.closes(self.raw(v), b"\x30" + varint(200 * 1024 * 1024) + b"\x00\x03a/b", v5_rc=0x95)

    @only_midge("connect_timeout is a midge option")
    def test_connect_never_finishes(self):
        """A socket that never completes CONNECT is closed after connect_timeout (1 s here)."""
        c = self.raw(connect=False)
        t0 = time.monotonic()
        c.send(connect_packet("slow")[:5])
        c.expect_closed(timeout=4)
        self.assertLess(time.monotonic() - t0, 3.5)
        c = self.raw(connect=False)        # nothing at all
        c.expect_closed(timeout=4)

    def test_second_connect(self):
        """A second CONNECT is a protocol violation: close [MQTT-3.1.0-2]."""
        for v in (4, 5):
            got = self.closes(self.raw(v), connect_packet("again", v), v5_rc=0x82)
            self.assertFalse([p for p in got if p.type == CONNACK])

    def test_publish_before_connect(self):
        """PUBLISH as the first packet: close [MQTT-3.1.0-1]."""
        got = self.closes(self.raw(connect=False), publish_packet("x/y", b"z"))
        self.assertFalse([p for p in got if p.type in (CONNACK, PUBLISH)])

    def test_invalid_utf8_topic(self):
        """Ill-formed UTF-8 in a topic: close (3.1.1 [MQTT-1.5.3-1]; 5.0 [MQTT-1.5.4-1], DISCONNECT 0x81)."""
        for v in (4, 5):
            for bad in (b"a/\xff", b"a/\xc0\x80", b"\xed\xa0\x80"):
                body = struct.pack("!H", len(bad)) + bad + (b"\x00" if v == 5 else b"") + b"payload"
                self.closes(self.raw(v), packet(3, 0, body), v5_rc=0x81)

    def test_null_in_topic(self):
        """U+0000 in a topic: close (3.1.1 [MQTT-1.5.3-2] [MQTT-4.7.3-2]; 5.0 [MQTT-1.5.4-2] [MQTT-4.7.3-2])."""
        for v in (4, 5):
            self.closes(self.raw(v), publish_packet("a/\x00b", b"x", version=v), v5_rc=0x81)

    def test_wildcard_in_publish_topic(self):
        """Wildcards in a PUBLISH topic: close (3.1.1 [MQTT-3.3.2-2] [MQTT-4.7.1-1]; 5.0 [MQTT-3.3.2-2]
        [MQTT-4.7.0-1], DISCONNECT 0x90 Topic Name invalid or 0x82)."""
        for v in (4, 5):
            for t in ("a/+/b", "a/#", "#"):
                self.closes(self.raw(v), publish_packet(t, b"x", version=v), v5_rc=(0x90, 0x82))

    def test_empty_topic(self):
        """Zero-length topic without alias: close (3.1.1 [MQTT-4.7.3-1]; 5.0 3.3.4, DISCONNECT 0x82)."""
        self.closes(self.raw(4), publish_packet("", b"x"))
        self.closes(self.raw(5), publish_packet("", b"x", version=5), v5_rc=0x82)

    def test_qos3_publish(self):
        """PUBLISH with both QoS bits set: close [MQTT-3.3.1-4] (both versions)."""
        for v in (4, 5):
            self.closes(self.raw(v), packet(3, 0x06, bstr("q/3") + b"\x00\x01" + (b"\x00" if v == 5 else b"")),
                        v5_rc=0x81)

    def test_packet_id_zero(self):
        """QoS 1 PUBLISH with packet id 0: close (3.1.1 [MQTT-2.3.1-1]; 5.0 [MQTT-2.2.1-3])."""
        for v in (4, 5):
            self.closes(self.raw(v), publish_packet("pid/0", b"x", qos=1, pid=0, version=v), v5_rc=(0x81, 0x82))

    def test_subscribe_reserved_flags(self):
        """SUBSCRIBE with fixed-header flags 0000: malformed, close [MQTT-3.8.1-1] (3.1.1 [MQTT-2.2.2-2])."""
        for v in (4, 5):
            body = struct.pack("!H", 1) + (b"\x00" if v == 5 else b"") + bstr("s/r") + b"\x00"
            self.closes(self.raw(v), packet(8, 0, body), v5_rc=0x81)

    @mosquitto_deviation("2.0.11 answers an empty SUBSCRIBE with DISCONNECT 0x81, the spec says Protocol Error (0x82)")
    def test_subscribe_without_filters(self):
        """SUBSCRIBE with no topic filter: close (3.1.1 [MQTT-3.8.3-3]; 5.0 [MQTT-3.8.3-2], "a SUBSCRIBE
        packet with no Payload is a Protocol Error": DISCONNECT 0x82)."""
        for v in (4, 5):
            self.closes(self.raw(v), subscribe_packet(1, [], version=v), v5_rc=0x82)

    def test_subscribe_reserved_option_bits(self):
        """Subscription options with reserved bits set: malformed (3.1.1 [MQTT-3.8.3-4]; 5.0 [MQTT-3.8.3-5])."""
        for v in (4, 5):
            self.closes(self.raw(v), subscribe_packet(1, [("s/o", 0xC0)], version=v), v5_rc=0x81)

    def test_connect_reserved_flag(self):
        """CONNECT with the reserved flag bit set: close without CONNACK 0 [MQTT-3.1.2-3] (both versions)."""
        for v in (4, 5):
            data = bytearray(connect_packet("resflag", v))
            data[9] |= 0x01      # connect flags byte: fixed(2) + "MQTT"(6) + level(1)
            got = self.closes(self.raw(v, connect=False), bytes(data))
            self.assertFalse([p for p in got if p.type == CONNACK and p.rc == 0])

    def test_duplicate_property(self):
        """v5 CONNECT with Session Expiry Interval twice: Protocol Error, no successful CONNACK (2.2.2.2)."""
        got = self.closes(self.raw(5, connect=False),
                          connect_packet("dupprop", 5, props=[("session_expiry", 1), ("session_expiry", 2)]))
        self.assertFalse([p for p in got if p.type == CONNACK and p.rc == 0])

    def test_bad_protocol_name(self):
        """Protocol name not 'MQTT': close without CONNACK 0 (3.1.1 [MQTT-3.1.2-1]; 5.0 [MQTT-3.1.2-1])."""
        data = packet(1, 0, bstr("MQTX") + bytes([4, 2]) + struct.pack("!H", 60) + bstr("pn"))
        got = self.closes(self.raw(connect=False), data)
        self.assertFalse([p for p in got if p.type == CONNACK and p.rc == 0])

    def test_connection_churn(self):
        """200 connections opened and dropped quickly, some mid-CONNECT: the broker keeps serving."""
        for i in range(200):
            s = socket.create_connection((HOST, self.port), timeout=2)
            if i % 3 == 1:
                s.sendall(connect_packet("churn-%d" % i)[: (i % 11) + 1])
            elif i % 3 == 2:
                s.sendall(connect_packet("churn-%d" % i))
            s.close()
        self.assertTrue(self.raw().is_open(1))

    def test_zz_broker_survived_and_stream_intact(self):
        """After all abuse: broker still running, new clients served, and the QoS 1 stream between two other
        clients lost nothing and stayed in order [MQTT-4.6.0-6]."""
        self.assertTrue(self.broker.alive(), "broker process died")
        before = len(self.stream.got)
        wait_until(lambda: len(self.stream.got) >= before + 10, timeout=3, what="stream still flowing")
        sent = self.stream.finish()
        self.assertIsNone(self.stream.error)
        self.assertEqual(self.stream.got[:sent], list(range(sent)), "stream lost or reordered messages")
        self.assertGreaterEqual(sent, 10)
