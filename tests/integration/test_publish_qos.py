"""PUBLISH flows for QoS 0/1/2 in both directions, checked at the packet level."""

import time

from midgetest import (BrokerTest, publish_packet, ack_packet, PUBLISH, PUBACK, PUBREC, PUBREL,
                       PUBCOMP, PINGREQ, PINGRESP, packet, mosquitto_deviation)


class QoSFlows(BrokerTest):

    def _qos0(self, v):
        sub = self.raw(v)
        sub.subscribe("q0/t", 2)
        pub = self.raw(v)
        pub.publish("q0/t", b"zero", qos=0)
        p = sub.recv_publish()
        self.assertEqual((p.topic, p.payload, p.qos, p.dup, p.retain), ("q0/t", b"zero", 0, False, False))

    def test_qos0_v4(self):
        """QoS 0 is delivered at QoS 0 with DUP 0 [MQTT-3.3.1-2] [MQTT-4.3.1-1]."""
        self._qos0(4)

    def test_qos0_v5(self):
        """QoS 0 is delivered at QoS 0 with DUP 0 [MQTT-3.3.1-2] [MQTT-4.3.1-1]."""
        self._qos0(5)

    def _qos1(self, v):
        sub = self.raw(v)
        sub.subscribe("q1/t", 1)
        pub = self.raw(v)
        pub.send(publish_packet("q1/t", b"one", qos=1, pid=4242, version=v))
        ack = pub.expect(PUBACK)
        self.assertEqual(ack.pid, 4242, "PUBACK must carry the PUBLISH packet id")
        self.assertEqual(ack.rc, 0)
        p = sub.recv_publish(ack=False)
        self.assertEqual((p.payload, p.qos, p.dup), (b"one", 1, False))
        self.assertNotEqual(p.pid, 0)
        sub.ack(p)
        # after PUBACK the same packet id is a new message [MQTT-4.3.2-5 (5.0)]
        pub.send(publish_packet("q1/t", b"two", qos=1, pid=4242, version=v))
        self.assertEqual(pub.expect(PUBACK).pid, 4242)
        self.assertEqual(sub.recv_publish().payload, b"two")

    def test_qos1_v4(self):
        """QoS 1 both ways: PUBACK with the packet id [MQTT-4.3.2-2]; delivered with QoS 1, DUP 0, non-zero id
        [MQTT-4.3.2-1] [MQTT-2.3.1-1]."""
        self._qos1(4)

    def test_qos1_v5(self):
        """QoS 1 both ways: PUBACK with the packet id [MQTT-4.3.2-4]; delivered with QoS 1, DUP 0
        [MQTT-4.3.2-1] [MQTT-4.3.2-2]; a reused id after PUBACK is a new message [MQTT-4.3.2-5]."""
        self._qos1(5)

    def _qos2_in(self, v):
        sub = self.raw(v)
        sub.subscribe("q2/t", 2)
        pub = self.raw(v)
        pub.send(publish_packet("q2/t", b"exactly-once", qos=2, pid=77, version=v))
        self.assertEqual(pub.expect(PUBREC).pid, 77)
        # resend before PUBREL, with DUP: PUBREC again, no second delivery
        pub.send(publish_packet("q2/t", b"exactly-once", qos=2, pid=77, dup=True, version=v))
        self.assertEqual(pub.expect(PUBREC).pid, 77)
        pub.send(ack_packet(PUBREL, 77, version=v))
        self.assertEqual(pub.expect(PUBCOMP).pid, 77)
        got = self.marker(pub, sub, "q2/t")
        self.assertEqual([p.payload for p in got], [b"exactly-once"], "QoS 2 message delivered %d times" % len(got))
        # after PUBCOMP the id is free: a new publication [MQTT-4.3.3-12 (5.0)]
        pub.publish("q2/t", b"again", qos=2, pid=77)
        self.assertEqual(sub.recv_publish().payload, b"again")

    def test_qos2_inbound_exactly_once_v4(self):
        """QoS 2 from a client: PUBREC, duplicate PUBLISH before PUBREL gets PUBREC and is not delivered twice,
        PUBREL -> PUBCOMP [MQTT-4.3.3-2] [MQTT-3.3.4-1]."""
        self._qos2_in(4)

    def test_qos2_inbound_exactly_once_v5(self):
        """QoS 2 from a client: [MQTT-4.3.3-8] [MQTT-4.3.3-10] (no duplicate onward delivery)
        [MQTT-4.3.3-11] [MQTT-4.3.3-12]."""
        self._qos2_in(5)

    def _qos2_out(self, v):
        sub = self.raw(v)
        sub.auto_pubcomp = False
        sub.subscribe("q2o/t", 2)
        pub = self.raw(v)
        pub.publish("q2o/t", b"two", qos=2)
        p = sub.recv_publish(ack=False)
        self.assertEqual((p.qos, p.dup, p.payload), (2, False, b"two"))
        sub.send(ack_packet(PUBREC, p.pid, version=v))
        rel = sub.expect(PUBREL)
        self.assertEqual(rel.pid, p.pid)
        self.assertEqual(rel.flags, 0x2, "PUBREL fixed header flags must be 0010 [MQTT-3.6.1-1]")
        sub.send(ack_packet(PUBCOMP, p.pid, version=v))
        self.assertTrue(sub.is_open())
        sub.no_publish(0.3)

    def test_qos2_outbound_v4(self):
        """QoS 2 to a subscriber: PUBLISH QoS 2 DUP 0, PUBREC -> PUBREL (flags 0010) -> PUBCOMP
        [MQTT-4.3.3-1] [MQTT-3.6.1-1]."""
        self._qos2_out(4)

    def test_qos2_outbound_v5(self):
        """QoS 2 to a subscriber [MQTT-4.3.3-1] [MQTT-4.3.3-2] [MQTT-4.3.3-3] [MQTT-4.3.3-4] [MQTT-4.3.3-5] [MQTT-3.6.1-1]."""
        self._qos2_out(5)

    def _downgrade(self, v):
        pub = self.raw(v)
        for sq in (0, 1, 2):
            sub = self.raw(v)
            sub.subscribe("dg/t", sq)
            for pq in (0, 1, 2):
                pub.publish("dg/t", b"p%d" % pq, qos=pq)
                p = sub.recv_publish()
                self.assertEqual(p.qos, min(sq, pq), "sub QoS %d, pub QoS %d" % (sq, pq))
            sub.disconnect()

    def test_downgrade_to_granted_qos_v4(self):
        """Delivered QoS is min(published QoS, granted QoS) [MQTT-3.8.4-6] [MQTT-3.3.5-1]."""
        self._downgrade(4)

    def test_downgrade_to_granted_qos_v5(self):
        """Delivered QoS is min(published QoS, granted QoS) [MQTT-3.8.4-8] [MQTT-3.3.4-2]."""
        self._downgrade(5)

    def test_dup_not_propagated(self):
        """DUP from the publisher is not forwarded; outgoing DUP is set independently [MQTT-3.3.1-3] (both versions)."""
        for v in (4, 5):
            sub = self.raw(v)
            sub.subscribe("dup/t", 1)
            pub = self.raw(v)
            pub.send(publish_packet("dup/t", b"d", qos=1, pid=9, dup=True, version=v))
            pub.expect(PUBACK)
            p = sub.recv_publish()
            self.assertFalse(p.dup)

    def _ordering(self, v):
        sub = self.raw(v)
        sub.subscribe("ord/#", 2)
        pub = self.raw(v)
        n = 20      # pipelined, within the broker's Receive Maximum [MQTT-3.3.4-7]
        if v == 5:
            n = min(n, pub.connack.prop("receive_maximum", 65535))
        for q in (0, 1, 2):
            pids = []
            for i in range(n):
                pid = pub.pid() if q else None
                pub.send(publish_packet("ord/q%d" % q, b"%d" % i, qos=q, pid=pid, version=v))
                if q:
                    pids.append(pid)
            for pid in pids:        # acks after all sends: the publishes were pipelined
                if q == 1:
                    pub.expect(PUBACK, pid=pid)
                else:
                    pub.expect(PUBREC, pid=pid)
                    pub.send(ack_packet(PUBREL, pid, version=v))
                    pub.expect(PUBCOMP, pid=pid)
            got = sub.recv_publishes(n, timeout=5)
            self.assertEqual([p.payload for p in got], [b"%d" % i for i in range(n)], "QoS %d order" % q)
            self.assertTrue(all(p.qos == q for p in got))

    def test_ordering_v4(self):
        """Messages on one topic at one QoS arrive in the order published [MQTT-4.6.0-5] [MQTT-4.6.0-6]."""
        self._ordering(4)

    def test_ordering_v5(self):
        """Messages on one topic at one QoS arrive in the order published [MQTT-4.6.0-5] [MQTT-4.6.0-6]."""
        self._ordering(5)

    def test_fanout_across_workers(self):
        """One publisher, 8 subscribers (spread over worker threads): all get all 50 messages in order
        [MQTT-4.5.0-1] [MQTT-4.6.0-6]."""
        subs = []
        for i in range(8):
            s = self.raw(4 if i % 2 else 5)
            s.subscribe("fan/t", 1)
            subs.append(s)
        pub = self.raw(5)
        for i in range(50):
            pub.publish("fan/t", b"%d" % i, qos=1, wait_ack=False)
        for s in subs:
            got = s.recv_publishes(50, timeout=5)
            self.assertEqual([p.payload for p in got], [b"%d" % i for i in range(50)])


class InflightWindow(BrokerTest):

    @mosquitto_deviation("2.0.11 sends two more PUBLISH after one PUBACK (3 unacked with Receive Maximum 2)")
    def test_receive_maximum_bounds_inflight_v5(self):
        """A v5 client with Receive Maximum 2 that does not ack gets at most 2 unacked QoS 1 PUBLISH;
        each PUBACK releases one more [MQTT-3.3.4-9]; other packets are not delayed [MQTT-3.3.4-10]."""
        sub = self.raw(5, connect=False)
        sub.connect("rm2", props=[("receive_maximum", 2)])
        sub.subscribe("rm/t", 1)
        pub = self.raw(5)
        for i in range(5):
            pub.publish("rm/t", b"%d" % i, qos=1)
        first = sub.recv_publishes(2, ack=False)
        self.assertEqual([p.payload for p in first], [b"0", b"1"])
        sub.no_publish(QUIET_WINDOW)
        sub.send(packet(PINGREQ, 0, b""))
        sub.expect(PINGRESP)
        sub.ack(first[0])
        third = sub.recv_publish(ack=False)
        self.assertEqual(third.payload, b"2")
        sub.no_publish(QUIET_WINDOW)
        sub.ack(first[1])
        sub.ack(third)
        rest = sub.recv_publishes(2)
        self.assertEqual([p.payload for p in rest], [b"3", b"4"])

    def test_receive_maximum_qos2_v5(self):
        """Receive Maximum counts QoS 2 until PUBCOMP [MQTT-3.3.4-9]."""
        sub = self.raw(5, connect=False)
        sub.connect("rm1q2", props=[("receive_maximum", 1)])
        sub.subscribe("rm2/t", 2)
        pub = self.raw(5)
        for i in range(3):
            pub.publish("rm2/t", b"%d" % i, qos=2)
        p = sub.recv_publish(ack=False)
        sub.no_publish(QUIET_WINDOW)
        sub.auto_pubcomp = False
        sub.send(ack_packet(PUBREC, p.pid, version=5))
        rel = sub.expect(PUBREL)
        sub.no_publish(0.3)          # still inflight until PUBCOMP
        sub.send(ack_packet(PUBCOMP, rel.pid, version=5))
        sub.auto_pubcomp = True
        self.assertEqual(sub.recv_publish().payload, b"1")


QUIET_WINDOW = 0.5


class Redelivery(BrokerTest):

    def _resend(self, v, qos):
        props = [("session_expiry", 60)] if v == 5 else None
        cid = "resend-%d-%d" % (v, qos)
        sub = self.raw(v, client_id=cid, clean=False, props=props)
        sub.subscribe("rs/t", qos)
        pub = self.raw(v)
        pub.publish("rs/t", b"unacked", qos=qos)
        p = sub.recv_publish(ack=False)
        self.assertFalse(p.dup)
        sub.close()                 # no PUBACK/PUBREC, no DISCONNECT
        sub = self.raw(v, connect=False)
        ca = sub.connect(cid, clean=False, props=props)
        self.assertTrue(ca.session_present)
        again = sub.recv_publish()
        self.assertEqual((again.payload, again.pid, again.qos), (b"unacked", p.pid, qos))
        self.assertTrue(again.dup, "re-delivery must have DUP 1 [MQTT-3.3.1-1]")

    def test_resend_qos1_on_reconnect_v4(self):
        """Unacked QoS 1 re-sent on reconnect with the same packet id and DUP 1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]."""
        self._resend(4, 1)

    def test_resend_qos1_on_reconnect_v5(self):
        """Unacked QoS 1 re-sent on reconnect with the same packet id and DUP 1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]."""
        self._resend(5, 1)

    def test_resend_qos2_on_reconnect_v4(self):
        """Unacked QoS 2 PUBLISH re-sent on reconnect with DUP 1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]."""
        self._resend(4, 2)

    def test_resend_qos2_on_reconnect_v5(self):
        """Unacked QoS 2 PUBLISH re-sent on reconnect with DUP 1 [MQTT-4.4.0-1] [MQTT-3.3.1-1]."""
        self._resend(5, 2)

    def _resend_pubrel(self, v):
        props = [("session_expiry", 60)] if v == 5 else None
        cid = "resendrel-%d" % v
        sub = self.raw(v, client_id=cid, clean=False, props=props)
        sub.auto_pubcomp = False
        sub.subscribe("rsr/t", 2)
        pub = self.raw(v)
        pub.publish("rsr/t", b"x", qos=2)
        p = sub.recv_publish(ack=False)
        sub.send(ack_packet(PUBREC, p.pid, version=v))
        sub.expect(PUBREL)
        sub.close()                 # no PUBCOMP
        sub = self.raw(v, connect=False)
        sub.auto_pubcomp = False
        sub.connect(cid, clean=False, props=props)
        rel = sub.wait_for(lambda x: x.type in (PUBREL, PUBLISH), what="PUBREL")
        self.assertEqual((rel.type, rel.pid), (PUBREL, p.pid), "PUBREL must be re-sent, not the PUBLISH [MQTT-4.3.3-6 (5.0)]")
        sub.send(ack_packet(PUBCOMP, p.pid, version=v))
        sub.no_publish(0.3)

    def test_resend_pubrel_on_reconnect_v4(self):
        """Unacknowledged PUBREL re-sent on reconnect with the original id [MQTT-4.4.0-1]."""
        self._resend_pubrel(4)

    def test_resend_pubrel_on_reconnect_v5(self):
        """Unacknowledged PUBREL re-sent on reconnect [MQTT-4.4.0-1] [MQTT-4.3.3-6]."""
        self._resend_pubrel(5)

    def test_inbound_qos2_state_survives_reconnect(self):
        """Client's QoS 2 PUBLISH acked with PUBREC, client reconnects and sends PUBREL: PUBCOMP, delivered once
        [MQTT-4.4.0-1] [MQTT-4.3.3-2 (3.1.1)] [MQTT-4.3.3-10 (5.0)]."""
        sub = self.raw(4)
        sub.subscribe("in2/t", 2)
        pub = self.raw(4, client_id="in2pub", clean=False)
        pub.send(publish_packet("in2/t", b"once", qos=2, pid=11))
        pub.expect(PUBREC)
        pub.close()
        pub = self.raw(4, connect=False)
        self.assertTrue(pub.connect("in2pub", clean=False).session_present)
        pub.send(ack_packet(PUBREL, 11))
        self.assertEqual(pub.expect(PUBCOMP).pid, 11)
        got = self.marker(pub, sub, "in2/t")
        self.assertEqual([p.payload for p in got], [b"once"])
