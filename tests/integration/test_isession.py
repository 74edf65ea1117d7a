"""Internal sessions (plugin ABI, issue 4): a plugin-owned MQTT session with its
own subscriptions, inflight window and queue, as a bridge uses it.

Driven by tests/plugins/isession.c (see its header comment): it opens session
"isess-bridge", subscribes to isess/in/# (no local) and isess/ctl/#, republishes
every isess/in/X as isess/out/X, and reports each delivery on isess/delivered
as "ID DUP QOS TOPIC".
"""

import signal
import unittest

from midgetest import RawClient, only_midge, wait_until, CONNACK, QUIET, TIMEOUT
from test_plugins import PluginTest, need_plugins, plug


def reports(watcher, n, timeout=TIMEOUT):
    """The next n isess/delivered reports as (id, dup, qos, topic)."""
    out = []
    for p in watcher.recv_publishes(n, timeout=timeout):
        i, dup, qos, topic = p.payload.decode().split(" ", 3)
        out.append((int(i), int(dup), int(qos), topic))
    return out


@only_midge("midge plugin ABI")
@need_plugins
class InternalSession(PluginTest):

    def start(self, ack="now", window=2):
        self.start_broker([plug("isession"), "plugin_opt_ack " + ack,
                           "plugin_opt_window %d" % window])
        self.broker.wait_log(lambda l: "opened internal session isess-bridge present=0" in l,
                             what="the internal session opening")
        self.watcher = RawClient(self.port, 5)
        self._clients.append(self.watcher)
        self.watcher.connect("watcher")
        self.watcher.subscribe("isess/delivered", 0)
        self.pub = RawClient(self.port, 5)
        self._clients.append(self.pub)
        self.pub.connect("publisher")

    def test_messages_flow_through_the_session_in_order(self):
        self.start()
        sub = RawClient(self.port, 5)
        self._clients.append(sub)
        sub.connect("sub")
        sub.subscribe("isess/out/#", 1)
        for i in range(6):
            self.pub.publish("isess/in/m%d" % i, b"%d" % i, qos=1)
        got = sub.recv_publishes(6)
        self.assertEqual([p.topic for p in got], ["isess/out/m%d" % i for i in range(6)])
        self.assertEqual([p.payload for p in got], [b"%d" % i for i in range(6)])
        seen = reports(self.watcher, 6)
        self.assertEqual([r[3] for r in seen], ["isess/in/m%d" % i for i in range(6)])
        self.assertTrue(all(r[2] == 1 and r[0] != 0 and r[1] == 0 for r in seen), seen)
        # The session republished each message to isess/in/... itself: no local keeps it
        # from being delivered to the session again (it would loop otherwise).
        self.watcher.no_publish(QUIET)

    def test_window_limits_unacknowledged_messages(self):
        self.start(ack="hold", window=2)
        for i in range(5):
            self.pub.publish("isess/in/w%d" % i, b"x", qos=1)
        first = reports(self.watcher, 2)
        self.assertEqual([r[3] for r in first], ["isess/in/w0", "isess/in/w1"])
        self.watcher.no_publish(QUIET)  # the window is full
        self.pub.publish("isess/ctl/ack", b"", qos=0)
        second = reports(self.watcher, 2)
        self.assertEqual([r[3] for r in second], ["isess/in/w2", "isess/in/w3"])
        self.pub.publish("isess/ctl/ack", b"", qos=0)
        self.assertEqual(reports(self.watcher, 1)[0][3], "isess/in/w4")

    def test_wider_window_delivers_what_waits(self):
        """ABI 1.2 session_window: what waits behind a full window is delivered, in order,
        once the plugin widens it, without any acknowledgement."""
        self.start(ack="hold", window=2)
        for i in range(5):
            self.pub.publish("isess/in/v%d" % i, b"x", qos=1)
        first = reports(self.watcher, 2)
        self.assertEqual([r[3] for r in first], ["isess/in/v0", "isess/in/v1"])
        self.watcher.no_publish(QUIET)  # the window is full
        self.pub.publish("isess/ctl/wide", b"", qos=0)
        rest = reports(self.watcher, 3)
        self.assertEqual([r[3] for r in rest], ["isess/in/v%d" % i for i in range(2, 5)])
        self.assertTrue(all(r[1] == 0 for r in rest), rest)

    def test_redeliver_sends_unacknowledged_again_with_dup(self):
        self.start(ack="hold", window=5)
        for i in range(3):
            self.pub.publish("isess/in/r%d" % i, b"x", qos=1)
        first = reports(self.watcher, 3)
        self.pub.publish("isess/ctl/redeliver", b"", qos=0)
        again = reports(self.watcher, 3)
        self.assertEqual([(r[0], r[3]) for r in again], [(r[0], r[3]) for r in first])
        self.assertEqual([r[1] for r in again], [1, 1, 1])

    def test_queue_kept_while_closed_and_delivered_on_reopen(self):
        self.start(ack="hold", window=2)
        self.pub.publish("isess/in/q0", b"x", qos=1)
        self.assertEqual(reports(self.watcher, 1)[0][3], "isess/in/q0")
        self.pub.publish("isess/ctl/close", b"", qos=0)
        self.broker.wait_log(lambda l: "closed internal session isess-bridge" in l,
                             what="session closed")
        for i in range(1, 4):
            self.pub.publish("isess/in/q%d" % i, b"x", qos=1)
        self.watcher.no_publish(QUIET)  # nothing delivered while closed
        self.broker.proc.send_signal(signal.SIGHUP)  # the plugin reopens it on reload
        self.broker.wait_log(lambda l: "opened internal session isess-bridge present=1" in l,
                             what="the session reopened with its state")
        # The unacknowledged q0 first (dup), then the queue within the window.
        again = reports(self.watcher, 2)
        self.assertEqual([(r[1], r[3]) for r in again], [(1, "isess/in/q0"), (0, "isess/in/q1")])
        self.pub.publish("isess/ctl/ack", b"", qos=0)
        self.assertEqual([r[3] for r in reports(self.watcher, 2)], ["isess/in/q2", "isess/in/q3"])

    def test_clients_cannot_take_the_session_over(self):
        self.start()
        for version, rc in ((5, 0x85), (4, 2)):
            c = RawClient(self.port, version)
            self._clients.append(c)
            ca = c.connect("isess-bridge", expect_rc=None)
            self.assertEqual(ca.rc, rc)
            c.expect_closed()
        # The internal session still works.
        self.pub.publish("isess/in/still", b"x", qos=1)
        self.assertEqual(reports(self.watcher, 1)[0][3], "isess/in/still")

    def test_ended_session_is_gone(self):
        self.start()
        self.pub.publish("isess/ctl/end", b"", qos=0)
        self.broker.wait_log(lambda l: "closed internal session isess-bridge (ended)" in l,
                             what="session ended")
        c = RawClient(self.port, 5)
        self._clients.append(c)
        ca = c.connect("isess-bridge", clean=False, props=[("session_expiry", 60)])
        self.assertFalse(ca.session_present)


if __name__ == "__main__":
    unittest.main()
