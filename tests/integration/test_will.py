"""Will messages: abnormal disconnect (kill -9 of a client process), clean DISCONNECT, v5 0x04,
Will Delay Interval, retain flag, properties, takeover."""

import os
import signal
import subprocess
import sys
import time

from midgetest import BrokerTest, PYTHON, HERE, DISCONNECT, mosquitto_deviation, sub_opts

# A separate client process: connects with a will and waits to be killed.
WILL_CLIENT = r'''
import sys, time
import paho.mqtt.client as mqtt
port, version, cid, topic, payload, qos, retain = sys.argv[1:8]
version, qos, retain = int(version), int(qos), retain == "1"
proto = mqtt.MQTTv5 if version == 5 else mqtt.MQTTv311
c = mqtt.Client(client_id=cid, protocol=proto) if version == 5 else mqtt.Client(client_id=cid, protocol=proto, clean_session=True)
c.will_set(topic, payload, qos, retain)
def on_connect(*a):
    print("connected", flush=True)
c.on_connect = on_connect
c.connect("127.0.0.1", int(port), 60)
c.loop_forever()
'''


class Will(BrokerTest):

    def _will_client(self, v, cid, topic, payload, qos=0, retain=False):
        p = self.track(subprocess.Popen([PYTHON, "-c", WILL_CLIENT, str(self.port), str(v), cid, topic, payload,
                                         str(qos), "1" if retain else "0"], stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE))
        import select
        r, _, _ = select.select([p.stdout], [], [], 5)
        self.assertTrue(r, "will client did not connect")
        self.assertEqual(p.stdout.readline().strip(), b"connected")
        return p

    def _kill9(self, v):
        sub = self.raw(v)
        sub.subscribe("will/#", 2)
        p = self._will_client(v, "willer-%d" % v, "will/%d" % v, "died", qos=1)
        p.send_signal(signal.SIGKILL)
        p.wait()
        w = sub.recv_publish()
        self.assertEqual((w.topic, w.payload, w.qos, w.retain), ("will/%d" % v, b"died", 1, False))

    def test_will_on_kill9_v4(self):
        """kill -9 of a client process: its will is published with its QoS, not retained
        [MQTT-3.1.2-8] [MQTT-3.1.2-16] (3.1.1)."""
        self._kill9(4)

    def test_will_on_kill9_v5(self):
        """kill -9 of a client process: its will is published, not retained [MQTT-3.1.2-8] [MQTT-3.1.2-14] (5.0)."""
        self._kill9(5)

    def test_will_retain_honoured(self):
        """Will Retain 1: the will is published as a retained message
        [MQTT-3.1.2-17 (3.1.1)] [MQTT-3.1.2-15 (5.0)]."""
        for v in (4, 5):
            p = self._will_client(v, "wr-%d" % v, "willr/%d" % v, "kept", qos=1, retain=True)
            live = self.raw(v)
            live.subscribe("willr/%d" % v, 1)
            p.send_signal(signal.SIGKILL)
            p.wait()
            live.recv_publish()
            late = self.raw(v)
            late.subscribe("willr/%d" % v, 1)
            w = late.recv_publish()
            self.assertEqual((w.payload, w.retain), (b"kept", True))

    def _clean_disconnect(self, v):
        sub = self.raw(v)
        sub.subscribe("wc/#", 0)
        c = self.raw(v, client_id="wc-%d" % v, will={"topic": "wc/will", "payload": b"no"})
        c.disconnect(0 if v == 5 else None)
        pub = self.raw(v)
        self.assertEqual(self.marker(pub, sub, "wc/marker"), [], "will published after a clean DISCONNECT")

    def test_no_will_on_clean_disconnect_v4(self):
        """DISCONNECT discards the will [MQTT-3.1.2-10] [MQTT-3.14.4-3] (3.1.1)."""
        self._clean_disconnect(4)

    def test_no_will_on_clean_disconnect_v5(self):
        """DISCONNECT 0x00 discards the will [MQTT-3.1.2-10] [MQTT-3.14.4-3] (5.0)."""
        self._clean_disconnect(5)

    def test_will_on_disconnect_0x04(self):
        """v5 DISCONNECT with 0x04 (Disconnect with Will Message) publishes the will (3.14.2.1) [MQTT-3.1.2-8]."""
        sub = self.raw(5)
        sub.subscribe("w4/#", 0)
        c = self.raw(5, will={"topic": "w4/will", "payload": b"asked"})
        c.disconnect(0x04)
        self.assertEqual(sub.recv_publish().payload, b"asked")

    def test_will_on_protocol_error(self):
        """A connection the server closes for a protocol error publishes the will (3.1.2.5) [MQTT-3.1.2-8]."""
        sub = self.raw(4)
        sub.subscribe("wpe/#", 0)
        c = self.raw(4, will={"topic": "wpe/will", "payload": b"bad"})
        c.send(b"\x00\x00")           # packet type 0 is reserved: malformed
        c.expect_closed()
        self.assertEqual(sub.recv_publish().payload, b"bad")

    def test_will_properties_passed(self):
        """Will properties reach subscribers unchanged, user properties in order [MQTT-3.1.3-10] [MQTT-3.3.2-17] [MQTT-3.3.2-18]."""
        sub = self.raw(5)
        sub.subscribe("wp/#", 0)
        props = [("content_type", "text/plain"), ("user_property", ("b", "2")), ("user_property", ("a", "1")),
                 ("user_property", ("b", "3")), ("response_topic", "wp/reply"), ("correlation_data", b"\x00\x01")]
        c = self.raw(5, will={"topic": "wp/will", "payload": b"p", "props": props})
        c.close()
        w = sub.recv_publish()
        self.assertEqual(w.props_all("user_property"), [("b", "2"), ("a", "1"), ("b", "3")])
        self.assertEqual(w.prop("content_type"), "text/plain")
        self.assertEqual(w.prop("response_topic"), "wp/reply")
        self.assertEqual(w.prop("correlation_data"), b"\x00\x01")


class WillDelay(BrokerTest):

    def test_will_delay(self):
        """Will Delay Interval 2 s: the will is not sent at close but after the delay [MQTT-3.1.2-8] (3.1.3.2.2)."""
        sub = self.raw(5)
        sub.subscribe("wd/#", 0)
        c = self.raw(5, client_id="wd", props=[("session_expiry", 60)],
                     will={"topic": "wd/will", "payload": b"late", "props": [("will_delay", 2)]})
        c.close()
        t0 = time.monotonic()
        sub.no_publish(1.2)
        w = sub.recv_publish(timeout=3)
        dt = time.monotonic() - t0
        self.assertEqual(w.payload, b"late")
        self.assertGreaterEqual(dt, 1.5, "will sent after %.2fs, delay is 2s" % dt)

    def test_will_delay_cancelled_by_resume(self):
        """A reconnect that resumes the session before the Will Delay passes cancels the will [MQTT-3.1.3-9] [MQTT-3.1.2-8]."""
        sub = self.raw(5)
        sub.subscribe("wdc/#", 0)
        c = self.raw(5, client_id="wdc", clean=False, props=[("session_expiry", 60)],
                     will={"topic": "wdc/will", "payload": b"never", "props": [("will_delay", 1)]})
        c.close()
        c = self.raw(5, connect=False)
        self.assertTrue(c.connect("wdc", clean=False, props=[("session_expiry", 60)]).session_present)
        sub.no_publish(1.8)

    def test_will_sent_at_session_end(self):
        """Will Delay 30 s but Session Expiry 1 s: the will is sent when the session ends (3.1.3.2.2) [MQTT-3.1.2-8]."""
        sub = self.raw(5)
        sub.subscribe("wse/#", 0)
        c = self.raw(5, client_id="wse", props=[("session_expiry", 1)],
                     will={"topic": "wse/will", "payload": b"ended", "props": [("will_delay", 30)]})
        c.close()
        t0 = time.monotonic()
        w = sub.recv_publish(timeout=3.5)
        self.assertEqual(w.payload, b"ended")
        self.assertGreaterEqual(time.monotonic() - t0, 0.7)


class TakeoverWill(BrokerTest):

    def test_takeover_resume_keeps_delayed_will_v5(self):
        """Takeover with Clean Start 0 before the Will Delay passes: old will is not sent [MQTT-3.1.3-9];
        old connection gets 0x8E [MQTT-3.1.4-3] (checked in test_connect)."""
        sub = self.raw(5)
        sub.subscribe("tw/#", 0)
        old = self.raw(5, client_id="tw", clean=False, props=[("session_expiry", 60)],
                       will={"topic": "tw/will", "payload": b"old", "props": [("will_delay", 2)]})
        new = self.raw(5, connect=False)
        self.assertTrue(new.connect("tw", clean=False, props=[("session_expiry", 60)]).session_present)
        old.expect_closed()
        sub.no_publish(2.5)

    @mosquitto_deviation("2.0.11 drops the old delayed will when a Clean Start 1 connection takes the session over")
    def test_takeover_clean_start_sends_will_v5(self):
        """Takeover with Clean Start 1 ends the old session, so the old (delayed) will is sent then
        (3.1.3.2.2: at the earlier of the delay and the session's end) [MQTT-3.1.2-8] [MQTT-3.1.2-4]."""
        sub = self.raw(5)
        sub.subscribe("twc/#", 0)
        old = self.raw(5, client_id="twc", clean=False, props=[("session_expiry", 60)],
                       will={"topic": "twc/will", "payload": b"old", "props": [("will_delay", 30)]})
        new = self.raw(5, connect=False)
        self.assertFalse(new.connect("twc", clean=True).session_present)
        old.expect_closed()
        self.assertEqual(sub.recv_publish(timeout=2).payload, b"old")

    def test_takeover_v4_publishes_old_will(self):
        """3.1.1 takeover closes the old connection without DISCONNECT, so its will is published
        [MQTT-3.1.4-2] [MQTT-3.1.2-8] (3.1.1)."""
        sub = self.raw(4)
        sub.subscribe("tw4/#", 0)
        old = self.raw(4, client_id="tw4", will={"topic": "tw4/will", "payload": b"old4"})
        self.raw(4, client_id="tw4")
        old.expect_closed()
        self.assertEqual(sub.recv_publish().payload, b"old4")
