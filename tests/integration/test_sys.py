"""$SYS topics with mosquitto's names, published every sys_interval."""

import time

from midgetest import BrokerTest, wait_until, only_midge

BASIC = ["$SYS/broker/version", "$SYS/broker/uptime", "$SYS/broker/clients/connected",
         "$SYS/broker/clients/total", "$SYS/broker/messages/received", "$SYS/broker/messages/sent",
         "$SYS/broker/retained messages/count", "$SYS/broker/subscriptions/count",
         "$SYS/broker/publish/messages/dropped"]
MORE = ["$SYS/broker/clients/disconnected", "$SYS/broker/clients/maximum", "$SYS/broker/bytes/received",
        "$SYS/broker/bytes/sent", "$SYS/broker/load/messages/received/1min"]


def number(payload):
    return float(payload.split()[0])


class Sys(BrokerTest):
    CONFIG = ["sys_interval 1"]

    def collect(self, c, names, timeout=3.5):
        seen = {}
        end = time.monotonic() + timeout
        while not set(names) <= set(seen) and time.monotonic() < end:
            try:
                p = c.recv_publish(timeout=max(0.05, end - time.monotonic()))
            except AssertionError:
                break
            seen[p.topic] = p.payload
        return seen

    def latest(self, c, topic, pred, timeout=4):
        """Wait until a publish on topic has a payload for which pred(number) is true."""
        def check():
            try:
                p = c.recv_publish(timeout=1.2, topic=topic)
            except AssertionError:
                return None
            return pred(number(p.payload)) and p.payload
        return wait_until(check, timeout, what="%s to satisfy the condition" % topic)

    def test_basic_topics(self):
        """version, uptime, clients, messages, retained count, subscriptions, dropped: all published."""
        c = self.raw(4)
        c.subscribe("$SYS/#", 0)
        seen = self.collect(c, BASIC)
        self.assertEqual(sorted(set(BASIC) - set(seen)), [])
        self.assertTrue(seen["$SYS/broker/version"].strip())
        number(seen["$SYS/broker/uptime"])

    @only_midge("the version string names midge")
    def test_version_names_midge(self):
        c = self.raw(4)
        c.subscribe("$SYS/broker/version", 0)
        self.assertIn(b"midge", c.recv_publish(timeout=3).payload.lower())

    def test_more_topics(self):
        """clients disconnected/maximum, bytes received/sent, load averages (mosquitto's names)."""
        c = self.raw(4)
        c.subscribe("$SYS/#", 0)
        seen = self.collect(c, MORE)
        self.assertEqual(sorted(set(MORE) - set(seen)), [])

    def test_clients_connected_counts(self):
        """$SYS/broker/clients/connected follows connects and disconnects."""
        mon = self.raw(4)
        mon.subscribe("$SYS/broker/clients/connected", 0)
        extra = [self.raw(4) for _ in range(3)]
        self.latest(mon, "$SYS/broker/clients/connected", lambda n: n == 4)
        for c in extra:
            c.disconnect()
        self.latest(mon, "$SYS/broker/clients/connected", lambda n: n == 1)

    def stable_value(self, mon, first_timeout=3, quiet=1.5, limit=8):
        """Last value of the subscribed counter once no change came for `quiet` seconds."""
        v = number(mon.recv_publish(timeout=first_timeout).payload)
        end = time.monotonic() + limit
        while time.monotonic() < end:
            try:
                v = number(mon.recv_publish(timeout=quiet).payload)
            except AssertionError:
                break
        return v

    def test_retained_count(self):
        """$SYS/broker/retained messages/count grows by (at least) 3 after 3 retained messages and drops by
        exactly 3 when they are cleared (the count may include $SYS's own retained topics, as mosquitto's does)."""
        mon = self.raw(4)
        mon.subscribe("$SYS/broker/retained messages/count", 0)
        base = self.stable_value(mon)
        pub = self.raw(4)
        for i in range(3):
            pub.publish("cnt/%d" % i, b"x", qos=1, retain=True)
        up = self.stable_value(mon)
        self.assertGreaterEqual(up, base + 3)
        for i in range(3):
            pub.publish("cnt/%d" % i, b"", qos=1, retain=True)
        self.latest(mon, "$SYS/broker/retained messages/count", lambda n: n == up - 3)

    def test_messages_received_and_subscriptions(self):
        """messages/received grows with publishes; subscriptions/count counts subscriptions."""
        mon = self.raw(4)
        mon.subscribe("$SYS/broker/messages/received", 0)
        base = number(mon.recv_publish(timeout=3).payload)
        pub = self.raw(4)
        for i in range(10):
            pub.publish("mr/t", b"x", qos=1)
        self.latest(mon, "$SYS/broker/messages/received", lambda n: n >= base + 10)
        subs = self.raw(4)
        subs.subscribe([("sc/1", 0), ("sc/2", 0), ("sc/3", 0)])
        mon.subscribe("$SYS/broker/subscriptions/count", 0)
        self.latest(mon, "$SYS/broker/subscriptions/count", lambda n: n >= 5)

    def test_uptime_advances(self):
        """$SYS/broker/uptime increases between intervals."""
        mon = self.raw(4)
        mon.subscribe("$SYS/broker/uptime", 0)
        a = number(mon.recv_publish(timeout=3).payload)
        self.latest(mon, "$SYS/broker/uptime", lambda n: n > a)
